"""Compare two token datasets of the same input key by key (a GPU run against a CPU run, bf16 against
fp32, a model update against the last version). No Ray.

    result = diff_datasets("out/cpu", "out/gpu", DiffOptions(min_agreement=0.999))
    result.passed, result.agreement, result.codebook_agreement, result.keys[0]   # worst key first

Only committed shards are read (`writer.committed_parts`). Rows are paired by `key`; shards with the
same id are read together, so memory holds one shard of each side plus the rows not yet paired.

Per paired key, codes [n_q, frames] are compared position by position over the larger of the two
shapes: a position one side lacks (extra frames or codebooks) counts as a disagreement. Agreement
is matching positions / compared positions; per codebook likewise. `scales` (one per 48 kHz chunk)
differ where |a - b| > scale_rtol * |a|; a different number of scales is a difference too.

Verdict (`passed`): no key in one dataset only, no key twice in one dataset, no paired key whose
num_frames, num_samples, pad_samples or scales differ, and the overall code agreement over paired
keys >= min_agreement (default 1.0: identical). Provenance fields that differ are reported, never
judged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field

import fsspec
import numpy as np
import pyarrow.parquet as pq

from . import reader, shard_files, writer

COLUMNS = ("key", "codes", "num_frames", "num_samples", "pad_samples", "scales")
ONLY_A, ONLY_B, DUPLICATE, DIFFERS = "only_a", "only_b", "duplicate", "differs"


@dataclass(frozen=True)
class DiffOptions:
    """min_agreement: overall code agreement needed to pass, 0..1. scale_rtol: relative tolerance of scales."""

    min_agreement: float = 1.0
    scale_rtol: float = 0.0

    def __post_init__(self):
        if not 0.0 <= self.min_agreement <= 1.0:
            raise ValueError(f"min_agreement must be within 0..1; got {self.min_agreement}")
        if not self.scale_rtol >= 0.0:
            raise ValueError(f"scale_rtol must be >= 0; got {self.scale_rtol}")


@dataclass(frozen=True)
class Row:
    """One tokens row as compared: codes int16 [n_q, num_frames]; scales one float per chunk or None."""

    key: str
    shard: str
    codes: np.ndarray
    num_frames: int
    num_samples: int
    pad_samples: int
    scales: tuple[float, ...] | None


@dataclass
class KeyDiff:
    """A key that is not identical in both datasets.

    status: differs | only_a | only_b | duplicate (the key occurs more than once in one dataset).
    codebook_agreement: per codebook (max of both n_q), over max(frames_a, frames_b) frames.
    frames_differing: frame positions where any codebook differs (or only one side has the frame);
    first_differing_frame: the first of them. scales_differing: chunks whose scale differs.
    Fields of a side the key is missing from are None.
    """

    key: str
    status: str
    shard_a: str | None = None
    shard_b: str | None = None
    agreement: float | None = None
    codebook_agreement: list[float] = field(default_factory=list)
    n_q_a: int | None = None
    n_q_b: int | None = None
    frames_a: int | None = None
    frames_b: int | None = None
    frames_differing: int = 0
    first_differing_frame: int | None = None
    num_samples_a: int | None = None
    num_samples_b: int | None = None
    pad_samples_a: int | None = None
    pad_samples_b: int | None = None
    scales_differing: int = 0
    scale_max_abs_diff: float | None = None

    @property
    def structural(self) -> bool:
        """True when more than codes differ: lengths, padding or scales."""
        return (self.frames_a != self.frames_b or self.num_samples_a != self.num_samples_b
                or self.pad_samples_a != self.pad_samples_b or self.scales_differing > 0)


@dataclass
class DiffResult:
    """Everything the diff found; `keys` lists the non-identical keys, worst first."""

    a: str
    b: str
    options: DiffOptions
    rows_a: int = 0
    rows_b: int = 0
    paired: int = 0
    identical: int = 0
    only_a: int = 0
    only_b: int = 0
    duplicates: int = 0
    codes_differ: int = 0
    frames_differ: int = 0
    samples_differ: int = 0
    scales_differ: int = 0
    positions: int = 0
    matches: int = 0
    codebook_positions: list[int] = field(default_factory=list)
    codebook_matches: list[int] = field(default_factory=list)
    provenance_differences: dict[str, list] = field(default_factory=dict)
    keys: list[KeyDiff] = field(default_factory=list)

    @property
    def agreement(self) -> float:
        """Matching code positions / compared positions over paired keys (1.0 when nothing was compared)."""
        return self.matches / self.positions if self.positions else 1.0

    @property
    def codebook_agreement(self) -> list[float]:
        return [m / p if p else 1.0 for m, p in zip(self.codebook_matches, self.codebook_positions)]

    @property
    def failures(self) -> list[str]:
        out = []
        if self.only_a or self.only_b:
            out.append(f"{self.only_a} keys only in A, {self.only_b} keys only in B")
        if self.duplicates:
            out.append(f"{self.duplicates} keys occur more than once in one dataset")
        for count, what in ((self.frames_differ, "num_frames"), (self.samples_differ, "num_samples or pad_samples"),
                            (self.scales_differ, "scales")):
            if count:
                out.append(f"{count} paired keys differ in {what}")
        if self.agreement < self.options.min_agreement:
            out.append(f"code agreement {self.agreement:.6f} < {self.options.min_agreement}")
        return out

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> dict:
        """The result as plain JSON-ready data (keys worst first)."""
        data = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("keys", "options")}
        data.update(options=dataclasses.asdict(self.options), agreement=self.agreement,
                    codebook_agreement=self.codebook_agreement, passed=self.passed, failures=self.failures,
                    keys=[dataclasses.asdict(k) for k in self.keys])
        return data


def _shard_id(part_path: str) -> str:
    name = part_path.rstrip("/").rsplit("/", 1)[-1]
    prefix, suffix = shard_files.affixes("tokens")
    return name[len(prefix): -len(suffix)]


def committed_shard_parts(path: str) -> dict[str, str]:
    """{shard id: tokens part path} of the committed shards of `path` (a dataset directory or URL)."""
    return {_shard_id(p): p for p in writer.committed_parts(path)}


def read_rows(part: str, shard: str) -> Iterator[Row]:
    """The rows of one tokens part file, in file order."""
    with fsspec.open(part, "rb") as f:
        table = pq.read_table(f, columns=list(COLUMNS))
    codes = reader.codes_from_arrow(table.column("codes"))
    data = {c: table.column(c).to_pylist() for c in COLUMNS if c != "codes"}
    for i, block in enumerate(codes):
        scales = data["scales"][i]
        yield Row(data["key"][i], shard, block, int(data["num_frames"][i]), int(data["num_samples"][i]),
                  int(data["pad_samples"][i]), None if scales is None else tuple(scales))


def compare_rows(a: Row, b: Row, scale_rtol: float = 0.0) -> tuple[KeyDiff, np.ndarray, np.ndarray]:
    """(difference record, matches per codebook, positions per codebook) of one paired key."""
    n_q = max(a.codes.shape[0], b.codes.shape[0])
    frames = max(a.codes.shape[1], b.codes.shape[1])
    same = np.zeros((n_q, frames), dtype=bool)
    q, f = min(a.codes.shape[0], b.codes.shape[0]), min(a.codes.shape[1], b.codes.shape[1])
    same[:q, :f] = a.codes[:q, :f] == b.codes[:q, :f]
    matches = same.sum(axis=1).astype(np.int64)
    positions = np.full(n_q, frames, dtype=np.int64)
    bad_frames = np.flatnonzero(~same.all(axis=0)) if n_q else np.zeros(0, dtype=np.int64)
    scales_differing, scale_diff = _compare_scales(a.scales, b.scales, scale_rtol)
    diff = KeyDiff(
        key=a.key, status=DIFFERS, shard_a=a.shard, shard_b=b.shard,
        agreement=float(matches.sum() / positions.sum()) if positions.sum() else 1.0,
        codebook_agreement=[float(m / p) if p else 1.0 for m, p in zip(matches, positions)],
        n_q_a=int(a.codes.shape[0]), n_q_b=int(b.codes.shape[0]), frames_a=a.num_frames, frames_b=b.num_frames,
        frames_differing=int(bad_frames.size), first_differing_frame=int(bad_frames[0]) if bad_frames.size else None,
        num_samples_a=a.num_samples, num_samples_b=b.num_samples, pad_samples_a=a.pad_samples,
        pad_samples_b=b.pad_samples, scales_differing=scales_differing, scale_max_abs_diff=scale_diff,
    )
    return diff, matches, positions


def _compare_scales(a: tuple | None, b: tuple | None, rtol: float) -> tuple[int, float | None]:
    if a is None and b is None:
        return 0, None
    if a is None or b is None or len(a) != len(b):
        return max(len(a or ()), len(b or ()), 1), None
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    gap = np.abs(x - y)
    return int((gap > rtol * np.abs(x)).sum()), float(gap.max()) if gap.size else 0.0


def _is_identical(d: KeyDiff) -> bool:
    return d.agreement == 1.0 and d.n_q_a == d.n_q_b and not d.structural


def _add(result: DiffResult, d: KeyDiff, matches: np.ndarray, positions: np.ndarray) -> None:
    result.paired += 1
    grow = len(matches) - len(result.codebook_matches)
    if grow > 0:
        result.codebook_matches += [0] * grow
        result.codebook_positions += [0] * grow
    for i, (m, p) in enumerate(zip(matches, positions)):
        result.codebook_matches[i] += int(m)
        result.codebook_positions[i] += int(p)
    result.matches += int(matches.sum())
    result.positions += int(positions.sum())
    if _is_identical(d):
        result.identical += 1
        return
    result.codes_differ += d.agreement < 1.0 or d.n_q_a != d.n_q_b
    result.frames_differ += d.frames_a != d.frames_b
    result.samples_differ += d.num_samples_a != d.num_samples_b or d.pad_samples_a != d.pad_samples_b
    result.scales_differ += d.scales_differing > 0
    result.keys.append(d)


def _one_side(row: Row, status: str) -> KeyDiff:
    side = "a" if status == ONLY_A else "b"
    values = {f"shard_{side}": row.shard, f"n_q_{side}": int(row.codes.shape[0]), f"frames_{side}": row.num_frames,
              f"num_samples_{side}": row.num_samples, f"pad_samples_{side}": row.pad_samples}
    return KeyDiff(key=row.key, status=status, **values)


def _severity(d: KeyDiff) -> tuple:
    rank = {DUPLICATE: 0, ONLY_A: 1, ONLY_B: 1}.get(d.status, 2)
    return rank, not d.structural, d.agreement if d.agreement is not None else 0.0, d.key


def _flat(value, prefix: str = "") -> dict:
    if not isinstance(value, dict):
        return {prefix: value}
    out = {}
    for k, v in value.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def provenance_differences(a: dict, b: dict) -> dict[str, list]:
    """{dotted field: [value in A, value in B]} for the provenance fields that differ (nested dicts flattened)."""
    fa, fb = _flat(a), _flat(b)
    return {k: [fa.get(k), fb.get(k)] for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)}


def diff_datasets(a: str, b: str, options: DiffOptions = DiffOptions()) -> DiffResult:
    """Compare the committed rows of datasets `a` and `b` (directories or fsspec URLs).

    Raises ValueError when either is not an audiotok output (no provenance and no committed parts).
    """
    prov_a, prov_b = reader.load_provenance_json(a), reader.load_provenance_json(b)
    result = DiffResult(a=str(a), b=str(b), options=options,
                        provenance_differences=provenance_differences(prov_a, prov_b))
    parts_a, parts_b = committed_shard_parts(a), committed_shard_parts(b)
    waiting_a: dict[str, Row] = {}  # read, not yet paired
    waiting_b: dict[str, Row] = {}
    seen_a: set[str] = set()
    seen_b: set[str] = set()
    duplicates: set[str] = set()
    for shard in sorted(set(parts_a) | set(parts_b)):
        for parts, waiting, seen, count in ((parts_a, waiting_a, seen_a, "rows_a"),
                                            (parts_b, waiting_b, seen_b, "rows_b")):
            if shard not in parts:
                continue
            for row in read_rows(parts[shard], shard):
                setattr(result, count, getattr(result, count) + 1)
                if row.key in seen:
                    duplicates.add(row.key)
                    continue
                seen.add(row.key)
                waiting[row.key] = row
        for key in [k for k in waiting_a if k in waiting_b]:
            d, matches, positions = compare_rows(waiting_a.pop(key), waiting_b.pop(key), options.scale_rtol)
            _add(result, d, matches, positions)
    for row in waiting_a.values():
        result.keys.append(_one_side(row, ONLY_A))
    for row in waiting_b.values():
        result.keys.append(_one_side(row, ONLY_B))
    result.only_a, result.only_b = len(waiting_a), len(waiting_b)
    result.duplicates = len(duplicates)
    result.keys += [KeyDiff(key=k, status=DUPLICATE) for k in sorted(duplicates)]
    result.keys.sort(key=_severity)
    return result
