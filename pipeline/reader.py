"""Read a token dataset for training: committed parts only, one bandwidth, a length range, torch out.

    ds = TokenDataset("out/demo", bandwidth=1.5, min_frames=75, max_frames=750)
    loader = torch.utils.data.DataLoader(ds, batch_size=8, collate_fn=collate, num_workers=2)
    for batch in loader:
        batch["codes"]   # int64 [B, n_q, F_max], padded with pad_value past each item's end
        batch["mask"]    # bool [B, F_max], True on real frames

Only the part files of committed shards are read (`writer.committed_parts`), so a dataset that a
job is still writing, or one left by a crash, yields every committed row exactly once. `path` is
a local directory or an fsspec URL (credentials from fsspec's usual configuration).

`to_transformers(row, provenance)` turns a row into the arguments of transformers'
`EncodecModel.decode`; note that transformers' `last_frame_pad_length` counts *code frames* of
padding added to the last 1 s chunk so the chunks stack, not the samples of our `pad_samples`.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Callable, Iterator
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import torch
from fsspec.implementations.local import LocalFileSystem
from torch.utils.data import IterableDataset, get_worker_info

from . import manifest_snapshot, schema, writer
from .provenance import Provenance
from .streams import stream_columns
from .time_window import frame_span, window_of

ROW_COLUMNS = ("key", "codes", "num_frames", "num_samples", "pad_samples", "scales")
STREAM_IDENTITY = ("family", "model_name", "checkpoint_sha256", "centroids_sha256", "frame_rate", "codebook_size")


def load_provenance(path: str, storage_options: dict | None = None) -> Provenance:
    """The dataset's provenance: `<path>/_provenance.json`, else the Parquet metadata of its first part.
    storage_options: the output filesystem's (fsspec), here and in every function of this module."""
    return Provenance.from_json(load_provenance_json(path, storage_options))


def load_provenance_json(path: str, storage_options: dict | None = None) -> dict[str, Any]:
    """The dataset's provenance as written (every key, a newer writer's too); see `load_provenance`."""
    fs, root = manifest_snapshot.filesystem(path, storage_options)
    sidecar = f"{root}/{writer.PROVENANCE}"
    if fs.exists(sidecar):
        return json.loads(fs.cat_file(sidecar))
    parts = writer.committed_parts(path, storage_options=storage_options)
    if not parts:
        raise ValueError(f"{path} has neither {writer.PROVENANCE} nor committed token parts")
    with fsspec.open(parts[0], "rb", **(storage_options or {})) as f:
        meta = schema.read_file_metadata(pq.read_schema(f).metadata)
    if not meta:
        raise ValueError(f"{parts[0]} has no audiotok.* metadata; is {path} an audiotok output?")
    return meta


CODEC_IDENTITY = ("codec_family", "model_name", "checkpoint_sha256", "sample_rate", "frame_rate")


def check_same_codec(paths: list[str], provenances: list[Provenance]) -> None:
    """ValueError unless every dataset was written by the same codec (family, model, checkpoint, rates):
    codes of two codecs mean different things and must not share a training stream."""
    def identity(p: Provenance) -> tuple:
        return tuple(getattr(p, k) for k in CODEC_IDENTITY)

    first = identity(provenances[0])
    for path, prov in zip(paths[1:], provenances[1:]):
        other = identity(prov)
        if other != first:
            diff = {k: (a, b) for k, a, b in zip(CODEC_IDENTITY, first, other) if a != b}
            raise ValueError(f"{paths[0]} and {path} were tokenized by different codecs ({first[0]} "
                             f"{first[1]} vs {other[0]} {other[1]}); differing: {diff}. Read them separately.")


def num_quantizers(provenance: Provenance, bandwidth: float | None) -> int:
    """Codebooks for `bandwidth` kbps from the stored bandwidth -> n_q map; None: all stored codebooks."""
    table = provenance.num_quantizers_by_bandwidth()
    if bandwidth is None:
        return max(table.values())
    if float(bandwidth) not in table:
        raise ValueError(f"bandwidth {bandwidth} kbps is not stored in this dataset; stored: {sorted(table)}")
    return table[float(bandwidth)]


def arrow_dataset(path: str, storage_options: dict | None = None) -> pads.Dataset:
    """A pyarrow dataset over the committed token parts of `path` (local or fsspec URL)."""
    parts = writer.committed_parts(path, storage_options=storage_options)
    if not parts:
        return pads.dataset(schema.tokens_schema([]).empty_table())
    fs, _ = manifest_snapshot.filesystem(path, storage_options)
    if isinstance(fs, LocalFileSystem):
        return pads.dataset(parts, format="parquet")
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    return pads.dataset([fs._strip_protocol(p) for p in parts], format="parquet",
                        filesystem=PyFileSystem(FSSpecHandler(fs)))


def fragment_maker(path: str, storage_options: dict | None = None) -> Callable[[str], pads.Fragment]:
    """part path or URL of dataset `path` -> its Parquet fragment, made without a request to the storage
    (the footer is read when the fragment is read)."""
    fs, _ = manifest_snapshot.filesystem(path, storage_options)
    fmt = pads.ParquetFileFormat()
    if isinstance(fs, LocalFileSystem):
        from pyarrow.fs import LocalFileSystem as ArrowLocal

        local = ArrowLocal()
        return lambda part: fmt.make_fragment(part, filesystem=local)
    from pyarrow.fs import FSSpecHandler, PyFileSystem

    arrow_fs = PyFileSystem(FSSpecHandler(fs))
    return lambda part: fmt.make_fragment(fs._strip_protocol(part), filesystem=arrow_fs)


def codes_from_arrow(codes: pa.Array, n_q: int | None = None) -> list[np.ndarray]:
    """A `codes` column (list<list<int16>>, any slice) -> one int16 array [n_q, num_frames] per row.

    Rows keep their first `n_q` codebooks (all when None). Raises ValueError on ragged codes.
    """
    if isinstance(codes, pa.ChunkedArray):
        codes = codes.combine_chunks()
    rows_nq = codes.value_lengths().to_numpy(zero_copy_only=False)
    inner = codes.flatten()
    lengths = inner.value_lengths().to_numpy(zero_copy_only=False)
    values = inner.flatten().to_numpy(zero_copy_only=False)
    out, row_start, value_start = [], 0, 0
    for nq in rows_nq:
        frames = lengths[row_start : row_start + nq]
        if nq and (frames != frames[0]).any():
            raise ValueError(f"ragged codes: codebooks of one row have {sorted(set(frames.tolist()))} frames")
        f = int(frames[0]) if nq else 0
        block = values[value_start : value_start + nq * f].reshape(nq, f)
        out.append(block[: nq if n_q is None else n_q])
        row_start += nq
        value_start += nq * f
    return out


class TokenDataset(IterableDataset):
    """Rows of a token dataset as dicts of tensors, for `torch.utils.data.DataLoader`.

    path: one dataset, or a list of datasets of the same codec (else ValueError: `check_same_codec`).
    bandwidth: kbps (a stored one); None keeps all stored codebooks. min_frames / max_frames: keep
    rows with min_frames <= num_frames <= max_frames (pushed down to Parquet). columns: extra
    columns to yield (passthrough text etc.). shuffle_buffer > 0: files in a seeded order per epoch
    (`set_epoch`) and rows drawn from a buffer of that many. With several DataLoader workers, files
    are dealt round-robin to workers (use at least as many files as workers).

    Each item: {"key": str, "codes": int64 [n_q, num_frames], "num_frames": int, "num_samples": int
    (samples at the model rate), "pad_samples": int, "scales": list[float] | None, <columns>...}.

    streams: other token streams to yield too, e.g. ("semantic",): "semantic_codes" int64 [1, frames].
    crop_s: None yields whole rows; else a row longer than crop_s seconds is cropped to a window of
    floor(crop_s * frame_rate) frames of `codes` at a seeded random frame (seed, epoch, key), and every
    stream to the same window in seconds (`time_window.frame_span`); "window_s" gives it.
    storage_options: passed to fsspec for every read of the datasets (e.g. the job's `output.storage_options`).
    """

    def __init__(self, path: str | list[str], bandwidth: float | None = None, min_frames: int | None = None,
                 max_frames: int | None = None, columns: tuple[str, ...] = (), batch_rows: int = 256,
                 shuffle_buffer: int = 0, seed: int = 0, streams: tuple[str, ...] = (), crop_s: float | None = None,
                 storage_options: dict | None = None):
        super().__init__()
        self.paths = [str(p) for p in path] if isinstance(path, (list, tuple)) else [str(path)]
        self.path = self.paths[0]
        self.storage_options = dict(storage_options or {})
        provenances = [load_provenance(p, self.storage_options) for p in self.paths]
        check_same_codec(self.paths, provenances)  # several datasets: one codec, or a clear error
        self.provenance = provenances[0]
        counts = {num_quantizers(p, bandwidth) for p in provenances}
        if len(counts) > 1:
            raise ValueError(f"the datasets store different codebook counts {sorted(counts)}; pass a bandwidth")
        self.n_q = counts.pop()
        self.bandwidth = bandwidth
        self.columns = tuple(c for c in columns if c not in ROW_COLUMNS)
        self.filter = None
        if min_frames is not None:
            self.filter = pc.field("num_frames") >= min_frames
        if max_frames is not None:
            upper = pc.field("num_frames") <= max_frames
            self.filter = upper if self.filter is None else self.filter & upper
        self.batch_rows, self.shuffle_buffer, self.seed, self.epoch = batch_rows, shuffle_buffer, seed, 0
        self.streams = stream_columns(self.provenance, tuple(streams))
        for path, prov in zip(self.paths[1:], provenances[1:]):
            if stream_columns(prov, tuple(streams)) != self.streams or [
                    {k: s.get(k) for k in STREAM_IDENTITY} for s in prov.streams if s["name"] in streams] != [
                    {k: s.get(k) for k in STREAM_IDENTITY} for s in self.provenance.streams if s["name"] in streams]:
                raise ValueError(f"{self.path} and {path} have different {list(streams)} tokenizers; read them "
                                 "separately")
        if crop_s is not None and crop_s <= 0:
            raise ValueError(f"crop_s must be > 0 seconds or None, got {crop_s}")
        self.crop_s = crop_s
        self.refresh()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def refresh(self) -> None:
        """Read the committed parts again (the dataset reads those committed when it was made, so that
        no DataLoader worker reads the manifest again each epoch): for a dataset a job still writes."""
        self.parts = [sorted(writer.committed_parts(p, storage_options=self.storage_options)) for p in self.paths]

    def fragments(self) -> list:
        """This worker's Parquet fragments (files), in order (seeded shuffle when shuffle_buffer > 0).
        Made from the part paths read once (`refresh`): no request to the storage here."""
        files = [(d, part) for d, parts in enumerate(self.parts) for part in parts]
        if self.shuffle_buffer:
            random.Random(self.seed * 1_000_003 + self.epoch).shuffle(files)
        info = get_worker_info()
        mine = files if info is None else files[info.id :: info.num_workers]
        makers = [fragment_maker(p, self.storage_options) for p in self.paths]
        return [makers[d](part) for d, part in mine]

    def rows(self) -> Iterator[dict[str, Any]]:
        """Items in file order (no shuffling), this worker's files only."""
        stream_cols = [s.column for s in self.streams]
        columns = [*ROW_COLUMNS, *stream_cols, *self.columns]
        for fragment in self.fragments():
            for batch in fragment.to_batches(columns=columns, filter=self.filter, batch_size=self.batch_rows):
                codes = codes_from_arrow(batch.column("codes"), self.n_q)
                ids = {c: codes_from_arrow(batch.column(c)) for c in stream_cols}
                data = {c: batch.column(c).to_pylist() for c in columns if c != "codes" and c not in ids}
                for i, block in enumerate(codes):
                    item = {c: data[c][i] for c in data}
                    item["codes"] = torch.from_numpy(block.astype(np.int64))
                    for c in stream_cols:
                        item[c] = torch.from_numpy(ids[c][i].astype(np.int64))
                    yield self._crop(item) if self.crop_s is not None else item

    def _crop(self, item: dict[str, Any]) -> dict[str, Any]:
        """`item` cut to a window of at most crop_s seconds (all its streams to the same seconds)."""
        rate = float(self.provenance.frame_rate)
        total, frames = item["codes"].shape[1], max(1, math.floor(self.crop_s * rate))
        start = 0
        if total > frames:
            digest = hashlib.sha256(f"{self.seed}/{self.epoch}/{item['key']}".encode()).digest()
            start = int.from_bytes(digest[:8], "little") % (total - frames + 1)
        frames = min(frames, total)
        t0, t1 = window_of(start, frames, rate)
        item["codes"] = item["codes"][:, start : start + frames]
        item["num_frames"], item["window_s"] = frames, (t0, t1)
        for s in self.streams:
            first, count = frame_span(t0, t1, s.frame_rate, item[s.column].shape[1])
            item[s.column] = item[s.column][:, first : first + count]
        return item

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if not self.shuffle_buffer:
            yield from self.rows()
            return
        info = get_worker_info()
        rng = random.Random((self.seed * 1_000_003 + self.epoch) * 1009 + (info.id if info else 0))
        buffer: list = []
        for item in self.rows():
            if len(buffer) < self.shuffle_buffer:
                buffer.append(item)
                continue
            j = rng.randrange(len(buffer))
            yield buffer[j]
            buffer[j] = item
        rng.shuffle(buffer)
        yield from buffer

    def to_transformers(self, row: dict) -> dict[str, Any]:
        return to_transformers(row, self.provenance)


def collate(items: list[dict[str, Any]], pad_value: int = 0) -> dict[str, Any]:
    """Items of TokenDataset -> a padded batch.

    codes: int64 [B, n_q, F_max] (pad_value past each item's num_frames), mask: bool [B, F_max]
    (True on real frames), num_frames / num_samples: int64 [B]; other fields as lists of length B.
    """
    if not items:
        raise ValueError("collate needs at least one item")
    n_q = {it["codes"].shape[0] for it in items}
    if len(n_q) != 1:
        raise ValueError(f"items have different numbers of codebooks {sorted(n_q)}; read one bandwidth")
    frames = torch.tensor([it["codes"].shape[1] for it in items], dtype=torch.long)
    codes = torch.full((len(items), n_q.pop(), int(frames.max())), pad_value, dtype=torch.long)
    for b, it in enumerate(items):
        codes[b, :, : it["codes"].shape[1]] = it["codes"]
    batch: dict[str, Any] = {
        "codes": codes,
        "mask": torch.arange(codes.shape[-1])[None] < frames[:, None],
        "num_frames": frames,
        "num_samples": torch.tensor([it["num_samples"] for it in items], dtype=torch.long),
    }
    for name in items[0]:
        if name not in batch:
            batch[name] = [it[name] for it in items]
    return batch


def to_transformers(row: dict, provenance: Provenance | None = None, n_q: int | None = None) -> dict[str, Any]:
    """One row -> kwargs of transformers' `EncodecModel.decode` for a batch of one.

    row: "codes" [n_q, F] (tensor, array or nested lists), "scales", "num_samples".
    provenance: needed for chunked (48 kHz) rows, for hop_length / chunk_length / chunk_stride.
    Returns audio_codes int64 [chunks, 1, n_q, frames of chunk 0] (the last chunk zero-padded),
    audio_scales (one [1, 1] tensor per chunk, or [None]), last_frame_pad_length (code frames of
    that padding) and padding_mask bool [1, num_samples], so that
    `ref.decode(**to_transformers(row, prov)).audio_values[0]` is our `decode` of the row: [C, num_samples].
    """
    codes = torch.as_tensor(np.asarray(row["codes"]), dtype=torch.long)[:n_q]
    num_samples = int(row["num_samples"])
    mask = torch.ones(1, num_samples, dtype=torch.bool)
    if row.get("scales") is None:
        return {"audio_codes": codes[None, None], "audio_scales": [None], "last_frame_pad_length": 0,
                "padding_mask": mask}
    if provenance is None or not provenance.chunk_length:
        raise ValueError("a row with scales is chunked (48 kHz): pass the dataset's provenance "
                         "(reader.load_provenance) for hop_length, chunk_length and chunk_stride")
    hop, length, stride = int(provenance.hop_length), int(provenance.chunk_length), int(provenance.chunk_stride)
    frames = [math.ceil(min(length, num_samples - s) / hop) for s in range(0, num_samples, stride)]
    scales = list(row["scales"])
    if len(frames) != len(scales) or sum(frames) != codes.shape[-1]:
        raise ValueError(f"row has {codes.shape[-1]} frames and {len(scales)} scales; {num_samples} samples "
                         f"need {sum(frames)} frames in {len(frames)} chunks")
    pieces = list(torch.split(codes, frames, dim=-1))
    pad = frames[0] - frames[-1]
    pieces[-1] = torch.nn.functional.pad(pieces[-1], (0, pad))
    return {
        "audio_codes": torch.stack(pieces)[:, None],
        "audio_scales": [torch.tensor([[s]], dtype=torch.float32) for s in scales],
        "last_frame_pad_length": pad,
        "padding_mask": mask,
    }
