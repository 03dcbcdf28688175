"""Parquet files built in the helper process (pipeline/parquet_process.py): the same bytes as built in
this process, a helper that dies is an OSError for that write and is started again for the next,
and a bad write is reported with the helper's traceback."""

import numpy as np
import pyarrow as pa
import pytest

from pipeline import schema, writer
from pipeline.config import OutputConfig
from pipeline.parquet_process import ParquetProcess


def table(rows=5):
    rng = np.random.default_rng(0)
    return schema.tokens_table([schema.TokenRow(f"k{i}", "src", rng.integers(0, 1024, (8, 30 + i)), 320 * (30 + i),
                                                0, None, 0.0, 1.0, {"text": f"t{i}"}) for i in range(rows)], ["text"])


def test_same_file_as_in_this_process(tmp_path):
    meta = schema.file_metadata({k: 1 for k in schema.REQUIRED_PROVENANCE})
    helper = ParquetProcess()
    try:
        helper.write(str(tmp_path / "a"), table(), meta, OutputConfig(), sync=True)
    finally:
        helper.close()
    writer._write_parquet(str(tmp_path / "b"), table(), meta, OutputConfig(), sync=True)
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()


def test_a_dead_helper_fails_one_write_and_is_restarted(tmp_path):
    helper = ParquetProcess()
    try:
        helper.write(str(tmp_path / "a"), table(), {}, OutputConfig(), sync=False)
        helper.proc.kill()
        helper.proc.wait()
        with pytest.raises(OSError, match="died"):
            helper.write(str(tmp_path / "b"), table(), {}, OutputConfig(), sync=False)
        helper.write(str(tmp_path / "c"), table(), {}, OutputConfig(), sync=False)
        assert helper.restarts == 1 and (tmp_path / "c").stat().st_size > 0
        with pytest.raises(RuntimeError, match="Parquet writer process"):  # no such directory: its traceback
            helper.write(str(tmp_path / "missing" / "d"), pa.table({"x": [1]}), {}, OutputConfig(), sync=False)
    finally:
        helper.close()
    assert helper.proc is None
