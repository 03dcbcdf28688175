"""The codec training config, typed: one dataclass per YAML section, every default here and nowhere else.

    seed, threads, out, weights_license     the run (threads are part of the seed: float reductions depend on it)
    model: {EncodecConfig field: value}     over the 24 kHz preset (`loop.build_config`)
    data: DataConfig                        file lists (`data.resolve`) and how segments are drawn
    train: TrainSettings                    optimiser, schedule, EMA quantizer, logging
    loss: LossWeights                       weights of the loss terms

`load_config(path)` reads a YAML (a `base: other.yaml` is loaded first, this file's sections merged
into it key by key) into a plain dict, `apply_override` changes one `SECTION.KEY=VALUE` of it, and
`TrainConfig.from_dict` types it (unknown or missing keys: ValueError naming them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass(kw_only=True)
class DataConfig:
    """train / valid / heldout: file-list entries (`data.resolve`); segment_s: training segment length;
    min_rms: quieter segments are drawn again; gain_db: random gain range per segment; lowpass_prob /
    lowpass_hz: the share of segments band-limited to one of these cutoffs."""

    train: list[dict] = field(default_factory=list)
    valid: list[dict] = field(default_factory=list)
    heldout: list[dict] = field(default_factory=list)
    segment_s: float
    batch_size: int
    min_rms: float
    gain_db: list[float]
    lowpass_prob: float = 0.0
    lowpass_hz: list[float] = field(default_factory=list)

    def settings(self) -> dict[str, Any]:
        """Every field but the file lists (as training.json records them)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("train", "valid", "heldout")}


@dataclass(kw_only=True)
class TrainSettings:
    """Adam (lr, betas), linear warmup from lr / 10 over warmup_steps then cosine to lr_final; gradient
    norm clipped at grad_clip; k-means initialisation of the codebooks on init_segments segments; EMA
    dead-codeword threshold; a line every log_every steps, partial weights every save_every (0: only at
    the end); init_from: a directory of an earlier run to start from (a second stage)."""

    steps: int
    lr: float
    lr_final: float
    betas: list[float]
    grad_clip: float
    init_segments: int
    log_every: int
    warmup_steps: int = 0
    save_every: int = 0
    dead_threshold: float = 2.0
    init_from: str | None = None


@dataclass(kw_only=True)
class LossWeights:
    """loss = waveform * L1 + mel * multi-scale mel + commitment * commitment + si_snr * (-SI-SNR dB)."""

    waveform: float
    mel: float
    commitment: float
    si_snr: float = 0.0


@dataclass(kw_only=True)
class TrainConfig:
    seed: int
    threads: int
    out: str | None = None
    weights_license: str | None = None
    model: dict[str, Any] = field(default_factory=dict)
    data: DataConfig
    train: TrainSettings
    loss: LossWeights

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> TrainConfig:
        sections = {"data": DataConfig, "train": TrainSettings, "loss": LossWeights}
        values = dict(_checked(cls, raw, "config"))
        for name, section in sections.items():
            if name in values:
                values[name] = section(**_checked(section, values[name] or {}, name))
        return cls(**values)


def _checked(cls, raw: Any, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    missing = sorted(n for n, f in fields.items() if n not in raw and f.default is dataclasses.MISSING
                     and f.default_factory is dataclasses.MISSING)
    if unknown or missing:
        raise ValueError(f"{where}: " + "; ".join(
            ([f"unknown keys {unknown} (valid: {sorted(fields)})"] if unknown else [])
            + ([f"missing keys {missing}"] if missing else [])))
    return raw


def load_config(path: Path) -> dict:
    """A training YAML as a plain dict; `base: other.yaml` (relative to it) is loaded first and this
    file's sections are merged into it key by key (a second stage that changes a few settings)."""
    cfg = yaml.safe_load(Path(path).read_text())
    if "base" not in cfg:
        return cfg
    merged = load_config(Path(path).parent / cfg.pop("base"))
    for key, value in cfg.items():
        merged[key] = {**merged[key], **value} if isinstance(value, dict) and key in merged else value
    return merged


def apply_override(cfg: dict, item: str) -> None:
    """Set `SECTION.KEY=VALUE` (VALUE read as YAML) in the plain config; ValueError when the section
    does not exist."""
    key, sep, value = item.partition("=")
    *parents, leaf = key.split(".")
    node = cfg
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if not sep or not isinstance(node, dict):
        raise ValueError(f"--set {item!r}: expected SECTION.KEY=VALUE with an existing section")
    node[leaf] = yaml.safe_load(value)
