"""Semantic tokens: a self-supervised speech model's hidden states at one layer, quantized by k-means.

    SemanticSpec(model, layer, centroids)  --load_semantic-->  SemanticTokenizer
    audio float32 [B, 1, T] at 16 kHz, item b valid for lengths[b] samples (zero-padded after)
        features -> [frames_b, dim] float32 per item (transformers' hidden_states[layer] of the item alone)
        encode   -> int64 [1, frames_b] per item: the nearest centroid of each frame (`codewords.nearest`)

Frames per item: floor((L - 400) / 320) + 1 at 50 frames/s; items shorter than 400 samples have none
and are refused (`TooShort`, a ValueError the job records as a rejection). The CPU plan runs one item
per forward pass (bit-identical to the item alone, and to transformers); the CUDA plan runs the batch
with length masks, in passes under 32-bit index math (an item then matches itself alone within float
rounding: 1e-5 x the layer's RMS, identical ids in the tests). Models: the
`hubert` family (`codec/hubert/`); fp32 only. On CUDA, call `runtime.strict_fp32()` first (TF32 off).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from .batch_plan import resolve_plan, to_device
from .centroids import Centroids, load_centroids
from .codewords import nearest
from .framed import MAX_ELEMENTS
from .hubert import HubertModel, TooShort, load_hubert
from .interface import ModelProvenance

__all__ = ["SemanticSpec", "SemanticTokenizer", "TooShort", "layer_features", "load_semantic"]


@dataclass(frozen=True)
class SemanticSpec:
    model: str  # "random:hubert_base[:seed=N]", "random:hubert_large", a local dir (HF layout), a hub id
    layer: int  # transformers' hidden_states[layer] (fairseq output_layer=layer)
    centroids: str  # .safetensors written by jobs.fit_kmeans, or a plain .npy [k, dim] float array


class SemanticTokenizer:
    """A loaded HuBERT model (eval mode, one device) and its k-means centroids."""

    family = "hubert"
    channels = 1

    def __init__(self, model: HubertModel, layer: int, centroids: Centroids, spec: SemanticSpec | None = None):
        model.check_layer(layer)
        if centroids.dim != model.config.hidden_size:
            raise ValueError(f"centroids {centroids.path} have dim {centroids.dim}; {model.config.name}'s layer "
                             f"{layer} has {model.config.hidden_size}")
        self.model, self.layer, self.spec = model.eval(), layer, spec
        self.centroids = centroids
        self._codewords = centroids.vectors.to(model_device(model))
        self.batch_plan: str | None = None

    provenance: ModelProvenance = property(lambda self: self.model.provenance)
    centroids_sha256 = property(lambda self: self.centroids.sha256)
    sample_rate = property(lambda self: self.model.config.sampling_rate)
    hop_length = property(lambda self: self.model.config.hop_length)
    frame_rate = property(lambda self: self.model.config.frame_rate)
    min_samples = property(lambda self: self.model.config.receptive_field)
    codebook_size = property(lambda self: self.centroids.k)
    device = property(lambda self: model_device(self.model))
    dtype = property(lambda self: torch.float32)

    @property
    def name(self) -> str:
        return f"{self.model.config.name}_l{self.layer}_k{self.codebook_size}"

    @property
    def plan(self) -> str:
        return resolve_plan(self.batch_plan, self.device)

    def set_batch_plan(self, name: str | None) -> SemanticTokenizer:
        self.batch_plan = None if name in (None, "auto") else resolve_plan(name, self.device)
        return self

    def frames_for(self, num_samples: int) -> int:
        """floor((L - 400) / 320) + 1 for the presets; 0 when L < 400 (such items are refused)."""
        return self.model.frames_for(num_samples)

    def features(self, audio: torch.Tensor, lengths: list[int]) -> list[torch.Tensor]:
        """audio float [B, 1, T] -> `hidden_states[layer]` float32 [frames_b, dim] per item, on the device.
        TooShort (a ValueError) when an item is shorter than `min_samples`."""
        return layer_features(self.model, audio, lengths, self.layer, self.plan)

    @torch.inference_mode()
    def encode(self, audio: torch.Tensor, lengths: list[int]) -> list[torch.Tensor]:
        """audio float [B, 1, T] -> int64 [1, frames_b] cluster ids per item (on the CPU)."""
        return [nearest(f, self._codewords)[None].cpu() for f in self.features(audio, lengths)]

    def config_dict(self) -> dict[str, Any]:
        """What identifies the tokens: model source and sha256, layer, k, centroids sha256, architecture."""
        meta = self.centroids.meta
        return {"family": self.family, "name": self.name, "model": self.provenance.source,
                "model_sha256": self.provenance.sha256, "random_weights": self.provenance.random_weights,
                "layer": self.layer, "k": self.codebook_size, "centroids": self.centroids.path,
                "centroids_sha256": self.centroids_sha256,
                "centroids_fitted_on": None if meta is None else meta.sample,
                "sample_rate": self.sample_rate, "hop_length": self.hop_length, "frame_rate": self.frame_rate,
                "min_samples": self.min_samples, "architecture": self.model.config.to_dict()}


@torch.inference_mode()
def layer_features(model: HubertModel, audio: torch.Tensor, lengths: list[int], layer: int,
                   plan: str) -> list[torch.Tensor]:
    """audio float [B, 1, T] (host or device) -> `hidden_states[layer]` float32 [frames_b, dim] per item, on
    the model's device: one item per forward pass, cut to its length, on the "cpu" plan; the whole batch
    with length masks on the "cuda" plan (split into passes whose first activation stays under MAX_ELEMENTS)."""
    if audio.dim() != 3 or audio.shape[1] != 1:
        raise ValueError(f"audio must be [B, 1, T] mono at {model.config.sampling_rate} Hz; got {tuple(audio.shape)}")
    lengths = [int(n) for n in lengths]
    device = model_device(model)
    if plan == "cpu":
        groups = [[b] for b in range(len(lengths))]
    else:  # the widest activation (first convolution: channels x T / stride) under 32-bit index math
        widest = model.config.conv_dim[0] * (max(lengths) // model.config.conv_stride[0] + 1)
        per_pass = max(1, MAX_ELEMENTS // widest)
        groups = [list(range(i, min(i + per_pass, len(lengths)))) for i in range(0, len(lengths), per_pass)]
    out: list[torch.Tensor] = [torch.empty(0)] * len(lengths)
    for idx in groups:
        longest = max(lengths[b] for b in idx)
        batch = to_device(audio[idx, 0, :longest].float().contiguous(), device)
        hidden, frames = model(batch, [lengths[b] for b in idx], layer)
        for j, b in enumerate(idx):
            out[b] = hidden[j, : frames[j]].float()
    return out


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def load_semantic(spec: SemanticSpec, device: str | torch.device = "cpu",
                  dtype: torch.dtype = torch.float32) -> SemanticTokenizer:
    """The tokenizer `spec` names, in eval mode on `device`. ValueError for an unknown model source, a layer
    out of range, an unreadable centroids file, centroids of another width, or centroids whose recorded
    layer or model sha256 differ from the spec's model and layer."""
    if dtype != torch.float32:
        raise ValueError(f"semantic tokenizers run in fp32 only; got {dtype}")
    centroids = load_centroids(os.fspath(spec.centroids))
    model = load_hubert(spec.model, device=device)
    meta = centroids.meta
    if meta is not None:
        if meta.layer != spec.layer:
            raise ValueError(f"centroids {spec.centroids} were fitted on layer {meta.layer}, not layer {spec.layer}")
        if meta.model_sha256 != model.provenance.sha256:
            raise ValueError(f"centroids {spec.centroids} were fitted on the features of {meta.model} "
                             f"(sha256 {meta.model_sha256[:12]}…), not of {spec.model} "
                             f"(sha256 {str(model.provenance.sha256)[:12]}…)")
    return SemanticTokenizer(model, spec.layer, centroids, spec)
