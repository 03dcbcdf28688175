"""DAC inference model behind the `Codec` interface: encode/decode batches of items with their true lengths.

An item of L samples is zero-padded to P = ceil(L / hop) * hop (what transformers' `DacFeatureExtractor`
does to one item) and gives P / hop = ceil(L / hop) frames, the last one partial. Decoding gives back
exactly L samples (the decoder's output cut to L; for the 16/24 kHz rates, whose decoder returns
F * hop - 8 samples, a last partial frame longer than that is completed with zeros).

Batch plans (`codec/batch_plan.py`): "cpu" encodes each item alone at its padded length (codes
bit-identical to transformers' `DacModel.encode` of the item, tests/codec/dac); "cuda" encodes many
items per pass, padded to a coarse length grid, each item's padding region zeroed before every
convolution (`layers.py`: why the batch's padding then cannot reach an item's outputs). What remains
on that plan is float rounding: kernels picked for a large batch, and the quantizer's matmul over all
its rows, may round differently in the last bits, which flips a code at a near-tie (1 in 18,000 seen
on the CPU), as EnCodec's batched LSTM does; the job records each row's batch for verify.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..batch_plan import grid_length
from ..framed import HopFramedCodec
from ..interface import EncodedItem, ModelProvenance
from ..validation import check_audio
from .config import DacConfig
from .layers import Decoder, Encoder, decoded_length, zero_padding
from .quantizer import ResidualVectorQuantizer


class DacModel(HopFramedCodec, nn.Module):
    family = "dac"
    widest = 128  # channels of the widest full-rate activation (encoder block 1's output at T / 2)

    def __init__(self, config: DacConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quantizer = ResidualVectorQuantizer(config)
        self.provenance = ModelProvenance("unloaded", None, True)
        self.batch_plan: str | None = None

    def padded_length(self, longest: int) -> int:
        """Samples a pass over items of at most `longest` samples is padded to: the next multiple of the
        hop on the CPU plan, the coarse grid (`batch_plan.grid_length`) on the CUDA plan."""
        hop = self.hop_length
        return math.ceil(longest / hop) * hop if self.plan == "cpu" else grid_length(longest, hop)

    @property
    def device(self) -> torch.device:
        return self.quantizer.quantizers[0].codebook.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.encoder.conv1.weight.dtype

    # ----- encode / decode --------------------------------------------------------------------
    @torch.inference_mode()
    def encode(self, audio: torch.Tensor, lengths=None, bandwidth: float | None = None,
               sample_rate: int | None = None, max_batch: int | None = None) -> list[EncodedItem]:
        """audio [B, 1, T] float, lengths [B] (valid samples, default T) -> one EncodedItem each, codes
        [n_q, ceil(L / hop)], scales None. bandwidth: kbps (`target_bandwidths`); None: all codebooks."""
        lengths = check_audio(audio, lengths, sample_rate, self.sample_rate, self.channels)
        n_q = self.config.n_codebooks if bandwidth is None else self.num_quantizers_for(bandwidth)
        audio = audio.to(device=self.device, dtype=self.dtype)
        hop, out = self.hop_length, []
        per_call = self._per_call(self.padded_length(audio.shape[-1]), max_batch)
        for start in range(0, len(lengths), per_call):
            idx = list(range(start, min(start + per_call, len(lengths))))
            sub = [lengths[i] for i in idx]
            padded = [self.frames_for(n) * hop for n in sub]
            total = self.padded_length(max(sub))
            x = audio[idx, :, : min(total, audio.shape[-1])]
            x = torch.nn.functional.pad(x, (0, total - x.shape[-1]))
            x = zero_padding(x, sub if any(n < total for n in sub) else None)  # [L, P) is the extractor's zeros
            uniform = all(p == total for p in padded)
            latents = self.encoder(x, None if uniform else padded)
            codes = self.quantizer.encode(latents.float(), n_q).cpu()  # host sync: once per pass
            out.extend(EncodedItem(codes[j, :, : p // hop], None, n) for j, (n, p) in enumerate(zip(sub, padded)))
        return out

    max_codebooks = property(lambda self: self.config.n_codebooks)

    def decode_pass(self, codes: torch.Tensor, frames: list[int] | None) -> torch.Tensor:
        """codes [B, n_q, F] (on the device) -> audio [B, 1, F * hop]; `frames`: each item's frame count
        when some are shorter than F (their padding is masked as for each item alone)."""
        return self.decoder(self.quantizer.decode(codes).to(self.dtype), frames)

    def decoded_item(self, audio: torch.Tensor, frames: int, num_samples: int) -> torch.Tensor:
        """An item's audio [1, num_samples]: what the decoder returns for its frames (F * hop - 8 samples at
        hop 320), zeros after that."""
        valid = min(num_samples, decoded_length(frames, self.config))
        return torch.nn.functional.pad(audio[:, :valid], (0, num_samples - valid))
