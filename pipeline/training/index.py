"""The row index of a token dataset: every committed row once, with its length, and random access to rows.

Rows are numbered 0..N-1 in the order of `writer.committed_parts` (sorted shard ids) and of rows within
each part, so every process that builds the index of the same committed dataset gets the same numbers.
Building it reads only the `key` and `num_frames` columns; `read_rows` reads the row groups that hold
the rows asked for (a few row groups are cached per process, as a shuffled epoch jumps between them).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import fsspec
import numpy as np
import pyarrow.parquet as pq
import torch

from pipeline import reader
from pipeline.streams import StreamColumn, stream_columns
from pipeline.time_window import frame_span, window_of

_CACHED_ROW_GROUPS = 8


@dataclass(frozen=True)
class RowIndex:
    """files: committed part paths/URLs; file_of, row_in_file, frames: int64 [N] per row; keys: N keys;
    row_group_starts: per file, the first row of each row group; n_q: codebooks read (one bandwidth);
    columns: passthrough columns read with each row; fingerprint: changes when the committed rows do;
    codebook_size: entries per codebook from the provenance (None when it does not say); frame_rate: of
    `codes`; streams: the other token streams read with each row, cropped to the same time window."""

    path: str
    files: tuple[str, ...]
    file_of: np.ndarray
    row_in_file: np.ndarray
    frames: np.ndarray
    keys: tuple[str, ...]
    row_group_starts: tuple[np.ndarray, ...]
    n_q: int
    columns: tuple[str, ...]
    fingerprint: str
    codebook_size: int | None = None
    frame_rate: float = 75.0
    streams: tuple[StreamColumn, ...] = ()

    def __len__(self) -> int:
        return len(self.keys)

    @classmethod
    def build(cls, path: str, bandwidth: float | None = None, columns: tuple[str, ...] = (),
              keep_key: Callable[[str], bool] | None = None, streams: tuple[str, ...] = ()) -> RowIndex:
        """Index the committed rows of the token dataset at `path` (local directory or fsspec URL);
        keep_key: index only the rows whose key it accepts (e.g. a train / held-out split); streams:
        names of other token streams to read with `codes` (e.g. ("semantic",))."""
        provenance = reader.load_provenance(str(path))
        stream_cols = stream_columns(provenance, tuple(streams))
        n_q = reader.num_quantizers(provenance, bandwidth)
        card = (provenance.codec_config or {}).get("codebook_size")
        files = tuple(reader.writer.committed_parts(str(path)))
        file_of, row_in_file, frames, keys, starts = [], [], [], [], []
        for i, part in enumerate(files):
            with fsspec.open(part, "rb") as f:
                pf = pq.ParquetFile(f)
                missing = sorted(set(columns) - set(pf.schema_arrow.names))
                if missing:
                    raise ValueError(f"columns {missing} are not in {part}; it has {pf.schema_arrow.names}")
                table = pf.read(columns=["key", "num_frames"])
                sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)]
            part_keys = table.column("key").to_pylist()
            kept = np.array([keep_key is None or keep_key(k) for k in part_keys], dtype=bool)
            starts.append(np.cumsum([0, *sizes[:-1]], dtype=np.int64))
            file_of.append(np.full(int(kept.sum()), i, dtype=np.int64))
            row_in_file.append(np.flatnonzero(kept).astype(np.int64))
            frames.append(table.column("num_frames").to_numpy().astype(np.int64)[kept])
            keys.extend(k for k, keep in zip(part_keys, kept) if keep)
        digest = hashlib.sha256("\n".join(keys).encode())
        for part_frames in frames:
            digest.update(part_frames.tobytes())

        def cat(xs):
            return np.concatenate(xs) if xs else np.zeros(0, dtype=np.int64)

        return cls(str(path), files, cat(file_of), cat(row_in_file), cat(frames), tuple(keys), tuple(starts),
                   n_q, tuple(columns), digest.hexdigest()[:16], None if card is None else int(card),
                   float(provenance.frame_rate), stream_cols)


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
            with fsspec.open(self.index.files[file], "rb") as f:
                columns = ["key", "codes", *[s.column for s in self.index.streams], *self.index.columns]
                self._groups[key] = pq.ParquetFile(f).read_row_group(group, columns=columns)
            if len(self._groups) > _CACHED_ROW_GROUPS:
                self._groups.popitem(last=False)
        self._groups.move_to_end(key)
        return self._groups[key]

    def read(self, row: int, start: int, frames: int) -> dict:
        idx = self.index
        file, in_file = int(idx.file_of[row]), int(idx.row_in_file[row])
        starts = idx.row_group_starts[file]
        group = int(np.searchsorted(starts, in_file, side="right")) - 1
        table = self._row_group(file, group).slice(in_file - int(starts[group]), 1)
        if table.column("key")[0].as_py() != idx.keys[row]:
            raise RuntimeError(f"{idx.files[file]} changed since the index was built (row {row} is no longer "
                               f"{idx.keys[row]!r}); rebuild the index")
        codes = reader.codes_from_arrow(table.column("codes"), idx.n_q)[0][:, start : start + frames]
        item = {"key": idx.keys[row], "row": row, "codes": torch.from_numpy(codes.astype(np.int64)),
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
