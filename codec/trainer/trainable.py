"""Training wrapper around our inference `EncodecModel`: weight norm, EMA residual VQ, export.

    audio [B, C, T] ─► encoder (weight-normed convs) ─► latents [B, D, F]
      ─► EMA RVQ over the first n_q codebooks (n_q drawn per batch: quantizer dropout over bandwidths)
         each level: nearest codeword of the residual; commitment loss |residual - sg(codeword)|^2;
         codebooks follow EMA statistics of the residuals assigned to them (no gradient), start
         from k-means on a first batch of latents, and dead codewords are re-drawn from residuals
      ─► straight-through: decoder input = latents + sg(quantized - latents)
      ─► decoder ─► audio [B, C, T]

`export()` folds weight norm into plain weights and returns an inference EncodecModel, which
`codec.save_model` writes in the transformers layout.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrizations

from ..checkpoints import fold_weight_norm
from ..codewords import lloyd, nearest
from ..config import EncodecConfig
from ..model import EncodecModel
from ..seanet import LSTM


class EMAQuantizer(nn.Module):
    """EMA statistics for the codebooks of an RVQ (`model.quantizer`), which it updates in place.

    decay: EMA decay of codeword counts and sums. dead_threshold: a codeword whose EMA count falls
    below it is replaced by a random residual of the current batch. kmeans_iters: Lloyd steps of
    the initialisation.
    """

    def __init__(self, model: EncodecModel, decay: float = 0.99, eps: float = 1e-5,
                 dead_threshold: float = 2.0, kmeans_iters: int = 10):
        super().__init__()
        self.codebooks = [layer.codebook.embed for layer in model.quantizer.layers]
        n_q, (size, dim) = len(self.codebooks), self.codebooks[0].shape
        self.decay, self.eps, self.dead_threshold, self.kmeans_iters = decay, eps, dead_threshold, kmeans_iters
        self.register_buffer("inited", torch.zeros((), dtype=torch.bool))
        self.register_buffer("cluster_size", torch.zeros(n_q, size))
        self.register_buffer("embed_avg", torch.zeros(n_q, size, dim))

    @torch.no_grad()
    def kmeans_init(self, latents: torch.Tensor, generator: torch.Generator) -> None:
        """latents [N, D]: each level's codebook from k-means on what the previous levels left."""
        residual = latents.float()
        for k, embed in enumerate(self.codebooks):
            size = embed.shape[0]
            centers = residual[torch.randperm(residual.shape[0], generator=generator)[:size]].clone()
            if centers.shape[0] < size:  # fewer vectors than codewords: jittered copies
                extra = centers[torch.randint(centers.shape[0], (size - centers.shape[0],), generator=generator)]
                centers = torch.cat([centers, extra + 1e-3 * torch.randn(extra.shape, generator=generator)])
            lloyd(residual, centers, self.kmeans_iters)
            counts = torch.bincount(nearest(residual, centers), minlength=size).float()
            embed.copy_(centers)
            self.cluster_size[k] = counts
            self.embed_avg[k] = centers * counts[:, None]
            residual = residual - centers[nearest(residual, centers)]
        self.inited.fill_(True)

    def forward(self, latents: torch.Tensor, n_q: int, generator: torch.Generator | None = None):
        """latents [B, D, F] -> (quantized [B, D, F] with straight-through gradient, commitment loss,
        codes [B, n_q, F])."""
        batch, dim, frames = latents.shape
        x = latents.permute(0, 2, 1).reshape(-1, dim)
        residual = x
        quantized = torch.zeros_like(x)
        commit = x.new_zeros(())
        codes = []
        for k, embed in enumerate(self.codebooks[:n_q]):
            index = nearest(residual.detach(), embed)
            q = embed[index]
            commit = commit + (residual - q.detach()).pow(2).mean()
            if self.training:
                self._ema_update(k, residual.detach(), index, generator)
            quantized = quantized + q
            residual = residual - q.detach()
            codes.append(index)
        out = x + (quantized - x).detach()
        out = out.view(batch, frames, dim).permute(0, 2, 1)
        return out, commit, torch.stack(codes).view(n_q, batch, frames).transpose(0, 1)

    @torch.no_grad()
    def _ema_update(self, k: int, residual: torch.Tensor, index: torch.Tensor, generator) -> None:
        embed = self.codebooks[k]
        size = embed.shape[0]
        counts = torch.bincount(index, minlength=size).float()
        sums = torch.zeros_like(embed).index_add_(0, index, residual)
        self.cluster_size[k].mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_avg[k].mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.cluster_size[k].sum()
        smoothed = (self.cluster_size[k] + self.eps) / (n + size * self.eps) * n
        embed.copy_(self.embed_avg[k] / smoothed[:, None])
        dead = self.cluster_size[k] < self.dead_threshold
        if dead.any():
            pick = torch.randint(residual.shape[0], (int(dead.sum()),), generator=generator)
            embed[dead] = residual[pick]
            self.cluster_size[k][dead] = self.dead_threshold
            self.embed_avg[k][dead] = residual[pick] * self.dead_threshold


class TrainableEncodec(nn.Module):
    """An EncodecModel with weight-normed convolutions (parametrizations) and an EMAQuantizer.

    forward(audio [B, C, T], n_q) -> (reconstruction [B, C, T], commitment loss, codes [B, n_q, F]);
    T must be a multiple of the hop length.
    """

    def __init__(self, config: EncodecConfig, **quantizer_options):
        super().__init__()
        self.model = EncodecModel(config)
        for module in self.model.modules():
            if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
                _variance_preserving_init(module)
                parametrizations.weight_norm(module, name="weight", dim=0)
            if isinstance(module, LSTM):
                module.per_item = False  # fixed-length batches: the batched LSTM is exact enough
        self.ema = EMAQuantizer(self.model, **quantizer_options)

    @property
    def config(self) -> EncodecConfig:
        return self.model.config

    def encode_latents(self, audio: torch.Tensor) -> torch.Tensor:
        return self.model.encoder(audio)[0]

    def forward(self, audio: torch.Tensor, n_q: int, generator: torch.Generator | None = None):
        if audio.shape[-1] % self.config.hop_length:
            raise ValueError(f"training audio length {audio.shape[-1]} must be a multiple of {self.config.hop_length}")
        latents = self.encode_latents(audio)
        quantized, commit, codes = self.ema(latents, n_q, generator)
        recon = self.model.decoder(quantized)[0]
        return recon, commit, codes

    def export(self) -> EncodecModel:
        """An inference EncodecModel (weight norm folded, eval mode) with the current weights."""
        plain, _ = fold_weight_norm({k: v.detach().clone() for k, v in self.model.state_dict().items()})
        model = EncodecModel(self.config)
        model.load_state_dict(plain)
        model.weight_norm_pairs = {}
        return model.eval()


def _variance_preserving_init(conv: nn.Conv1d | nn.ConvTranspose1d) -> None:
    """Weights N(0, 1 / fan_in) and zero bias, fan_in = inputs per output (in * k, or in * k / stride
    when transposed). PyTorch's default (uniform, variance 1 / (3 fan_in), random biases) shrinks the
    signal ~3x per layer, so at init the latents hardly depend on the audio and training stalls."""
    k = conv.kernel_size[0]
    fan_in = conv.in_channels * k / (conv.stride[0] if isinstance(conv, nn.ConvTranspose1d) else 1)
    with torch.no_grad():
        conv.weight.normal_(0.0, fan_in ** -0.5)
        if conv.bias is not None:
            conv.bias.zero_()
