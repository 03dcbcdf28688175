"""Batches of a token dataset for (distributed) training, resumable mid-epoch.

    loader = TokenLoader("out/tokens", max_tokens=8192, max_frames=500, columns=("text",), num_workers=2)
    for epoch in range(loader.epoch, 10):
        for batch in loader:           # this rank's batches of the current epoch, then the epoch advances
            batch["codes"]             # int64 [B, n_q, F_max] (pad_id past each crop's end)
            batch["mask"]              # bool [B, F_max], True on real frames
        torch.save(loader.state_dict(), ...)   # also valid mid-epoch; load_state_dict resumes there

Rank and world size come from `torch.distributed` when it is initialised, else from the arguments
(default 0 of 1). Each rank's batches (see `plan.py`) are dealt to its DataLoader workers round-robin,
batch start + i to worker i % num_workers, and DataLoader hands them back in that same order, so the batches a
rank sees do not depend on the number of workers (any number, also more than files or batches).
A batch counts as consumed once the loader has yielded it: `state_dict()` then records it as done.
With `torch.distributed` initialised, the row index is built once, on rank 0, and broadcast to the
other ranks (`shared_index`), instead of every rank opening every part.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .index import RowIndex, RowReader
from .patterns import Interleaved, Pattern
from .plan import BatchConfig, EpochPlan, plan_epoch


def collate_crops(items: list[dict[str, Any]], pad_id: int, streams=(), stream_pad_ids: dict[str, int] | None = None,
                  ) -> dict[str, Any]:
    """Items of `RowReader.read` -> codes int64 [B, n_q, F_max] (pad_id past each item's end), mask bool
    [B, F_max], num_frames / start_frame / row int64 [B], key and passthrough columns as lists. Each of
    `streams` (index.StreamColumn) the same way: "<name>_codes" [B, 1, F'_max] (padded with its
    `stream_pad_ids[name]`, default its codebook size), "<name>_mask", "<name>_num_frames",
    "<name>_start_frame"."""
    frames = torch.tensor([it["num_frames"] for it in items], dtype=torch.long)
    codes = torch.full((len(items), items[0]["codes"].shape[0], int(frames.max())), pad_id, dtype=torch.long)
    for b, it in enumerate(items):
        codes[b, :, : it["num_frames"]] = it["codes"]
    batch: dict[str, Any] = {"codes": codes, "mask": torch.arange(codes.shape[-1])[None] < frames[:, None],
                             "num_frames": frames}
    for name in ("start_frame", "row"):
        batch[name] = torch.tensor([it[name] for it in items], dtype=torch.long)
    for stream in streams:
        pad = (stream_pad_ids or {}).get(stream.name, stream.codebook_size)
        lengths = torch.tensor([it[f"{stream.name}_num_frames"] for it in items], dtype=torch.long)
        ids = torch.full((len(items), 1, max(1, int(lengths.max()))), pad, dtype=torch.long)
        for b, it in enumerate(items):
            ids[b, :, : int(lengths[b])] = it[stream.column]
        batch[stream.column] = ids
        batch[f"{stream.name}_mask"] = torch.arange(ids.shape[-1])[None] < lengths[:, None]
        batch[f"{stream.name}_num_frames"] = lengths
        batch[f"{stream.name}_start_frame"] = torch.tensor([it[f"{stream.name}_start_frame"] for it in items])
    for name in items[0]:
        if name not in batch:
            batch[name] = [it[name] for it in items]
    return batch


def interleave_streams(batch: dict[str, Any], patterns: dict[str, Pattern], empty_ids: dict[str, int],
                       ) -> dict[str, Interleaved]:
    """Each stream's codebook pattern applied to its column of a collated batch: `patterns` and `empty_ids`
    by column, e.g. {"codes": Pattern("delay", 8), "semantic_codes": Pattern("parallel", 1)}; frames past
    each item's crop are padded with the empty id. Returns {column: Interleaved}."""
    out = {}
    for column, pattern in patterns.items():
        lengths = batch["num_frames"] if column == "codes" else batch[f"{column.removesuffix('_codes')}_num_frames"]
        out[column] = pattern.build(batch[column], lengths, empty_id=empty_ids[column])
    return out


def shared_index(path: str, bandwidth: float | None = None, columns: tuple[str, ...] = (),
                 keep_key=None, streams: tuple[str, ...] = (), storage_options: dict | None = None) -> RowIndex:
    """`RowIndex.build(...)`, on rank 0 only when `torch.distributed` is initialised with several ranks, the
    others receiving it by broadcast (every rank must call it, with the same arguments). An error building
    it on rank 0 is raised on every rank, so that none waits for an index that will not come."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return RowIndex.build(path, bandwidth, columns, keep_key, streams, storage_options=storage_options)
    box: list = [None]
    error = None
    if dist.get_rank() == 0:
        try:
            box[0] = RowIndex.build(path, bandwidth, columns, keep_key, streams, storage_options=storage_options)
        except Exception as exc:  # its message goes to the other ranks, then it is raised here
            error, box[0] = exc, f"rank 0 could not build the row index of {path}: {type(exc).__name__}: {exc}"
    dist.broadcast_object_list(box, src=0)
    if error is not None:
        raise error
    if isinstance(box[0], str):
        raise RuntimeError(box[0])
    return box[0]


class RankBatches(IterableDataset):
    """One rank's collated batches of one epoch, from batch `start` on, split over DataLoader workers."""

    def __init__(self, index: RowIndex, cfg: BatchConfig, epoch: int, rank: int, world_size: int,
                 start: int, pad_id: int, stream_pad_ids: dict[str, int] | None = None):
        super().__init__()
        self.index, self.cfg, self.epoch, self.rank, self.world_size = index, cfg, epoch, rank, world_size
        self.start, self.pad_id, self.stream_pad_ids = start, pad_id, stream_pad_ids

    def __iter__(self):
        plan = plan_epoch(self.index.frames, self.index.n_q, self.cfg, self.epoch, self.world_size)
        info = get_worker_info()
        worker, workers = (0, 1) if info is None else (info.id, info.num_workers)
        rows = RowReader(self.index)
        for i, batch in enumerate(plan.ranks[self.rank]):
            if i >= self.start and (i - self.start) % workers == worker:
                yield collate_crops([rows.read(c.row, c.start, c.frames) for c in batch], self.pad_id,
                                    self.index.streams, self.stream_pad_ids)


class TokenLoader:
    """Token-budget batches of the committed rows of `path` for one rank; see the module docstring.

    bandwidth: kbps (a stored one; None: all codebooks). max_tokens, max_frames, min_frames,
    num_buckets, seed: `BatchConfig`. columns: passthrough columns (text, caption...) in each batch.
    pad_id: the id past each item's end in `codes`; default the codebook size from the provenance (the
    first id that is not a code). keep_key(key) -> bool: read only those rows (a split).
    streams: other token streams to read with each row, e.g. ("semantic",): each batch then holds
    "semantic_codes" [B, 1, F'] cropped to the time window of the row's `codes` crop (`time_window`),
    padded with stream_pad_ids[name] (default: that stream's codebook size). max_tokens counts `codes`.
    storage_options: the output filesystem's (fsspec). num_workers, **loader_kwargs: DataLoader's."""

    def __init__(self, path: str, max_tokens: int, bandwidth: float | None = None, max_frames: int | None = None,
                 min_frames: int = 1, num_buckets: int = 8, seed: int = 0, columns: tuple[str, ...] = (),
                 rank: int | None = None, world_size: int | None = None, pad_id: int | None = None,
                 num_workers: int = 0, keep_key=None, streams: tuple[str, ...] = (),
                 stream_pad_ids: dict[str, int] | None = None, storage_options: dict | None = None, **loader_kwargs):
        self.cfg = BatchConfig(max_tokens, max_frames, min_frames, num_buckets, seed)
        self.index = shared_index(path, bandwidth, tuple(columns), keep_key, tuple(streams), storage_options)
        self.stream_pad_ids = stream_pad_ids
        if pad_id is None:
            if self.index.codebook_size is None:
                raise ValueError(f"the provenance of {path} does not give codec_config.codebook_size: pass pad_id")
            pad_id = self.index.codebook_size
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if world_size is None:
            world_size = torch.distributed.get_world_size() if distributed else 1
        if rank is None:
            rank = torch.distributed.get_rank() if distributed else 0
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.rank, self.world_size, self.pad_id = rank, world_size, pad_id
        self.num_workers, self.loader_kwargs = num_workers, loader_kwargs
        self.epoch, self.batches_done = 0, 0

    @property
    def n_q(self) -> int:
        return self.index.n_q

    def plan(self, epoch: int | None = None) -> EpochPlan:
        """The plan of `epoch` (default: the current one) for all ranks; `.report()` summarises it."""
        return plan_epoch(self.index.frames, self.index.n_q, self.cfg, self.epoch if epoch is None else epoch,
                          self.world_size)

    def __len__(self) -> int:
        """Batches of this rank in the current epoch (the same on every rank)."""
        return self.plan().batches_per_rank

    def __iter__(self):
        dataset = RankBatches(self.index, self.cfg, self.epoch, self.rank, self.world_size, self.batches_done,
                              self.pad_id, self.stream_pad_ids)
        for batch in DataLoader(dataset, batch_size=None, num_workers=self.num_workers, **self.loader_kwargs):
            self.batches_done += 1
            yield batch
        self.epoch, self.batches_done = self.epoch + 1, 0

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "batches_done": self.batches_done, "seed": self.cfg.seed,
                "world_size": self.world_size, "rank": self.rank, "dataset": self.index.fingerprint,
                "config": repr(self.cfg)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume where `state` was taken; raises ValueError if the dataset, the batch config, the seed or
        the world size changed (the plan would differ, so rows would repeat or be skipped)."""
        mine = self.state_dict()
        changed = [k for k in ("seed", "world_size", "rank", "dataset", "config") if state.get(k) != mine[k]]
        if changed:
            raise ValueError(f"cannot resume: {', '.join(f'{k} {state.get(k)!r} != {mine[k]!r}' for k in changed)}")
        self.epoch, self.batches_done = int(state["epoch"]), int(state["batches_done"])
