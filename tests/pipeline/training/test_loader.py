"""TokenLoader on a committed dataset with real DataLoader workers: several ranks x workers see every
committed row exactly once per epoch with its codes and text, and a resumed epoch repeats and skips nothing."""

import numpy as np
import pytest
import torch

from pipeline import schema
from pipeline.training import TokenLoader
from tests.pipeline.training.token_corpus import write_tokens


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    out = tmp_path_factory.mktemp("tokens")
    rows = write_tokens(out, [9, 14, 0, 6], seed=3)
    # a part without a manifest record (a crashed or running job): never read
    ghost = schema.TokenRow("ghost", "g", np.zeros((8, 5), dtype=np.int64), 1600, 0, None, 0.0, 0.1)
    pq_table = schema.tokens_table([ghost], ["text", "caption"])
    import pyarrow.parquet as pq

    pq.write_table(pq_table, out / "tokens" / "part-ghost.parquet")
    return out, rows


def loader(path, **kw):
    args = {"max_tokens": 2 * 700, "bandwidth": 1.5, "max_frames": 120, "columns": ("text", "caption"),
            "seed": 5, "pad_id": 1024}
    return TokenLoader(str(path), **{**args, **kw})


def check_batch(batch, rows, epoch_seen):
    frames = batch["num_frames"].tolist()
    assert batch["codes"].shape == (len(frames), 2, max(frames)) and batch["codes"].numel() <= 2 * 700
    for b, key in enumerate(batch["key"]):
        start, n = int(batch["start_frame"][b]), frames[b]
        row = rows[key]
        assert n == min(row["frames"], 120)
        assert batch["codes"][b, :, :n].tolist() == row["codes"][:2, start : start + n].tolist()
        assert (batch["codes"][b, :, n:] == 1024).all() and batch["mask"][b].sum() == n
        assert (batch["text"][b], batch["caption"][b]) == (row["text"], row["caption"])
        epoch_seen.append(key)


@pytest.mark.parametrize("world_size,num_workers", [(1, 0), (3, 2), (2, 5)])
def test_ranks_and_workers_see_each_committed_row_once(tokens, world_size, num_workers):
    path, rows = tokens
    epochs = []
    for epoch in range(2):
        seen = []
        for rank in range(world_size):
            ld = loader(path, world_size=world_size, rank=rank, num_workers=num_workers)
            ld.load_state_dict({**ld.state_dict(), "epoch": epoch})
            count = 0
            for batch in ld:
                check_batch(batch, rows, seen)
                count += 1
            assert count == len(ld.plan(epoch).ranks[rank]) == ld.plan(epoch).batches_per_rank
        assert sorted(seen) == sorted(rows) and "ghost" not in seen  # each committed row once
        epochs.append(seen)
    assert epochs[0] != epochs[1]


def test_order_does_not_depend_on_workers(tokens):
    path, _ = tokens
    orders = [[k for b in loader(path, world_size=2, rank=1, num_workers=w) for k in b["key"]] for w in (0, 3)]
    assert orders[0] == orders[1]


@pytest.mark.parametrize("stop_after", [1, 3])
def test_resume_mid_epoch_repeats_and_skips_nothing(tokens, stop_after):
    path, rows = tokens
    straight = loader(path, world_size=2, rank=0, num_workers=2)
    reference = [[k for b in straight for k in b["key"]] for _ in range(2)]  # epochs 0 and 1
    first = loader(path, world_size=2, rank=0, num_workers=3)
    got = []
    for i, batch in enumerate(first):
        got.extend(batch["key"])
        if i + 1 == stop_after:
            break
    state = first.state_dict()
    assert state["epoch"] == 0 and state["batches_done"] == stop_after
    resumed = loader(path, world_size=2, rank=0, num_workers=2)
    resumed.load_state_dict(state)
    seen = []
    for batch in resumed:
        check_batch(batch, rows, seen)
    assert got + seen == reference[0]
    assert resumed.state_dict()["epoch"] == 1
    assert [k for b in resumed for k in b["key"]] == reference[1]


def test_resume_refuses_a_changed_plan(tokens, tmp_path):
    path, _ = tokens
    state = loader(path, world_size=2, rank=0).state_dict()
    with pytest.raises(ValueError, match="world_size 2 != 3"):
        loader(path, world_size=3, rank=0).load_state_dict(state)
    with pytest.raises(ValueError, match="config"):
        loader(path, world_size=2, rank=0, max_frames=100).load_state_dict(state)
    same = tmp_path / "same"
    write_tokens(same, [9, 14, 0, 6], seed=3)
    loader(same, world_size=2, rank=0).load_state_dict(state)  # the same committed rows elsewhere: same plan
    grown = tmp_path / "grown"
    write_tokens(grown, [9, 14, 0, 6, 1], seed=3)  # one more committed shard
    with pytest.raises(ValueError, match="dataset"):
        loader(grown, world_size=2, rank=0).load_state_dict(state)
    with pytest.raises(ValueError, match="codebook_size: pass pad_id"):
        TokenLoader(str(path), max_tokens=1400)
    with pytest.raises(ValueError, match="rank must be in"):
        loader(path, world_size=2, rank=2)
    with pytest.raises(ValueError, match=r"columns \['lyrics'\]"):
        loader(path, columns=("lyrics",))


def _rank_main(rank, world_size, init_file, path, out):
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        ld = loader(path, num_workers=1)
        keys = [k for b in ld for k in b["key"]]
        (out / f"rank{rank}.txt").write_text(f"{ld.rank} {ld.world_size}\n" + "\n".join(keys))
    finally:
        torch.distributed.destroy_process_group()


def test_rank_and_world_size_from_torch_distributed(tokens, tmp_path):
    path, rows = tokens
    torch.multiprocessing.spawn(_rank_main, args=(2, str(tmp_path / "init"), str(path), tmp_path), nprocs=2)
    keys = []
    for rank in range(2):
        head, *mine = (tmp_path / f"rank{rank}.txt").read_text().splitlines()
        assert head == f"{rank} 2"
        assert mine == [k for b in loader(path, world_size=2, rank=rank) for k in b["key"]]
        keys += mine
    assert sorted(keys) == sorted(rows)


@pytest.mark.parametrize("rank", [0, 1])
def test_the_index_is_built_on_rank_0_only_and_broadcast(tokens, monkeypatch, rank):
    from pipeline.training import loader as loader_module
    from pipeline.training.index import RowIndex

    path, _ = tokens
    built, sent = [], []
    real_build = RowIndex.build

    def build(*args, **kwargs):
        built.append(args[0])
        return real_build(*args, **kwargs)

    def broadcast(box, src):
        assert src == 0
        if rank == 0:
            sent.append(box[0])
        else:
            box[0] = real_build(str(path), 1.5, ("text", "caption"), None)  # what rank 0 sends

    dist = torch.distributed
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(dist, "get_rank", lambda: rank)
    monkeypatch.setattr(dist, "broadcast_object_list", broadcast)
    monkeypatch.setattr(loader_module.RowIndex, "build", build)
    got = loader(path)
    assert (got.rank, got.world_size) == (rank, 2) and len(got.index) == 29
    assert built == ([str(path)] if rank == 0 else []) and len(sent) == (rank == 0)

    def fail(*args, **kwargs):
        raise ValueError("columns ['nope'] are not in part-x")

    def broadcast_error(box, src):
        if rank == 0:
            sent.append(box[0])
        else:
            box[0] = "rank 0 could not build the row index of x: ValueError: columns ['nope']"

    monkeypatch.setattr(loader_module.RowIndex, "build", fail)
    monkeypatch.setattr(dist, "broadcast_object_list", broadcast_error)
    with pytest.raises(ValueError if rank == 0 else RuntimeError, match="columns \\['nope'\\]"):
        loader(path)
    if rank == 0:
        assert sent[-1].startswith(f"rank 0 could not build the row index of {path}: ValueError")
