"""What the single-hop families (DAC, Mimi) share behind the `Codec` interface: the numbers read off their
config, the bandwidth table, the batch plan and the size of a forward pass; and the strict check of a
state dict against the model it is loaded into.

A family's model mixes `HopFramedCodec` into its `nn.Module` and provides `config` (with `name`,
`sampling_rate`, `hop_length`, `frame_rate`, `codebook_size`, `bandwidth_to_num_quantizers`, `to_dict`),
`batch_plan`, `device`, `padded_length` and the class attribute `widest` (channels of its widest
full-rate activation, which bounds how many items one call may hold).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch
from safetensors.torch import save_file

from .batch_plan import resolve_plan, to_device
from .interface import EncodedItem, ModelProvenance
from .validation import check_codes

MAX_ELEMENTS = 2**31 - 1  # keep one call's activations under 32-bit index math (cuDNN)


class HopFramedCodec:
    """What DAC and Mimi share: the interface's numbers from the config, one hop per frame, the batch
    plans, passes sized under 32-bit index math, and decode. A family supplies `max_codebooks`,
    `padded_length`, `decode_pass(codes [B, n_q, F] on the device, frames per item or None when all
    fill the pass) -> audio [B, 1, T]` and `decoded_item(audio [1, T], frames, num_samples)`."""

    widest: int = 1

    name = property(lambda self: self.config.name)
    sample_rate = property(lambda self: self.config.sampling_rate)
    channels = property(lambda self: 1)
    hop_length = property(lambda self: self.config.hop_length)
    frame_rate = property(lambda self: self.config.frame_rate)
    chunk_length = property(lambda self: None)
    chunk_stride = property(lambda self: None)
    codebook_size = property(lambda self: self.config.codebook_size)
    target_bandwidths = property(lambda self: tuple(self.config.bandwidth_to_num_quantizers))

    def num_quantizers_for(self, bandwidth: float) -> int:
        table = self.config.bandwidth_to_num_quantizers
        if round(float(bandwidth), 3) not in table:
            raise ValueError(f"bandwidth {bandwidth!r} kbps is not one of {self.name}'s: "
                             f"{', '.join(f'{b} ({n} codebooks)' for b, n in table.items())}")
        return table[round(float(bandwidth), 3)]

    def config_dict(self) -> dict:
        return self.config.to_dict()

    @property
    def plan(self) -> str:
        return resolve_plan(self.batch_plan, self.device)

    def set_batch_plan(self, name: str | None):
        self.batch_plan = None if name in (None, "auto") else resolve_plan(name, self.device)
        return self

    def frames_for(self, num_samples: int) -> int:
        return math.ceil(num_samples / self.hop_length)

    def pad_samples_for(self, num_samples: int) -> int:
        return self.frames_for(num_samples) * self.hop_length - num_samples

    def _per_call(self, length: int, max_batch: int | None, encode: bool = True) -> int:
        """Items per forward pass of `length` samples: under MAX_ELEMENTS, at most `max_batch`, and one at a
        time when encoding on the CPU plan (bit-identical to each item alone)."""
        per_call = max(1, MAX_ELEMENTS // (max(length, 1) * self.widest))
        if max_batch is None and encode and self.plan == "cpu":
            max_batch = 1
        return min(per_call, max_batch) if max_batch else per_call

    def largest_forward_pass(self, lengths: list[int], padded: int, max_batch: int | None = None) -> int:
        return min(len(lengths), self._per_call(self.padded_length(padded), max_batch))

    @torch.inference_mode()
    def decode(self, items: list[EncodedItem]) -> list[torch.Tensor]:
        """EncodedItems -> audio float32 [1, num_samples] each (on CPU). Items go through `decode_pass` in
        passes of the plan's size (one item per pass on the CPU plan), their codes right-padded with 0 to
        the pass's frame count; `decoded_item` cuts each item's audio to its length."""
        if not items:
            return []
        check_codes(items, self.frames_for, self.max_codebooks, self.codebook_size)
        frames = [item.codes.shape[1] for item in items]
        out: list[torch.Tensor | None] = [None] * len(items)
        hop = self.hop_length
        per_call = self._per_call(self.padded_length(max(frames) * hop), None, encode=False)
        per_call = 1 if self.plan == "cpu" else per_call
        for start in range(0, len(items), per_call):
            idx = list(range(start, min(start + per_call, len(items))))
            total = self.padded_length(max(frames[b] for b in idx) * hop) // hop
            codes = torch.zeros(len(idx), items[idx[0]].codes.shape[0], total, dtype=torch.long)
            for j, b in enumerate(idx):
                codes[j, :, : frames[b]] = items[b].codes
            uniform = all(frames[b] == total for b in idx)
            audio = self.decode_pass(to_device(codes, self.device), None if uniform else [frames[b] for b in idx])
            audio = audio.float().cpu()
            for j, b in enumerate(idx):
                out[b] = self.decoded_item(audio[j], frames[b], items[b].num_samples)
        return out


def check_state(model: torch.nn.Module, state: dict[str, torch.Tensor], family: str) -> None:
    """ValueError naming the missing and unexpected keys, or the first tensor whose shape differs from the
    model's (a checkpoint of another configuration)."""
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{family} checkpoint does not match the config: missing {missing[:10]}, "
                         f"unexpected {unexpected[:10]}")
    for key, value in state.items():
        if value.shape != expected[key].shape:
            raise ValueError(f"tensor {key!r} has shape {tuple(value.shape)}, expected {tuple(expected[key].shape)}")


def with_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], provenance, family: str) -> torch.nn.Module:
    """`model` (eval mode) holding `state` in fp32, its `provenance` set; ValueError from `check_state` on any
    key or shape that does not match (the one way DAC, Mimi and HuBERT checkpoints are put into a model)."""
    check_state(model, state, family)
    model.load_state_dict({k: v.float() for k, v in state.items()})
    model.provenance = provenance
    return model.eval()


def save_directory(model: torch.nn.Module, directory: str | os.PathLike, model_type: str,
                   extra: dict[str, torch.Tensor] | None = None) -> Path:
    """Write `config.json` (the config's transformers fields + model_type, architectures) and `model.safetensors`
    (the state dict in fp32, plus `extra` tensors) as transformers' `save_pretrained` lays them out."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    config = {**model.config.to_dict(), "model_type": model_type, "architectures": [type(model).__name__]}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    state = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file({**state, **(extra or {})}, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


def random_spec(spec: str, presets: dict):
    """(preset config, seed) of `random:<preset>[:seed=N]`; ValueError naming the presets."""
    parts = spec.split(":")
    preset = parts[1] if len(parts) > 1 else ""
    if preset not in presets:
        raise ValueError(f"unknown random preset {spec!r}; choose one of {['random:' + p for p in presets]}")
    return presets[preset], int(parts[2].removeprefix("seed=")) if len(parts) > 2 else 0


def preset_name(config_class, presets: dict, data: dict) -> str | None:
    """The name of the preset whose numbers the config dict `data` has, if any (unreadable configs: None)."""
    try:
        ours = config_class.from_dict(data)
    except (TypeError, ValueError):
        return None
    return next((name for name, preset in presets.items() if preset == ours), None)


def is_model_directory(path: Path, model_type: str) -> bool:
    config = path / "config.json"
    return config.is_file() and json.loads(config.read_text()).get("model_type") == model_type


def read_model_directory(path: Path, config_class, presets: dict, name: str | None = None):
    """(config, state dict, provenance) of a transformers directory; the config is named `name`, else the preset
    it equals, else the directory's name."""
    from .loading import read_directory_weights, sha256_file

    data = json.loads((path / "config.json").read_text())
    config = config_class.from_dict(data, name=name or preset_name(config_class, presets, data) or path.name)
    state, weights = read_directory_weights(path)
    return config, state, ModelProvenance(name or str(path), sha256_file(weights), False)
