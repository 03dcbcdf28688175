"""Checkpoint key maps: original EnCodec (`.th`) and transformers names -> our module names.

Ours are transformers' names with weight norm folded away. Every key of a checkpoint must match a
rule below; an unknown key raises, naming it.
"""

from __future__ import annotations

import re

import torch

# original facebookresearch/encodec state dict -> transformers naming
_ORIGINAL_RULES: list[tuple[re.Pattern, str]] = [
    (re.compile(r"^(encoder|decoder)\.model\.(\d+)\.conv\.conv\.(.+)$"), r"\1.layers.\2.conv.\3"),
    (re.compile(r"^(encoder|decoder)\.model\.(\d+)\.conv\.norm\.(.+)$"), r"\1.layers.\2.norm.\3"),
    (re.compile(r"^decoder\.model\.(\d+)\.convtr\.convtr\.(.+)$"), r"decoder.layers.\1.conv.\2"),
    (re.compile(r"^decoder\.model\.(\d+)\.convtr\.norm\.(.+)$"), r"decoder.layers.\1.norm.\2"),
    (re.compile(r"^(encoder|decoder)\.model\.(\d+)\.block\.(\d+)\.conv\.conv\.(.+)$"),
     r"\1.layers.\2.block.\3.conv.\4"),
    (re.compile(r"^(encoder|decoder)\.model\.(\d+)\.block\.(\d+)\.conv\.norm\.(.+)$"),
     r"\1.layers.\2.block.\3.norm.\4"),
    (re.compile(r"^(encoder|decoder)\.model\.(\d+)\.shortcut\.conv\.conv\.(.+)$"), r"\1.layers.\2.shortcut.conv.\3"),
    (re.compile(r"^(encoder|decoder)\.model\.(\d+)\.shortcut\.conv\.norm\.(.+)$"), r"\1.layers.\2.shortcut.norm.\3"),
    (re.compile(r"^(encoder|decoder)\.model\.(\d+)\.lstm\.(.+)$"), r"\1.layers.\2.lstm.\3"),
    (re.compile(r"^quantizer\.vq\.layers\.(\d+)\._codebook\.(.+)$"), r"quantizer.layers.\1.codebook.\2"),
]

# transformers naming -> ours (weight norm parts are gathered, then folded)
_WEIGHT_G = re.compile(r"^(.+)\.(?:parametrizations\.weight\.original0|weight_g)$")
_WEIGHT_V = re.compile(r"^(.+)\.(?:parametrizations\.weight\.original1|weight_v)$")
_TRAINING_ONLY = re.compile(r"^quantizer\.layers\.\d+\.codebook\.(inited|cluster_size|embed_avg)$")


def original_to_transformers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out, unknown = {}, []
    for key, value in state.items():
        for pattern, repl in _ORIGINAL_RULES:
            if pattern.match(key):
                out[pattern.sub(repl, key)] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"unknown tensors in original EnCodec checkpoint: {unknown[:10]}")
    return out


def fold_weight_norm(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, tuple]]:
    """Replace (g, v) pairs by `weight = g * v / ||v||` (norm over all dims but 0).

    Returns (state with plain weights, {prefix: (g, v)}), the pairs kept so that saving can
    write them back unchanged. Training-only codebook buffers are dropped.
    """
    plain, parts = {}, {}
    for key, value in state.items():
        if _TRAINING_ONLY.match(key):
            continue
        g, v = _WEIGHT_G.match(key), _WEIGHT_V.match(key)
        if g or v:
            prefix = (g or v).group(1)
            parts.setdefault(prefix, [None, None])[0 if g else 1] = value
        else:
            plain[key] = value
    pairs = {}
    for prefix, (g, v) in parts.items():
        if g is None or v is None:
            raise ValueError(f"weight norm of {prefix!r} is missing its {'g' if g is None else 'v'} tensor")
        plain[prefix + ".weight"] = torch._weight_norm(v, g, 0)
        pairs[prefix] = (g, v)
    return plain, pairs


def unfold_weight_norm(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A plain weight as (g, v) with v = weight and g = ||weight|| (norm over all dims but 0)."""
    g = torch.norm_except_dim(weight, 2, 0)
    return g, weight.clone()


def detect_preset(state: dict[str, torch.Tensor], name: str) -> str:
    """'24khz' or '48khz' for an original checkpoint, from its file name or its first conv's input channels."""
    for preset in ("24khz", "48khz"):
        if preset in name:
            return preset
    first = state.get("encoder.model.0.conv.conv.weight_v", state.get("encoder.model.0.conv.conv.weight"))
    if first is None:
        raise ValueError(f"cannot tell 24 kHz from 48 kHz for {name!r}: no encoder.model.0 convolution")
    return {1: "24khz", 2: "48khz"}.get(first.shape[1]) or _raise_channels(first.shape[1])


def _raise_channels(channels: int) -> str:
    raise ValueError(f"original checkpoint has {channels} input channels; expected 1 (24 kHz) or 2 (48 kHz)")
