"""EnCodec inference model: encode/decode batches of items with their true lengths.

24 kHz model: the whole item is one pass; an item of L samples gives ceil(L / hop) frames and
decodes back to exactly L samples. Items of different lengths share a batch (see `conv.py`).

48 kHz model: each item is cut into chunks at offsets 0, stride, 2*stride, ... < L, each chunk
`chunk_length` long except the last, which ends at L (as transformers encodes an unpadded item):

    item:    |---------------------- L ----------------------|
    chunk 0: |--- 48000 ---|
    chunk 1:          |--- 48000 ---|            stride = 47520 (1 % overlap)
    chunk n-1:                           |-- L - (n-1)*stride --|

Each chunk is normalised by the RMS of its mono mix (+1e-8, the chunk's `scale`) and encoded
independently, so chunks of equal length from any items are batched together. Decoding multiplies
each chunk back by its scale and recombines them with the linear (triangular) overlap-add.
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch
from torch import nn

from .batch_plan import grid_length, resolve_plan, to_device, valid_mask
from .config import EncodecConfig
from .interface import EncodedItem, ModelProvenance
from .norm import equal_length_runs
from .quantizer import ResidualVectorQuantizer
from .seanet import LSTM, Decoder, Encoder
from .validation import check_audio, check_codes

# cuDNN and some CPU kernels index with 32 bits: keep activations of one call under this many elements.
_MAX_ELEMENTS = 2**31 - 1


class EncodecModel(nn.Module):
    family = "encodec"

    def __init__(self, config: EncodecConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quantizer = ResidualVectorQuantizer(config.num_quantizers, config.codebook_size, config.codebook_dim)
        self.provenance = ModelProvenance("unloaded", None, True)
        self.batch_plan: str | None = None  # None: the plan of the device (`batch_plan.py`)

    @property
    def plan(self) -> str:
        """The batch plan in force: "cpu" or "cuda" (`batch_plan.py`)."""
        return resolve_plan(self.batch_plan, self.device)

    def set_batch_plan(self, name: str | None) -> EncodecModel:
        """Run with the "cpu" or "cuda" plan whatever the device (None / "auto": the device's)."""
        self.batch_plan = None if name in (None, "auto") else resolve_plan(name, self.device)
        for module in self.modules():
            if isinstance(module, LSTM):  # batched on the CUDA plan, item by item on the CPU plan
                module.per_item = None if self.batch_plan is None else self.batch_plan == "cpu"
        return self

    # ----- the Codec interface's numbers (codec/interface.py) ----------------------------------
    name = property(lambda self: self.config.name)
    sample_rate = property(lambda self: self.config.sampling_rate)
    channels = property(lambda self: self.config.audio_channels)
    hop_length = property(lambda self: self.config.hop_length)
    frame_rate = property(lambda self: self.config.frame_rate)
    chunk_length = property(lambda self: self.config.chunk_length)
    chunk_stride = property(lambda self: self.config.chunk_stride)
    codebook_size = property(lambda self: self.config.codebook_size)
    target_bandwidths = property(lambda self: self.config.target_bandwidths)

    def num_quantizers_for(self, bandwidth: float) -> int:
        return self.config.num_quantizers_for(bandwidth)

    def config_dict(self) -> dict:
        return self.config.to_dict()

    # ----- layout helpers -------------------------------------------------------------------
    def chunk_spans(self, num_samples: int) -> list[tuple[int, int]]:
        """(start, length) in samples of each chunk of an item; one span when unchunked."""
        cfg = self.config
        if cfg.chunk_length is None:
            return [(0, num_samples)]
        return [
            (start, min(cfg.chunk_length, num_samples - start))
            for start in range(0, num_samples, cfg.chunk_stride)
        ]

    def frames_for(self, num_samples: int) -> int:
        """Code frames of an item of `num_samples` samples (summed over chunks)."""
        return sum(math.ceil(n / self.config.hop_length) for _, n in self.chunk_spans(num_samples))

    def pad_samples_for(self, num_samples: int) -> int:
        """Samples of padding in the last frame (of the last chunk)."""
        _, last = self.chunk_spans(num_samples)[-1]
        return math.ceil(last / self.config.hop_length) * self.config.hop_length - last

    # ----- validation -------------------------------------------------------------------------
    def _check_audio(self, audio, lengths, sample_rate):
        return check_audio(audio, lengths, sample_rate, self.config.sampling_rate, self.config.audio_channels)

    def _num_quantizers(self, bandwidth):
        return self.config.num_quantizers_for(self.config.target_bandwidths[-1] if bandwidth is None else bandwidth)

    # ----- encode -----------------------------------------------------------------------------
    @torch.inference_mode()
    def encode(self, audio: torch.Tensor, lengths=None, bandwidth: float | None = None,
               sample_rate: int | None = None, max_batch: int | None = None) -> list[EncodedItem]:
        """audio [B, C, T] float, lengths [B] (valid samples per item, default T) -> one EncodedItem each.

        bandwidth: kbps, one of `config.target_bandwidths`; None means the highest (so lower
        bandwidths are a prefix slice of the codes).
        max_batch: most items (48 kHz: chunks) per forward pass, to bound device memory.
        """
        lengths = self._check_audio(audio, lengths, sample_rate)
        n_q = self._num_quantizers(bandwidth)
        audio = audio.to(device=self.device, dtype=self.dtype)
        if self.config.chunk_length is None:
            return self._encode_whole(audio, lengths, n_q, max_batch)
        return self._encode_chunked(audio, lengths, n_q, max_batch)

    def _normalise(self, x: torch.Tensor, lengths: list[int]):
        """Divide each item by the RMS of its mono mix over its valid samples; returns (x, scales [B])."""
        x32 = x.float()
        mono = torch.sum(x32, 1) / x32.shape[1]
        if self.plan == "cpu" and all(n == x.shape[-1] for n in lengths):
            # one reduction per item, as the reference does: a batched reduction can round differently
            power = torch.cat([mono[j : j + 1].pow(2).mean(dim=-1) for j in range(mono.shape[0])])
        else:
            valid = valid_mask(lengths, x.shape[-1], x.device)
            power = (mono.pow(2) * valid).sum(-1) / valid.sum(-1)  # valid samples per item: its length
        scales = power.sqrt() + 1e-8
        return x / scales.to(x.dtype)[:, None, None], scales

    def _encode_frames(self, x: torch.Tensor, lengths: list[int] | None, n_q: int) -> torch.Tensor:
        """x [B, C, T] -> codes [B, n_q, F] (F for the longest item)."""
        latents, _ = self.encoder(x, lengths)
        return self.quantizer.encode(latents.float(), n_q)

    def _per_call(self, length: int, max_batch: int | None = None, encode: bool = True) -> int:
        """Items (chunks) of `length` samples per forward pass: as many as keep activations under
        _MAX_ELEMENTS, at most `max_batch`. The CPU plan encodes one per pass by default: it was the
        fastest there (README, "Codec speed and agreement") and keeps codes independent of the batch."""
        per_call = max(1, _MAX_ELEMENTS // (max(length, 1) * self.config.num_filters * 2))
        if max_batch is None and encode and self.plan == "cpu":
            max_batch = 1
        if max_batch:
            per_call = min(per_call, max_batch)
        return per_call

    def padded_length(self, longest: int) -> int:
        """Samples a forward pass over items of at most `longest` samples is padded to: the exact
        length on the CPU plan, the coarse grid (`batch_plan.grid_length`) on the CUDA plan."""
        return longest if self.plan == "cpu" else grid_length(longest, self.config.hop_length)

    def largest_forward_pass(self, lengths: list[int], padded: int, max_batch: int | None = None) -> int:
        """Most items (chunked models: chunks) one forward pass of `encode` takes for a batch of
        `lengths` padded to `padded` samples, with this `max_batch`."""
        if self.config.chunk_length is None:
            return min(len(lengths), self._per_call(self.padded_length(padded), max_batch))
        chunks = [chunk for n in lengths for _, chunk in self.chunk_spans(n)]  # one pass mixes chunk lengths
        return min(len(chunks), self._per_call(max(chunks), max_batch))

    def _sub_batches(self, items: list, length: int, max_batch: int | None = None, encode: bool = True):
        """Split work into forward passes of `_per_call` items (chunks) each."""
        per_call = self._per_call(length, max_batch, encode)
        for i in range(0, len(items), per_call):
            yield items[i : i + per_call]

    def _encode_whole(self, audio, lengths, n_q, max_batch=None):
        hop = self.config.hop_length
        out: list[EncodedItem] = []
        for idx in self._sub_batches(list(range(audio.shape[0])), self.padded_length(audio.shape[-1]), max_batch):
            sub_lengths = [lengths[i] for i in idx]
            total = self.padded_length(max(sub_lengths))
            x = audio[idx, :, :total]
            if x.shape[-1] < total:  # the CUDA plan's grid: zeros past the batch's longest item
                x = torch.nn.functional.pad(x, (0, total - x.shape[-1]))
            scales = None
            if self.config.normalize:
                x, scales = self._normalise(x, sub_lengths)
                scales = scales.cpu().tolist()  # host sync: once per pass
            uniform = all(n == total for n in sub_lengths)
            codes = self._encode_frames(x, None if uniform else sub_lengths, n_q).cpu()  # host sync: once per pass
            for j, n in enumerate(sub_lengths):
                item_scales = None if scales is None else [scales[j]]
                out.append(EncodedItem(codes[j, :, : math.ceil(n / hop)], item_scales, n))
        return out

    def _encode_chunked(self, audio, lengths, n_q, max_batch=None):
        # Every chunk, longest first: a forward pass takes chunks of different lengths (padded to its
        # longest, true lengths masked: conv.py, norm.py), so an item's partial last chunk shares a pass
        # with the others; equal lengths sit together and are normalised as one reduction each.
        spans = [self.chunk_spans(n) for n in lengths]
        chunks = sorted(
            ((n, b, c, start) for b, item_spans in enumerate(spans) for c, (start, n) in enumerate(item_spans)),
            key=lambda chunk: -chunk[0],
        )
        hop = self.config.hop_length
        codes = [[None] * len(s) for s in spans]
        scales = [[0.0] * len(s) for s in spans]
        for group in self._sub_batches(chunks, chunks[0][0], max_batch):
            group_lengths = [n for n, _, _, _ in group]
            runs = equal_length_runs(group_lengths)
            x = audio.new_zeros(len(group), audio.shape[1], group_lengths[0]) if len(runs) > 1 else None
            run_scales = []
            for first, end, n in runs:
                run = torch.stack([audio[b, :, start : start + n] for _, b, _, start in group[first:end]])
                run, run_scale = self._normalise(run, [n] * (end - first))
                run_scales.append(run_scale)
                if x is None:
                    x = run
                else:
                    x[first:end, :, :n] = run
            mixed = group_lengths if len(runs) > 1 else None
            group_codes = self._encode_frames(x, mixed, n_q).cpu()  # host syncs: once per pass (and the scales)
            for j, ((n, b, c, _), scale) in enumerate(zip(group, torch.cat(run_scales).cpu().tolist())):
                codes[b][c] = group_codes[j, :, : math.ceil(n / hop)]
                scales[b][c] = scale
        return [EncodedItem(torch.cat(codes[b], dim=-1), scales[b], lengths[b]) for b in range(len(lengths))]

    # ----- decode -----------------------------------------------------------------------------
    @torch.inference_mode()
    def decode(self, items: list[EncodedItem]) -> list[torch.Tensor]:
        """EncodedItems -> audio float32 [C, num_samples] each (on CPU).

        Codes are checked on the host first: an out-of-range code reaching the embedding on CUDA is a
        device-side assert that breaks every later call of the process, so it is a ValueError here.
        """
        if not items:
            return []
        check_codes(items, self.frames_for, self.config.num_quantizers, self.config.codebook_size)
        if self.config.chunk_length is None:
            return self._decode_whole(items)
        return self._decode_chunked(items)

    def _decode_frames(self, codes: torch.Tensor, frames: list[int] | None) -> torch.Tensor:
        """codes [B, n_q, F] int64 on the host -> audio float32 [B, C, F * hop] on the host."""
        latents = self.quantizer.decode(to_device(codes, self.device)).to(self.dtype)
        audio, _ = self.decoder(latents, frames)
        return audio.float().cpu()  # host sync: once per pass

    def _decode_whole(self, items):
        hop = self.config.hop_length
        frames = [item.codes.shape[1] for item in items]
        out: list[torch.Tensor | None] = [None] * len(items)
        for idx in self._sub_batches(list(range(len(items))), self.padded_length(max(frames) * hop), encode=False):
            total = self.padded_length(max(frames[b] for b in idx) * hop) // hop
            codes = torch.zeros(len(idx), items[0].codes.shape[0], total, dtype=torch.long)
            for j, b in enumerate(idx):
                codes[j, :, : frames[b]] = items[b].codes
            uniform = all(frames[b] == total for b in idx)
            audio = self._decode_frames(codes, None if uniform else [frames[b] for b in idx])
            for j, b in enumerate(idx):
                x = audio[j, :, : items[b].num_samples]
                if items[b].scales is not None:
                    x = x * items[b].scales[0]
                out[b] = x
        return out

    def _decode_chunked(self, items):
        hop = self.config.hop_length
        by_frames: dict[int, list[tuple[int, int]]] = defaultdict(list)
        pieces = []
        for b, item in enumerate(items):
            spans = self.chunk_spans(item.num_samples)
            bounds = [0]
            for _, n in spans:
                bounds.append(bounds[-1] + math.ceil(n / hop))
            pieces.append([item.codes[:, bounds[c] : bounds[c + 1]] for c in range(len(spans))])
            for c in range(len(spans)):
                by_frames[bounds[c + 1] - bounds[c]].append((b, c))
        decoded = [[None] * len(p) for p in pieces]
        for _, chunks in sorted(by_frames.items()):
            for group in self._sub_batches(chunks, self.config.chunk_length, encode=False):
                codes = torch.stack([pieces[b][c] for b, c in group]).long()
                audio = self._decode_frames(codes, None)
                for j, (b, c) in enumerate(group):
                    decoded[b][c] = audio[j] * items[b].scales[c]
        return [
            overlap_add(decoded[b], self.config.chunk_stride)[..., : item.num_samples]
            for b, item in enumerate(items)
        ]

    @property
    def device(self) -> torch.device:
        return self.quantizer.layers[0].codebook.embed.device

    @property
    def dtype(self) -> torch.dtype:
        return self.encoder.layers[0].conv.weight.dtype


def overlap_add(frames: list[torch.Tensor], stride: int) -> torch.Tensor:
    """Linear overlap-add of decoded chunks [C, n_i] placed `stride` apart -> [C, stride*(k-1) + n_last].

    Each chunk is weighted by a triangle peaking mid-chunk (the weights of transformers and the
    original EnCodec), and the sum is divided by the summed weights.
    """
    frame_length = frames[0].shape[-1]
    total = stride * (len(frames) - 1) + frames[-1].shape[-1]
    t = torch.linspace(0, 1, frame_length + 2, dtype=frames[0].dtype)[1:-1]
    weight = 0.5 - (t - 0.5).abs()
    out = torch.zeros(*frames[0].shape[:-1], total, dtype=frames[0].dtype)
    sum_weight = torch.zeros(total, dtype=frames[0].dtype)
    for i, frame in enumerate(frames):
        n = frame.shape[-1]
        out[..., i * stride : i * stride + n] += weight[:n] * frame
        sum_weight[i * stride : i * stride + n] += weight[:n]
    return out / sum_weight
