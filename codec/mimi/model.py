"""Mimi inference model behind the `Codec` interface: encode/decode batches of items with their true lengths.

    audio [B, 1, T] -> SEANet encoder (causal convs, 24 kHz -> 25 frames/s) -> transformer (causal, 250-frame
    window) -> downsampling conv (stride 2, 12.5 frames/s) -> split RVQ -> codes [n_q, ceil(L / 1920)]

An item of L samples is encoded at its own length, not padded to a multiple of the hop: what
transformers' `MimiModel.encode` does with one item (its convolutions complete the last partial frame
themselves: zeros in the SEANet, a copy of the last 25 Hz frame in the downsampling convolution). It
gives ceil(L / 1920) frames; decoding gives F * 1920 samples, cut to L.

Batches (`codec/batch_plan.py`): the "cpu" plan encodes each item alone at its length (codes bit-identical
to transformers' one-item codes, whatever the batch); the "cuda" plan encodes many items per pass padded
to a coarse length grid, with each item's padding completed before every strided convolution as it is
alone (`seanet.py`) and the causal window keeping it out of the transformer (`transformer.py`): every
frame of every item then sees exactly its own inputs, and the only difference left is rounding from
kernels that change with the batch shape (GEMM blocking, SDPA's masked vs causal kernel past 250
frames), which can flip a code at a near-tie; the job records each row's batch and verify re-encodes it
the same way. transformers' own batched `encode` ignores its `padding_mask`: a shorter item's last frame
then reads the next items' padding region (not zeros) and its codes differ from the item alone.
Decoding is causal end to end: a padded batch of codes gives each item its own first F * 1920 samples.
"""

from __future__ import annotations

import torch
from torch import nn

from ..batch_plan import grid_length
from ..framed import HopFramedCodec
from ..interface import EncodedItem, ModelProvenance
from ..validation import check_audio
from .config import MimiConfig
from .quantizer import SplitResidualVectorQuantizer
from .seanet import CausalConv1d, CausalConvTranspose1d, Decoder, Encoder
from .transformer import Transformer


class MimiModel(HopFramedCodec, nn.Module):
    family = "mimi"
    widest = 64  # channels of the widest full-rate activation (the first convolution's output)

    def __init__(self, config: MimiConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.encoder_transformer = Transformer(config)
        stride = config.downsample_stride
        self.downsample = CausalConv1d(config.hidden_size, config.hidden_size, 2 * stride, stride, bias=False,
                                       replicate=True)
        self.quantizer = SplitResidualVectorQuantizer(config)
        self.upsample = CausalConvTranspose1d(config.hidden_size, config.hidden_size, 2 * stride, stride,
                                              groups=config.upsample_groups, bias=False)
        self.decoder_transformer = Transformer(config)
        self.decoder = Decoder(config)
        self.provenance = ModelProvenance("unloaded", None, True)
        self.batch_plan: str | None = None

    def padded_length(self, longest: int) -> int:
        """Samples a pass over items of at most `longest` samples spans: exactly `longest` on the CPU plan
        (each item alone, at its own length), the coarse grid (`batch_plan.grid_length`) on the CUDA plan."""
        return longest if self.plan == "cpu" else grid_length(longest, self.hop_length)

    @property
    def device(self) -> torch.device:
        return self.downsample.conv.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.downsample.conv.weight.dtype

    # ----- encode / decode --------------------------------------------------------------------
    def latents(self, audio: torch.Tensor, lengths: list[int] | None = None) -> torch.Tensor:
        """audio [B, 1, T] (item b valid on its first lengths[b] samples; None: all T) -> latents [B, 512,
        ceil(T / 1920)] before quantization; item b's first ceil(lengths[b] / 1920) frames are its own."""
        x, lengths = self.encoder(audio, lengths)
        x = self.encoder_transformer(x)
        return self.downsample(x, lengths)[0]

    @torch.inference_mode()
    def encode(self, audio: torch.Tensor, lengths=None, bandwidth: float | None = None,
               sample_rate: int | None = None, max_batch: int | None = None) -> list[EncodedItem]:
        """audio [B, 1, T] float, lengths [B] (valid samples, default T) -> one EncodedItem each, codes
        [n_q, ceil(L / 1920)], scales None. bandwidth: kbps (`target_bandwidths`); None: all codebooks."""
        lengths = check_audio(audio, lengths, sample_rate, self.sample_rate, self.channels)
        n_q = self.config.num_quantizers if bandwidth is None else self.num_quantizers_for(bandwidth)
        audio = audio.to(device=self.device, dtype=self.dtype)
        out = []
        per_call = self._per_call(self.padded_length(audio.shape[-1]), max_batch)
        for start in range(0, len(lengths), per_call):
            idx = list(range(start, min(start + per_call, len(lengths))))
            sub = [lengths[i] for i in idx]
            total = self.padded_length(max(sub))
            x = audio[idx, :, : min(total, audio.shape[-1])]
            x = torch.nn.functional.pad(x, (0, total - x.shape[-1]))
            latents = self.latents(x, None if all(n == total for n in sub) else sub)
            codes = self.quantizer.encode(latents.float(), n_q).cpu()  # host sync: once per pass
            out.extend(EncodedItem(codes[j, :, : self.frames_for(n)], None, n) for j, n in enumerate(sub))
        return out

    max_codebooks = property(lambda self: self.config.num_quantizers)

    def decode_pass(self, codes: torch.Tensor, frames: list[int] | None) -> torch.Tensor:
        """codes [B, n_q, F] (on the device) -> audio [B, 1, F * hop]. Causal: an item's audio does not
        depend on the padding after it, so `frames` is not needed."""
        latents = self.quantizer.decode(codes).to(self.dtype)
        return self.decoder(self.decoder_transformer(self.upsample(latents)))

    def decoded_item(self, audio: torch.Tensor, frames: int, num_samples: int) -> torch.Tensor:
        return audio[:, :num_samples].clone()
