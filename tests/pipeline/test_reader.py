"""The training reader: committed rows only, bandwidth slicing, length filters, padded batches, and the
conversion to transformers' decode arguments (compared with our decode on the same weights)."""

import json
import math
import os
import re
import runpy

import numpy as np
import pyarrow.dataset as pads
import pytest
import torch

from codec import EncodedItem, random_model, save_model
from pipeline import reader, schema, writer
from pipeline.config import OutputConfig
from pipeline.reader import TokenDataset, collate, to_transformers
from pipeline.records import ShardRecord
from tests.conftest import REPO

N_Q = {"1.5": 2, "6.0": 8}


def provenance(model=None):
    c = model.config if model is not None else None
    return {
        "model_name": "test", "model_source": "random:24khz", "checkpoint_sha256": "0" * 64,
        "codec_config": {}, "sample_rate": c.sampling_rate if c else 24000, "channels": c.audio_channels if c else 1,
        "frame_rate": 75, "hop_length": 320, "chunk_length": c.chunk_length if c else None,
        "chunk_stride": c.chunk_stride if c else None, "bandwidths": [1.5, 6.0],
        "bandwidth_to_num_quantizers": N_Q if c is None or c.chunk_length is None else {"3.0": 2, "6.0": 4},
        "precision": "fp32", "pipeline_version": "test", "resampler": {}, "random_weights": True,
        "num_quantizers": 8 if c is None or c.chunk_length is None else 4, "device": "cpu", "segment_max_s": 60.0,
    }


def write_dataset(out, shards: dict[str, list[schema.TokenRow]], prov: dict, row_group_rows=2):
    for shard_id, rows in shards.items():
        table = schema.tokens_table(rows, ["text"])
        record = ShardRecord(shard_id, shard_id, rows=len(rows), rejects=0)
        writer.commit_shard(str(out), shard_id, table, schema.rejects_table([]), record,
                            schema.file_metadata(prov), OutputConfig(row_group_rows=row_group_rows))
    writer.write_provenance(str(out), prov)


def synthetic_rows(prefix, count, seed):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        frames = int(rng.integers(1, 200))
        rows.append(schema.TokenRow(f"{prefix}-{i}", f"{prefix}.tar", rng.integers(0, 1024, (8, frames)),
                                    frames * 320 - 7, 7, None, 0.0, frames / 75, {"text": f"t{i}"}))
    return rows


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("tokens")
    write_dataset(out, {"a": synthetic_rows("a", 7, 1), "b": synthetic_rows("b", 5, 2)}, provenance())
    # an uncommitted part (no manifest record), as a crashed or running job leaves it: never read
    table = schema.tokens_table(synthetic_rows("ghost", 3, 3), ["text"])
    import pyarrow.parquet as pq

    pq.write_table(table, out / "tokens" / "part-ghost.parquet")
    return out


def test_rows_equal_parquet_contents(dataset):
    committed = pads.dataset(writer.committed_parts(str(dataset))).to_table().to_pylist()
    expected = {r["key"]: r for r in committed}
    for bandwidth, n_q in ((1.5, 2), (6.0, 8), (None, 8)):
        items = list(TokenDataset(str(dataset), bandwidth=bandwidth, columns=("text", "source"), batch_rows=3))
        assert [it["key"] for it in items] == [r["key"] for r in committed]  # file order, ghost rows absent
        for it in items:
            row = expected[it["key"]]
            assert it["codes"].dtype == torch.int64 and it["codes"].shape == (n_q, row["num_frames"])
            assert it["codes"].tolist() == row["codes"][:n_q]
            assert (it["text"], it["source"], it["num_samples"]) == (row["text"], row["source"], row["num_samples"])


def test_length_filter_and_padded_batches(dataset):
    table = pads.dataset(writer.committed_parts(str(dataset))).to_table().to_pylist()
    lo, hi = 40, 150
    wanted = [r for r in table if lo <= r["num_frames"] <= hi]
    ds = TokenDataset(str(dataset), bandwidth=1.5, min_frames=lo, max_frames=hi)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, collate_fn=collate)
    seen = []
    for batch in loader:
        frames = batch["num_frames"]
        assert batch["codes"].shape == (len(batch["key"]), 2, int(frames.max()))
        assert batch["mask"].sum(1).tolist() == frames.tolist()
        for b, key in enumerate(batch["key"]):
            row = next(r for r in wanted if r["key"] == key)
            f = row["num_frames"]
            assert batch["codes"][b, :, :f].tolist() == row["codes"][:2]
            assert (batch["codes"][b, :, f:] == 0).all() and not batch["mask"][b, f:].any()
            seen.append(key)
    assert seen == [r["key"] for r in wanted] and 0 < len(seen) < len(table)
    padded = collate(list(ds)[:2], pad_value=1024)["codes"]
    assert (padded == 1024).any()


def test_workers_split_files_and_shuffle_is_seeded(dataset, monkeypatch):
    class Info:
        def __init__(self, i):
            self.id, self.num_workers = i, 2

    keys = []
    for i in range(2):
        monkeypatch.setattr(reader, "get_worker_info", lambda i=i: Info(i))
        keys.append([it["key"] for it in TokenDataset(str(dataset))])
    monkeypatch.undo()
    everything = [it["key"] for it in TokenDataset(str(dataset))]
    assert sorted(keys[0] + keys[1]) == sorted(everything) and not set(keys[0]) & set(keys[1])
    a = [it["key"] for it in TokenDataset(str(dataset), shuffle_buffer=4, seed=3)]
    b = [it["key"] for it in TokenDataset(str(dataset), shuffle_buffer=4, seed=3)]
    assert a == b != everything and sorted(a) == sorted(everything)


def test_bad_requests_name_the_choices(dataset, tmp_path):
    with pytest.raises(ValueError, match=r"stored: \[1.5, 6.0\]"):
        TokenDataset(str(dataset), bandwidth=3.0)
    with pytest.raises(ValueError, match="neither"):
        TokenDataset(str(tmp_path))
    (dataset / "_provenance.json").rename(tmp_path / "p.json")  # falls back to the Parquet metadata
    try:
        assert TokenDataset(str(dataset)).n_q == 8
    finally:
        (tmp_path / "p.json").rename(dataset / "_provenance.json")


def test_output_doc_reader_example_runs(dataset, tmp_path, monkeypatch):
    text = (REPO / "docs" / "output.md").read_text()
    code = re.search(r"<!-- reader-example -->\s*```python\n(.*?)```", text, re.DOTALL).group(1)
    (tmp_path / "out").mkdir()
    os.symlink(dataset, tmp_path / "out" / "demo")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "example.py").write_text(code)
    namespace = runpy.run_path(str(tmp_path / "example.py"))
    assert namespace["inputs"].shape[1] == 2 and namespace["steps"] >= 1


@pytest.mark.parametrize("preset,seconds", [("24khz", (1.3, 0.2)), ("48khz", (1.5, 0.4, 2.2))])
def test_to_transformers_decodes_like_ours(preset, seconds, tmp_path):
    transformers = pytest.importorskip("transformers")
    model = random_model(f"random:{preset}")
    ref = transformers.EncodecModel.from_pretrained(save_model(model, tmp_path / "m")).eval()
    c = model.config
    rng = np.random.default_rng(0)
    lengths = [int(s * c.sampling_rate) + 17 for s in seconds]
    audio = torch.from_numpy(rng.standard_normal((len(lengths), c.audio_channels, max(lengths))).astype(np.float32))
    top = max(c.target_bandwidths[:2])
    items = model.encode(audio * 0.1, lengths, bandwidth=top)
    rows = [schema.TokenRow(f"k{i}", "s", it.codes.numpy(), it.num_samples, model.pad_samples_for(it.num_samples),
                            it.scales, 0.0, 1.0) for i, it in enumerate(items)]
    prov = provenance(model)
    prov["bandwidth_to_num_quantizers"] = {str(b): c.num_quantizers_for(b) for b in c.target_bandwidths[:2]}
    write_dataset(tmp_path / "out", {"p": rows}, prov)
    ds = TokenDataset(str(tmp_path / "out"))
    for row, item in zip(ds, items):  # through Parquet and the reader
        kwargs = ds.to_transformers(row)
        assert kwargs["audio_codes"].shape[:3] == (max(1, math.ceil(item.num_samples / (c.chunk_stride or 1e12))),
                                                    1, item.codes.shape[0])
        with torch.no_grad():
            theirs = ref.decode(**kwargs).audio_values[0]
        ours = model.decode([EncodedItem(row["codes"], row["scales"], row["num_samples"])])[0]
        assert theirs.shape == ours.shape == (c.audio_channels, item.num_samples)
        assert torch.allclose(theirs, ours, atol=1e-5), (theirs - ours).abs().max()
    if preset == "48khz":
        with pytest.raises(ValueError, match="provenance"):
            to_transformers(row)
    json.dumps({k: str(v) for k, v in kwargs.items()})
