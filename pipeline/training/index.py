"""The row index of a token dataset: every committed row once, with its length, and random access to rows.

Rows are numbered 0..N-1 in the order of `writer.committed_parts` (sorted shard ids) and of rows within
each part, so every process that builds the index of the same committed dataset gets the same numbers.
Building it reads the shards' row-index files (`shard_rows`), gathered a thousand shards to a file
(`rows_gathered`: ~1,000 reads at a million shards, not a read of every part); shards written before
the row index existed are indexed from their tokens parts' `key` and `num_frames` columns, as before.
The index is numpy arrays, ~12 bytes a row (no keys: a CRC-32 of each key checks that a part has not
changed since), so that it costs every rank and DataLoader worker little memory and pickles fast.
`read_rows` reads the row groups that hold the rows asked for (a few row groups are cached per
process, as a shuffled epoch jumps between them).
"""

from __future__ import annotations

import hashlib
import zlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import fsspec
import numpy as np
import pyarrow.parquet as pq
import torch

from pipeline import reader, rows_gathered, shard_rows
from pipeline.streams import StreamColumn, stream_columns
from pipeline.time_window import frame_span, window_of

_CACHED_ROW_GROUPS = 8
_STREAM = "codes"  # the token stream indexed and read


@dataclass(frozen=True)
class RowIndex:
    """files: committed part paths/URLs; file_starts: int64 [F+1], the first row of each file in the
    files' rows laid end to end (filtered out or not); positions: [N] each indexed row's place there
    (uint32, int64 past 2**32 rows); frames: int32 [N]; key_crc: uint32 [N], zlib.crc32 of each key;
    group_starts / group_offsets: the first row (in its file) of each row group, file f's at
    group_offsets[f]:group_offsets[f + 1]; n_q: codebooks read (one bandwidth); columns: passthrough
    columns read with each row; fingerprint: changes when the committed rows do (the same value as
    before the row index was numpy: sha256 of the keys and frames); codebook_size: entries per
    codebook from the provenance (None when it does not say); frame_rate: of `codes`; streams: the other
    token streams read with each row, cropped to the same time window; storage_options: the output
    filesystem's (fsspec), for every read of the dataset."""

    path: str
    files: tuple[str, ...]
    file_starts: np.ndarray
    positions: np.ndarray
    frames: np.ndarray
    key_crc: np.ndarray
    group_starts: np.ndarray
    group_offsets: np.ndarray
    n_q: int
    columns: tuple[str, ...]
    fingerprint: str
    codebook_size: int | None = None
    frame_rate: float = 75.0
    streams: tuple[StreamColumn, ...] = ()
    storage_options: dict = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def file_of(self) -> np.ndarray:
        """int64 [N]: the file of each row."""
        return np.searchsorted(self.file_starts, self.positions, side="right").astype(np.int64) - 1

    @property
    def row_in_file(self) -> np.ndarray:
        """int64 [N]: each row's number in its file."""
        return self.positions.astype(np.int64) - self.file_starts[self.file_of]

    def locate(self, row: int) -> tuple[int, int]:
        """(file, row in that file) of indexed row `row`."""
        pos = int(self.positions[row])
        file = int(np.searchsorted(self.file_starts, pos, side="right")) - 1
        return file, pos - int(self.file_starts[file])

    def row_group_starts(self, file: int) -> np.ndarray:
        return self.group_starts[int(self.group_offsets[file]) : int(self.group_offsets[file + 1])]

    @property
    def nbytes(self) -> int:
        """Bytes of the index's arrays (the per-row ones and the per-file ones; not the file names)."""
        return sum(a.nbytes for a in (self.file_starts, self.positions, self.frames, self.key_crc,
                                      self.group_starts, self.group_offsets))

    @classmethod
    def build(cls, path: str, bandwidth: float | None = None, columns: tuple[str, ...] = (),
              keep_key: Callable[[str], bool] | None = None, streams: tuple[str, ...] = (),
              write_gathered: bool = True, storage_options: dict | None = None) -> RowIndex:
        """Index the committed rows of the token dataset at `path` (local directory or fsspec URL);
        keep_key: index only the rows whose key it accepts (e.g. a train / held-out split); streams:
        names of other token streams to read with `codes` (e.g. ("semantic",)); write_gathered: write
        the gathered row-index files that are missing (`rows_gathered`)."""
        options = dict(storage_options or {})
        provenance = reader.load_provenance(str(path), options)
        stream_cols = stream_columns(provenance, tuple(streams))
        n_q = reader.num_quantizers(provenance, bandwidth)
        card = (provenance.codec_config or {}).get("codebook_size")
        records = reader.writer.committed_shards(str(path), storage_options=options)
        ids = sorted(records)
        files = tuple(reader.writer.part_paths(str(path), ids, storage_options=options))
        counts = np.array([records[s].rows for s in ids], dtype=np.int64)
        file_starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        pos_type = np.uint32 if file_starts[-1] < 2**32 else np.int64
        total = int(file_starts[-1])  # filled in place (no second copy at the end), trimmed when rows are left out
        positions, frames = np.empty(total, dtype=pos_type), np.empty(total, dtype=np.int32)
        crcs, group_starts, filled = np.empty(total, dtype=np.uint32), [], 0
        groups_per_file = np.zeros(len(ids), dtype=np.int64)
        digest = hashlib.sha256()
        first, keyed = 0, False
        for chunk in rows_gathered.chunks(str(path), records, write=write_gathered, storage_options=options):
            table, n_files = chunk.table, len(chunk.shard_ids)
            missing = sorted(set(columns) - set(chunk.part_columns or columns))
            if missing:
                raise ValueError(f"columns {missing} are not in the tokens parts of shards {chunk.shard_ids[0]}.."
                                 f"{chunk.shard_ids[-1]}; they have {chunk.part_columns}")
            want = counts[first : first + n_files]
            rows = table.column("row").to_numpy().astype(np.int64)
            local = np.repeat(np.arange(n_files), want) if table.num_rows == want.sum() else None
            starts = np.concatenate([[0], np.cumsum(want)[:-1]])
            if local is None or not np.array_equal(rows, np.arange(len(rows)) - starts[local]):
                raise RuntimeError(f"the row index of shards {chunk.shard_ids[0]}..{chunk.shard_ids[-1]} of {path} "
                                   f"does not match their manifest records ({table.num_rows} rows, records: "
                                   f"{int(want.sum())}); was a part rewritten?")
            if shard_rows.FRAMES_PREFIX + _STREAM not in table.schema.names:
                raise ValueError(f"shards {chunk.shard_ids[0]}..{chunk.shard_ids[-1]} of {path} have no "
                                 f"{_STREAM!r} stream (their row index has {shard_rows.streams(table)})")
            new_group = np.ones(len(rows), dtype=bool)
            row_group = table.column("row_group").to_numpy()
            new_group[1:] = (row_group[1:] != row_group[:-1]) | (rows[1:] == 0)
            group_starts.append(rows[new_group])
            groups_per_file[first : first + n_files] = np.bincount(local[new_group], minlength=n_files)
            keys = table.column("key").to_pylist() if keep_key is not None else None
            kept = (np.ones(len(rows), dtype=bool) if keep_key is None
                    else np.fromiter((bool(keep_key(k)) for k in keys), dtype=bool, count=len(keys)))
            n = int(kept.sum())
            positions[filled : filled + n] = (file_starts[first + local] + rows)[kept]
            frames[filled : filled + n] = table.column(shard_rows.FRAMES_PREFIX + _STREAM).to_numpy()[kept]
            crcs[filled : filled + n] = table.column("key_crc").to_numpy()[kept]
            filled += n
            kept_keys = ([k for k, keep in zip(keys, kept) if keep] if keys is not None
                         else table.column("key").to_pylist())
            if kept_keys:  # sha256 of "\n".join(every kept key), fed a chunk at a time
                digest.update((b"\n" if keyed else b"") + "\n".join(kept_keys).encode())
                keyed = True
            first += n_files
        if filled < total:
            positions, frames, crcs = positions[:filled].copy(), frames[:filled].copy(), crcs[:filled].copy()
        for i in range(0, filled, 1 << 20):  # the keys, then every row's frames as int64 (as before)
            digest.update(frames[i : i + (1 << 20)].astype(np.int64).tobytes())
        return cls(str(path), files, file_starts, positions, frames, crcs,
                   _cat(group_starts, np.int64), np.concatenate([[0], np.cumsum(groups_per_file)]).astype(np.int64),
                   n_q, tuple(columns), digest.hexdigest()[:16], None if card is None else int(card),
                   float(provenance.frame_rate), stream_cols, options)


def _cat(xs: list[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate(xs).astype(dtype, copy=False) if xs else np.zeros(0, dtype=dtype)


class RowReader:
    """Reads indexed rows in one process: `read(row, start, frames)` -> item dict with
    "key", "row" (the index number), "codes" int64 [n_q, frames] (frames start..start+frames-1 of the
    row), "start_frame", "num_frames" (of the crop) and the passthrough columns; for each stream of the
    index, "<name>_codes" int64 [1, n] with "<name>_start_frame" and "<name>_num_frames": the frames of
    the same time window [start / frame_rate, (start + frames) / frame_rate) (`time_window.frame_span`)."""

    def __init__(self, index: RowIndex):
        self.index = index
        self._groups: OrderedDict = OrderedDict()

    def _row_group(self, file: int, group: int):
        key = (file, group)
        if key not in self._groups:
            with fsspec.open(self.index.files[file], "rb", **self.index.storage_options) as f:
                columns = ["key", "codes", *[s.column for s in self.index.streams], *self.index.columns]
                self._groups[key] = pq.ParquetFile(f).read_row_group(group, columns=columns)
            if len(self._groups) > _CACHED_ROW_GROUPS:
                self._groups.popitem(last=False)
        self._groups.move_to_end(key)
        return self._groups[key]

    def read(self, row: int, start: int, frames: int) -> dict:
        idx = self.index
        file, in_file = idx.locate(row)
        starts = idx.row_group_starts(file)
        group = int(np.searchsorted(starts, in_file, side="right")) - 1
        table = self._row_group(file, group).slice(in_file - int(starts[group]), 1)
        key = table.column("key")[0].as_py()
        if zlib.crc32(key.encode()) != int(idx.key_crc[row]):
            raise RuntimeError(f"{idx.files[file]} changed since the index was built (row {in_file} there, "
                               f"now {key!r}, is not the row indexed); rebuild the index")
        codes = reader.codes_from_arrow(table.column("codes"), idx.n_q)[0][:, start : start + frames]
        item = {"key": key, "row": row, "codes": torch.from_numpy(codes.astype(np.int64)),
                "start_frame": start, "num_frames": frames}
        t0, t1 = window_of(start, frames, idx.frame_rate)
        for stream in idx.streams:
            ids = reader.codes_from_arrow(table.column(stream.column))[0]
            first, count = frame_span(t0, t1, stream.frame_rate, ids.shape[1])
            item[stream.column] = torch.from_numpy(ids[:, first : first + count].astype(np.int64))
            item[f"{stream.name}_start_frame"], item[f"{stream.name}_num_frames"] = first, count
        for name in idx.columns:
            item[name] = table.column(name)[0].as_py()
        return item
