"""Which rows verify checks: a deterministic sample by sha256 of (seed, key), and reading those rows."""

from __future__ import annotations

import hashlib
from typing import Any

import pyarrow.compute as pc

from .. import reader


def stable_score(key: str, seed: int = 0) -> float:
    """A number in [0, 1) fixed by (seed, key): the first 8 bytes of sha256 — same on every machine."""
    digest = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def sample_keys(keys: list[str], count: int | None = None, fraction: float | None = None,
                seed: int = 0) -> list[str]:
    """The `count` keys of lowest score, or every key with score < `fraction`; sorted by score."""
    if (count is None) == (fraction is None):
        raise ValueError("give exactly one of count (rows) or fraction (0..1)")
    scored = sorted((stable_score(k, seed), k) for k in set(keys))
    if count is not None:
        return [k for _, k in scored[: max(0, count)]]
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must lie in [0, 1]; got {fraction}")
    return [k for s, k in scored if s < fraction]


def read_rows(tokens: str, keys: list[str], streams: list[str] = (),
              storage_options: dict | None = None) -> list[dict[str, Any]]:
    """The committed rows of `keys`: dicts with codes int16 [n_q, F] and the other core columns, and the
    columns of `streams` (e.g. semantic_codes) as int16 [1, F']."""
    columns = ["key", "source", "num_frames", "num_samples", "pad_samples", "scales", "start_s", "duration_s"]
    table = reader.arrow_dataset(tokens, storage_options).to_table(columns=[*columns, "codes", *streams],
                                                  filter=pc.field("key").isin(keys))
    blocks = {c: reader.codes_from_arrow(table.column(c)) for c in ["codes", *streams]}
    rows = table.select(columns).to_pylist()
    for i, row in enumerate(rows):
        for c, column in blocks.items():
            row[c] = column[i]
    return rows
