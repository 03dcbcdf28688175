"""Turn an output into one as written before the row-index files (issue 30): no `rows/`, no
`_row_index/`, and manifest records that carry their encode batches (every row key) and name only
the tokens and rejects parts, as main's writer wrote them (the same JSON fields otherwise)."""

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq

from pipeline import rows_gathered, shard_rows, writer


def to_pre_row_index(out: Path) -> None:
    for path in sorted((out / writer.MANIFEST).glob("*.json")):
        record = json.loads(path.read_text())
        rows = record["files"].pop(writer.ROWS)
        batches = shard_rows.encode_batches(pq.read_table(out / rows["path"]))
        record["encode_batches"] = [{"keys": b.keys, "max_batch": b.max_batch} for b in batches]
        path.write_text(json.dumps(record, indent=1, sort_keys=True))
    shutil.rmtree(out / shard_rows.FOLDER)
    shutil.rmtree(out / rows_gathered.FOLDER, ignore_errors=True)
