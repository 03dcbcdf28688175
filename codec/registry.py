"""Codec families and the one entry point that loads any of them: `load_codec(source)`.

A family is registered here as a `CodecFamily`: its name, the `random:` presets it knows, a test of
whether it owns a source, and its loader. The job, verify and the benchmarks call `load_codec` /
`load_first` and then use only the `Codec` interface (`interface.py`); adding a family adds a folder
and one entry to `FAMILIES`, and edits nothing else.

Which family owns a source:
    random:<preset>[:seed=N]       the family listing <preset> (random:24khz -> EnCodec, random:dac_44khz -> DAC,
                                   random:mimi -> Mimi)
    a directory                    its config.json's model_type ("encodec", "dac", "mimi")
    a file                         the family whose `owns` accepts it (DAC: a .pth; Mimi: a .safetensors, kyutai's
                                   original checkpoint; EnCodec: the rest)
    a hub id (owner/name)          downloaded (huggingface_hub), then as a directory
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from . import families
from .families import FamilyInfo
from .interface import Codec


@dataclass(frozen=True)
class CodecFamily:
    info: FamilyInfo  # what the driver knows without torch (families.py)
    load: Callable[[str, str | torch.device, torch.dtype], Codec]  # (source, device, dtype) -> eval-mode codec

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def random_presets(self) -> tuple[str, ...]:
        return self.info.random_presets

    @property
    def model_type(self) -> str:
        return self.info.model_type


def _load_encodec(source: str, device, dtype) -> Codec:
    from .loading import load_model

    return load_model(source, device=device, dtype=dtype)


def _load_single_hop(family: str, source: str, device, dtype, random, is_directory, load_directory, load_file):
    """DAC's and Mimi's sources, in the order of the module docstring; fp32 only."""
    if dtype != torch.float32:
        raise ValueError(f"{family} runs in fp32 only (no reduced-precision self-check yet); got {dtype}")
    path = Path(source).expanduser()
    if source.startswith("random:"):
        model = random(source)
    elif path.is_dir() and is_directory(path):
        model = load_directory(path)
    elif path.is_file():
        model = load_file(path)
    else:
        model = load_directory(_hub_directory(source), name=source)
    return model.to(device).eval()


def _load_dac(source: str, device, dtype) -> Codec:
    from .dac.loading import is_dac_directory, load_dac_directory, load_dac_original, random_dac

    return _load_single_hop("DAC", source, device, dtype, random_dac, is_dac_directory, load_dac_directory,
                            load_dac_original)


def _load_mimi(source: str, device, dtype) -> Codec:
    from .mimi.loading import is_mimi_directory, load_mimi_directory, load_mimi_file, random_mimi

    return _load_single_hop("Mimi", source, device, dtype, random_mimi, is_mimi_directory, load_mimi_directory,
                            load_mimi_file)


def _hub_directory(source: str) -> Path:
    from .loading import _hub_snapshot

    return _hub_snapshot(source)


FAMILIES: tuple[CodecFamily, ...] = (
    CodecFamily(families.ENCODEC, _load_encodec),
    CodecFamily(families.DAC, _load_dac),
    CodecFamily(families.MIMI, _load_mimi),
)


def family_of(source: str | os.PathLike) -> CodecFamily:
    """The family that loads `source`; ValueError naming the choices when none does."""
    by_info = {f.info: f for f in FAMILIES}
    text = str(source)
    if text.startswith("random:"):
        return by_info[families.family_of_random(text)]
    path = Path(text).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        model_type = json.loads((path / "config.json").read_text()).get("model_type", "encodec")
        try:
            return by_info[families.family_of_model_type(model_type)]
        except ValueError as exc:
            raise ValueError(f"{path}/config.json: {exc}") from None
    if path.is_file():
        return by_info[families.family_of_file(path.suffix)]
    if text.count("/") == 1 and not text.startswith((".", "/")):
        return by_info[families.family_of_hub_id(text)]
    return FAMILIES[0]  # EnCodec's loader has the fullest message for sources it cannot find


def load_codec(source: str | os.PathLike, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32) -> Codec:
    """Any family's model, inference-ready on `device` (see the module docstring for the sources)."""
    return family_of(source).load(str(source), device, dtype)


def load_first(sources: list[str], **kwargs) -> tuple[Codec, list[str]]:
    """The first of `sources` that loads, and one line per source skipped before it, saying why; raises
    ValueError naming every failure if none loads."""
    skipped = []
    for source in sources:
        try:
            return load_codec(source, **kwargs), skipped
        except ValueError as exc:
            skipped.append(f"{source}: {exc}")
    raise ValueError("no model source could be loaded:\n  " + "\n  ".join(skipped))
