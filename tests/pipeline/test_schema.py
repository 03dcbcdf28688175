import json

import numpy as np
import pyarrow as pa
import pytest

from pipeline.records import Rejection
from pipeline.schema import (
    FORMAT_VERSION,
    REJECTS_SCHEMA,
    REQUIRED_PROVENANCE,
    TokenRow,
    file_metadata,
    read_file_metadata,
    rejects_table,
    tokens_schema,
    tokens_table,
)

PASS = ["text", "speaker", "extra"]


def make_rows(n=5, n_q=4, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        frames = 3 + 2 * i
        rows.append(TokenRow(
            key=f"k{i}", source="shard-a.tar", codes=rng.integers(0, 1024, (n_q, frames)).astype(np.int16),
            num_samples=frames * 320 - i, pad_samples=i, scales=None if i % 2 == 0 else [0.5, 1.25 + i],
            start_s=float(i), duration_s=0.5 * i,
            meta={"text": f"hello {i}", "speaker": i if i else None, "extra": {"b": [1, np.int64(2)], "a": 1}},
        ))
    return rows


def provenance():
    return {k: f"value-{k}" for k in REQUIRED_PROVENANCE} | {"bandwidth_to_num_quantizers": {"1.5": 2, "6.0": 8}}


def test_tokens_schema_is_explicit():
    schema = tokens_schema(PASS)
    assert schema.names == ["key", "source", "codes", "num_frames", "num_samples", "pad_samples", "scales",
                            "start_s", "duration_s", "item_path", *PASS]
    assert schema.field("codes").type == pa.list_(pa.list_(pa.int16()))
    assert schema.field("scales").type == pa.list_(pa.float32()) and schema.field("scales").nullable
    assert [schema.field(n).type for n in ("num_frames", "num_samples", "pad_samples", "start_s")] == [
        pa.int32(), pa.int64(), pa.int32(), pa.float64()]
    assert all(schema.field(c).type == pa.string() and schema.field(c).nullable for c in PASS)
    for bad in (["key"], ["text", "text"]):
        with pytest.raises(ValueError, match="passthrough"):
            tokens_schema(bad)


def test_tokens_table_round_trip():
    rows = make_rows()
    table = tokens_table(rows, PASS)
    assert table.schema == tokens_schema(PASS)
    out = table.to_pylist()
    for r, o in zip(rows, out):
        assert o["codes"] == r.codes.tolist()
        assert o["num_frames"] == r.codes.shape[1]
        assert (o["key"], o["source"], o["num_samples"], o["pad_samples"]) == (r.key, r.source, r.num_samples,
                                                                                r.pad_samples)
        assert o["scales"] == r.scales
        assert (o["start_s"], o["duration_s"]) == (r.start_s, r.duration_s)
        assert o["text"] == r.meta["text"]
    assert [o["speaker"] for o in out] == [None, "1", "2", "3", "4"]
    assert out[0]["extra"] == '{"a": 1, "b": [1, 2]}'
    flat = table.column("codes").chunk(0).values.values
    assert flat.type == pa.int16() and len(flat) == sum(r.codes.size for r in rows)


def test_tokens_table_accepts_views_and_wider_ints():
    base = np.arange(48, dtype=np.int64).reshape(8, 6)
    rows = [TokenRow("a", "s", base[:4, ::2], 1, 0, None, 0.0, 1.0), TokenRow("b", "s", base[4:, :1], 1, 0, None, 0, 1)]
    out = tokens_table(rows, []).column("codes").to_pylist()
    assert out == [base[:4, ::2].tolist(), base[4:, :1].tolist()]


def test_tokens_table_refuses_bad_rows():
    rows = make_rows(2)
    with pytest.raises(ValueError, match="same n_q"):
        tokens_table([rows[0], TokenRow("x", "s", np.zeros((2, 3), np.int16), 1, 0, None, 0, 1)], [])
    with pytest.raises(ValueError, match="integer array"):
        tokens_table([TokenRow("x", "s", np.zeros(3, np.int16), 1, 0, None, 0, 1)], [])
    with pytest.raises(ValueError, match="outside int16"):
        tokens_table([TokenRow("x", "s", np.full((1, 2), 40000), 1, 0, None, 0, 1)], [])
    with pytest.raises(ValueError, match="duplicate keys"):
        tokens_table([rows[0], rows[0]], [])


def test_empty_tables_have_the_schema():
    assert tokens_table([], PASS).schema == tokens_schema(PASS) and tokens_table([], PASS).num_rows == 0
    assert rejects_table([]).schema == REJECTS_SCHEMA


def test_rejects_table():
    rej = [Rejection("a", "s", "empty", "0 bytes"), Rejection("b", "s", "too_short", "0.01 s")]
    assert rejects_table(rej).to_pylist() == [
        {"key": "a", "source": "s", "reason": "empty", "detail": "0 bytes"},
        {"key": "b", "source": "s", "reason": "too_short", "detail": "0.01 s"}]
    with pytest.raises(ValueError, match="unknown reject reason"):
        rejects_table([Rejection("a", "s", "whatever", "")])


def test_file_metadata():
    md = file_metadata(provenance())
    assert all(k.startswith(b"audiotok.") for k in md)
    assert json.loads(md[b"audiotok.format_version"]) == FORMAT_VERSION
    assert json.loads(md[b"audiotok.bandwidth_to_num_quantizers"]) == {"1.5": 2, "6.0": 8}
    assert read_file_metadata({**md, b"ARROW:schema": b"x"}) == {**provenance(), "format_version": FORMAT_VERSION}
    with pytest.raises(ValueError, match="checkpoint_sha256"):
        file_metadata({k: v for k, v in provenance().items() if k != "checkpoint_sha256"})
    with pytest.raises(ValueError, match="format_version"):
        file_metadata({**provenance(), "format_version": 99})
