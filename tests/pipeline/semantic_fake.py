"""A tiny stand-in with the attributes of codec.semantic.SemanticTokenizer (the contract of issue 31):
16 kHz mono, 400-sample windows every 320 samples, ids = the nearest of k fixed random codewords to
(log energy, zero crossings, mean) of each window. Frames of an item do not depend on its batch. Only
for tests of the job's plumbing; the real HuBERT lives in codec/semantic.py."""

from __future__ import annotations

import hashlib

import torch

from codec.interface import ModelProvenance


class FakeSemantic:
    family = "fake"
    sample_rate, channels, hop_length, frame_rate, min_samples = 16000, 1, 320, 50.0, 400

    def __init__(self, k: int = 50, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.centroids = torch.randn(k, 3, generator=g)
        self.codebook_size = k
        self.name = f"fake_k{k}"
        self.centroids_sha256 = hashlib.sha256(self.centroids.numpy().tobytes()).hexdigest()
        self.provenance = ModelProvenance(f"fake:seed={seed}", self.centroids_sha256, True)
        self.device, self.dtype = torch.device("cpu"), torch.float32
        self.calls: list[int] = []  # batch sizes seen

    def frames_for(self, num_samples: int) -> int:
        return (num_samples - 400) // 320 + 1

    def features(self, audio: torch.Tensor, lengths: list[int]) -> list[torch.Tensor]:
        out = []
        for b, n in enumerate(lengths):
            w = audio[b, 0, :n].unfold(0, 400, 320)  # [frames, 400]
            energy = torch.log(w.pow(2).mean(1) + 1e-6) / 5
            zc = (w[:, 1:].sign() != w[:, :-1].sign()).float().mean(1) * 4
            out.append(torch.stack([energy, zc, w.mean(1) * 50], 1))
        return out

    def encode(self, audio: torch.Tensor, lengths: list[int]) -> list[torch.Tensor]:
        self.calls.append(len(lengths))
        return [torch.cdist(f, self.centroids).argmin(1)[None] for f in self.features(audio, lengths)]

    def config_dict(self) -> dict:
        return {"model": "fake", "k": self.codebook_size, "centroids_sha256": self.centroids_sha256}
