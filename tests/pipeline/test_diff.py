"""jobs.diff / pipeline.token_diff: two token datasets compared key by key.

Datasets: the demo shards tokenized three times on real Ray (twice with 1 torch thread, once with
2), plus copies of the first with planted flips, a dropped row and a duplicated row.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs import diff as diff_cli
from pipeline import reader, writer
from pipeline.token_diff import DiffOptions, Row, compare_rows, diff_datasets
from tests.conftest import REPO

ray = pytest.importorskip("ray")
DEMO = str(REPO / "demo" / "shards" / "demo-{000..001}.tar")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, local_ray):
    """{name: output dir}: a and b with 1 torch thread, c with 2 (codes may differ at near-ties)."""
    from pipeline.config import load_config
    from pipeline.job import run_job

    root = tmp_path_factory.mktemp("diff-runs")
    out = {}
    for name, threads in (("a", 1), ("b", 1), ("c", 2)):
        cfg = load_config(str(REPO / "configs" / "test.yaml"), [f"cpus_per_actor={threads}"])
        run_job(cfg, DEMO, str(root / name), log=lambda *a, **k: None)
        out[name] = root / name
    return out


def rows_by_key(path) -> dict[str, dict]:
    """Every committed row of a dataset read directly (codes as int16 [n_q, frames])."""
    out = {}
    for part in writer.committed_parts(str(path)):
        table = pq.read_table(part)
        codes = reader.codes_from_arrow(table.column("codes"))
        for row, block in zip(table.to_pylist(), codes):
            out[row["key"]] = {**row, "codes": block}
    return out


def rewrite_part(path: Path, edit) -> None:
    """Replace the first committed tokens part of dataset `path` by edit(list of row dicts), schema kept."""
    part = writer.committed_parts(str(path))[0]
    table = pq.read_table(part)
    rows = edit(table.to_pylist())
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), part)


def copy_of(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def run_cli(*argv) -> tuple[int, dict]:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        status = diff_cli.main([str(a) for a in argv])
    return status, json.loads(buf.getvalue()) if buf.getvalue() else {}


def test_identical_runs_agree(runs, tmp_path):
    status, summary = run_cli(runs["a"], runs["b"], "--report", tmp_path / "rep")
    assert status == 0
    assert summary["passed"] and summary["identical"] == summary["paired"] == 7
    assert summary["rows_a"] == summary["rows_b"] == 7 and summary["keys"] == []
    assert summary["agreement"] == 1.0
    page = (tmp_path / "rep" / "index.html").read_text()
    assert "AGREE" in page and json.loads((tmp_path / "rep" / "diff.json").read_text())["passed"]


def test_planted_flips_are_found_exactly(runs, tmp_path):
    planted = {}  # key -> list of (codebook, frame)

    def flip(rows):
        for i, (q, f) in enumerate([(0, 3), (5, 3), (7, 40)]):
            row = rows[i % 2]
            row["codes"][q][f] = (row["codes"][q][f] + 1) % 1024
            planted.setdefault(row["key"], []).append((q, f))
        return rows

    b = copy_of(runs["a"], tmp_path / "flipped")
    rewrite_part(b, flip)
    result = diff_datasets(str(runs["a"]), str(b))
    assert not result.passed and result.codes_differ == len(planted)
    assert {d.key for d in result.keys} == set(planted)
    a_rows = rows_by_key(runs["a"])
    for d in result.keys:
        frames = sorted({f for _, f in planted[d.key]})
        n_q, n_frames = a_rows[d.key]["codes"].shape
        assert d.frames_differing == len(frames) and d.first_differing_frame == frames[0]
        expected = [1.0 - sum(q == cb for cb, _ in planted[d.key]) / n_frames for q in range(n_q)]
        assert d.codebook_agreement == pytest.approx(expected, abs=1e-12)
        assert not d.structural
    assert result.positions - result.matches == 3
    # worst first: the key with two flips comes before the key with one (same length or not, by agreement)
    assert [d.agreement for d in result.keys] == sorted(d.agreement for d in result.keys)
    status, _ = run_cli(runs["a"], b, "--min-agreement", "0.99")
    assert status == 0
    status, summary = run_cli(runs["a"], b)
    assert status == 1 and summary["failures"]


def test_missing_and_duplicate_rows(runs, tmp_path):
    dropped = {}

    def drop(rows):
        dropped["key"] = rows[0]["key"]
        return rows[1:]

    b = copy_of(runs["a"], tmp_path / "missing")
    rewrite_part(b, drop)
    result = diff_datasets(str(runs["a"]), str(b))
    assert (result.only_a, result.only_b, result.paired, result.identical) == (1, 0, 6, 6)
    assert result.keys[0].key == dropped["key"] and result.keys[0].status == "only_a"
    assert not result.passed
    reverse = diff_datasets(str(b), str(runs["a"]))
    assert reverse.only_b == 1 and reverse.keys[0].status == "only_b"

    c = copy_of(runs["a"], tmp_path / "duplicate")
    rewrite_part(c, lambda rows: rows + rows[:1])
    result = diff_datasets(str(runs["a"]), str(c))
    assert result.duplicates == 1 and result.keys[0].status == "duplicate" and not result.passed
    assert result.rows_b == 8


def test_thread_counts_diff_equals_direct_computation(runs):
    """1 vs 2 torch threads: codes may differ at near-ties; the diff must report exactly what differs."""
    result = diff_datasets(str(runs["a"]), str(runs["c"]))
    a, c = rows_by_key(runs["a"]), rows_by_key(runs["c"])
    assert set(a) == set(c) and result.paired == len(a)
    differing = {k for k in a if not np.array_equal(a[k]["codes"], c[k]["codes"])}
    assert {d.key for d in result.keys} == differing
    matches = sum(int((a[k]["codes"] == c[k]["codes"]).sum()) for k in a)
    positions = sum(a[k]["codes"].size for k in a)
    assert (result.matches, result.positions) == (matches, positions)
    per_q = (np.sum([(a[k]["codes"] == c[k]["codes"]).sum(axis=1) for k in a], axis=0))
    assert result.codebook_matches == per_q.tolist()
    for d in result.keys:
        same = a[d.key]["codes"] == c[d.key]["codes"]
        assert d.frames_differing == int((~same.all(axis=0)).sum())
        assert d.agreement == pytest.approx(same.mean(), abs=1e-12)
    assert result.passed == (not differing)
    assert result.provenance_differences.get("job_config.cpus_per_actor") == [1, 2]


def test_compare_rows_shapes_and_scales():
    codes = np.arange(12, dtype=np.int16).reshape(2, 6)
    a = Row("k", "s", codes, 6, 1920, 0, (1.0, 2.0))
    longer = Row("k", "s", np.concatenate([codes, codes[:, :2]], axis=1), 8, 2560, 0, (1.0, 2.5))
    d, matches, positions = compare_rows(a, longer, scale_rtol=0.1)
    assert matches.tolist() == [6, 6] and positions.tolist() == [8, 8]
    assert (d.frames_differing, d.first_differing_frame) == (2, 6)
    assert d.scales_differing == 1 and d.scale_max_abs_diff == pytest.approx(0.5) and d.structural
    fewer_q = Row("k", "s", codes[:1], 6, 1920, 0, (1.0, 2.0))
    d, matches, positions = compare_rows(a, fewer_q, scale_rtol=0.0)
    assert matches.tolist() == [6, 0] and d.codebook_agreement == [1.0, 0.0] and d.frames_differing == 6
    d, _, _ = compare_rows(a, Row("k", "s", codes, 6, 1920, 0, (1.0, 2.05)), scale_rtol=0.1)
    assert d.scales_differing == 0
    d, _, _ = compare_rows(a, Row("k", "s", codes, 6, 1920, 0, None))
    assert d.scales_differing == 2


def test_bad_arguments_exit_2(runs, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for argv in ([runs["a"], tmp_path / "nope"], [tmp_path / "empty", runs["a"]],
                 [runs["a"], runs["b"], "--min-agreement", "1.5"], [runs["a"], runs["b"], "--scale-rtol", "-1"]):
        assert diff_cli.main([str(x) for x in argv]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("audiotok diff:") and "\n" not in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exc:
        diff_cli.main([str(runs["a"])])
    assert exc.value.code == 2


def test_options_reject_bad_values():
    with pytest.raises(ValueError, match="min_agreement"):
        DiffOptions(min_agreement=-0.1)
