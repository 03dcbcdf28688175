"""jobs.verify over the outputs of a real job (demo shards, local Ray): sampling, metrics, the re-encode
check catching planted corruption, the Ray path, the end-of-job hook, the reader, and the HTML report
in a real headless Chromium."""

import hashlib
import io
import json
import os
import shutil
import subprocess

import numpy as np
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch
import webdataset as wds

from jobs.cli import main as cli
from pipeline import audio as audio_prep
from pipeline import writer
from pipeline.config import AudioConfig, SourceConfig, load_config
from pipeline.reader import TokenDataset, collate
from pipeline.records import Sample
from pipeline.verify import VerifyOptions, run_verify, sample_keys, verify_after_job
from pipeline.verify.check import Checker, CheckSettings
from tests.conftest import REPO, run_demo_job

ray = pytest.importorskip("ray")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def job(local_ray, tmp_path_factory):
    """One job over the demo shards (2 shards, 7 rows, 1.5 and 6 kbps), Ray started once."""
    return run_demo_job(tmp_path_factory.mktemp("job") / "out")


@pytest.fixture(scope="module")
def report(job, tmp_path_factory):
    directory = tmp_path_factory.mktemp("report")
    assert cli(["verify", "--tokens", str(job), "--count", "3", "--report", str(directory)]) == 0
    return directory


def test_sample_is_a_stable_hash_of_the_key():
    keys = [f"clip-{i}" for i in range(50)]
    score = {k: hashlib.sha256(f"7\x00{k}".encode()).digest()[:8] for k in keys}
    assert sample_keys(keys, count=5, seed=7) == sorted(keys, key=score.get)[:5]
    assert sample_keys(keys[::-1], count=5, seed=7) == sample_keys(keys, count=5, seed=7)
    assert sample_keys(keys, count=5, seed=8) != sample_keys(keys, count=5, seed=7)
    small, large = sample_keys(keys, fraction=0.2), sample_keys(keys, fraction=0.5)
    assert set(small) <= set(large) and set(sample_keys(keys[:25], fraction=0.5)) == set(large) & set(keys[:25])
    with pytest.raises(ValueError, match="exactly one"):
        sample_keys(keys, count=3, fraction=0.1)


def test_checker_finds_segments_like_the_job(tmp_path):
    """key#n rows are re-cut from the source exactly as the job cut them; missing and changed rows are named."""
    wav = io.BytesIO()
    sf.write(wav, np.random.default_rng(0).standard_normal(40000).astype(np.float32) * 0.1, 16000, format="WAV")
    shard = tmp_path / "long.tar"
    with wds.TarWriter(str(shard), encoder=False) as sink:
        sink.write({"__key__": "long", "wav": wav.getvalue()})
    audio = AudioConfig(max_duration_s=1.0)  # 2.5 s -> long#0, long#1, long#2 (0.5 s)
    settings = CheckSettings("random:24khz", "cpu", "fp32", 1, 24000, 1, SourceConfig(), audio, None, [1.5],
                             {1.5: 2, 6.0: 8}, 6.0)
    checker = Checker(settings)
    segments, _ = audio_prep.prepare(Sample("long", str(shard), wav.getvalue(), "wav"), audio, 24000, 1)
    rows = []
    for seg in segments[1:]:
        item = checker.model.encode(torch.from_numpy(seg.audio)[None], bandwidth=6.0)[0]
        rows.append({"key": seg.key, "source": str(shard), "codes": item.codes.numpy().astype("int16"),
                     "num_samples": seg.num_samples, "scales": None, "start_s": seg.start_s,
                     "duration_s": seg.duration_s})
    rows.append({**rows[0], "key": "long#7"})
    rows.append({**rows[1], "num_samples": rows[1]["num_samples"] + 1, "key": "long#0"})
    results = {r.key: r for r in checker.check(rows)}
    assert [s.key for s in segments] == ["long#0", "long#1", "long#2"]
    assert results["long#1"].status == results["long#2"].status == "ok"
    assert results["long#1"].code_agreement_all == results["long#2"].code_agreement_all == 1.0
    assert results["long#2"].start_s == 2.0 and results["long#2"].bandwidths[1.5].n_q == 2
    assert results["long#7"].status == "missing_original" and "not found" in results["long#7"].detail
    assert results["long#0"].status == "length_mismatch"


def test_verify_passes_and_writes_the_report(job, report):
    summary = json.loads((report / "summary.json").read_text())
    assert summary["passed"] and summary["failures"] == [] and summary["rows_sampled"] == 3
    assert summary["model_matches_provenance"] and summary["threads"] == 1 and summary["random_weights"]
    items = pq.read_table(report / "items.parquet").to_pylist()
    assert len(items) == 6 and {r["bandwidth_kbps"] for r in items} == {1.5, 6.0}
    assert {r["key"] for r in items} == set(sample_keys(
        pads.dataset(job / "tokens").to_table(columns=["key"]).column("key").to_pylist(), count=3))
    assert all(r["status"] == "ok" and r["code_agreement"] == r["code_agreement_all"] == 1.0 for r in items)
    # random weights: decoded audio is unrelated to the original, so only loose sanity bounds hold
    assert all(r["si_snr_db"] < 10 and 0 < r["mel_distance_db"] < 80 and r["lsd_db"] > 0 for r in items)
    assert [r["rank"] for r in items] == sorted(r["rank"] for r in items)
    aggs = pq.read_table(report / "aggregates.parquet").to_pylist()
    by_source = {(a["source"], a["bandwidth_kbps"]): a["n"] for a in aggs if a["group"] == "source"}
    assert sum(n for (_, bw), n in by_source.items() if bw == 6.0) == 3 and len({s for s, _ in by_source}) == 2
    assert json.loads((report / "items.json").read_text())[0]["key"] == items[0]["key"]
    assert len(list((report / "media").glob("*.png"))) == len(list((report / "media").glob("*.wav"))) == 9


def _corrupt(out, key, change):
    """Rewrite the committed part holding `key` with change(codes) applied to its codes, keeping metadata."""
    for part in writer.committed_parts(str(out)):
        table = pq.read_table(part)
        keys = table.column("key").to_pylist()
        if key in keys:
            rows = table.to_pylist()
            rows[keys.index(key)]["codes"] = change(rows[keys.index(key)]["codes"])
            pq.write_table(table.from_pylist(rows, schema=table.schema), part)
            return
    raise AssertionError(key)


def test_planted_corrupted_codes_are_flagged(job, tmp_path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(job, bad)
    first, second, clean = sample_keys(pads.dataset(bad / "tokens").to_table().column("key").to_pylist(), count=3)

    def flip(codes):  # codebook 5 (only in 6 kbps), frames 10..29: a different valid code
        codes[5][10:30] = [(c + 1) % 1024 for c in codes[5][10:30]]
        return codes

    def out_of_range(codes):
        codes[0][3] = 5000
        return codes

    _corrupt(bad, first, flip)
    _corrupt(bad, second, out_of_range)
    report = tmp_path / "report"
    argv = ["--tokens", str(bad), "--count", "3", "--bandwidths", "1.5", "--report", str(report)]
    from jobs.verify import main

    assert main(argv) == 1
    printed = capsys.readouterr()
    assert "code agreement < 0.999" in printed.err and first in printed.err
    assert "could not be verified" in printed.err and second in printed.err
    items = {r["key"]: r for r in pq.read_table(report / "items.parquet").to_pylist()}
    assert items[first]["status"] == "ok" and items[first]["code_agreement"] == 1.0  # first 2 codebooks intact
    assert items[first]["code_agreement_all"] == pytest.approx(1 - 20 / (8 * items[first]["num_samples"] / 320),
                                                                rel=0.01)
    assert items[second]["status"] == "bad_row" and "must lie in [0, 1024)" in items[second]["detail"]
    assert items[clean]["code_agreement_all"] == 1.0
    ranks = [items[k]["rank"] for k in (second, first, clean)]
    assert ranks == sorted(ranks)  # unverifiable first, then lowest agreement
    assert not json.loads((report / "summary.json").read_text())["passed"]


def test_arguments_are_checked(job, tmp_path, capsys):
    from jobs.verify import main

    assert main(["--tokens", str(job), "--bandwidths", "3", "--report", str(tmp_path / "r")]) == 2
    assert "stored: [1.5, 6.0]" in capsys.readouterr().err
    assert main(["--tokens", str(tmp_path / "nothing"), "--report", str(tmp_path / "r")]) == 2


def test_ray_path_matches_inline(job, report, tmp_path):
    from pipeline import verify_on_ray

    options = VerifyOptions(count=2, bandwidths=[6.0], use_ray="ray", max_media_items=1)
    summary = verify_on_ray.run_verify(str(job), str(tmp_path / "r"), options, log=lambda m: None)
    assert summary.passed and summary.path == "ray" and summary.model_matches_provenance
    inline = {(r["key"], r["bandwidth_kbps"]): r for r in pq.read_table(report / "items.parquet").to_pylist()}
    for r in pq.read_table(tmp_path / "r" / "items.parquet").to_pylist():
        ref = inline[(r["key"], 6.0)]
        for name in ("si_snr_db", "mel_distance_db", "lsd_db", "code_agreement_all"):
            assert r[name] == pytest.approx(ref[name], abs=1e-9), name
    assert len(list((tmp_path / "r" / "media").glob("*.png"))) == 2  # worst item only: original + 6 kbps


def test_actor_path_goes_through_the_runner_handed_in(job, tmp_path):
    """verify imports no engine: rows reach actors only through `on_actors`, which a fake stands in for."""
    calls = []

    def fake_runner(rows, settings, num_actors):
        calls.append((sorted(r["key"] for r in rows), num_actors))
        from pipeline.verify.check import Checker

        checker = Checker(settings)
        return checker.check(rows), checker.model.provenance

    options = VerifyOptions(count=3, bandwidths=[6.0], ray_min_rows=2, num_actors=5, max_media_items=0)
    summary = run_verify(str(job), str(tmp_path / "r"), options, log=lambda m: None, on_actors=fake_runner)
    assert summary.path == "ray" and len(calls) == 1 and len(calls[0][0]) == 3 and calls[0][1] == 5
    assert summary.passed and summary.model_matches_provenance
    # without a runner: inline for "auto", a clear error for "ray"
    assert run_verify(str(job), str(tmp_path / "i"), options, log=lambda m: None).path == "inline"
    with pytest.raises(ValueError, match="verify_on_ray"):
        run_verify(str(job), str(tmp_path / "x"), VerifyOptions(count=1, use_ray="ray"), log=lambda m: None)


def test_verify_after_job_hook(job, monkeypatch):
    from pipeline import reader

    reads = []
    load = reader.load_provenance
    def counted(path, storage_options=None):
        reads.append(path)
        return load(path, storage_options)

    monkeypatch.setattr(reader, "load_provenance", counted)
    cfg = load_config(REPO / "configs" / "test.yaml", ["verify.sample_count=1", "verify.seed=3"])
    summary = verify_after_job(cfg, str(job), log=lambda m: None)
    assert reads == [str(job)]  # _provenance.json read once, for the device and the check
    assert summary.passed and summary.rows_sampled == 1 and (job / "_verify" / "index.html").is_file()
    assert verify_after_job(load_config(REPO / "configs" / "test.yaml"), str(job)) is None
    assert pads.dataset(str(job / "tokens")).count_rows() == 7  # the report does not leak into the tokens


def test_reader_batches_equal_the_job_parquet(job):
    table = {r["key"]: r for r in pads.dataset(job / "tokens").to_table().to_pylist()}
    loader = torch.utils.data.DataLoader(TokenDataset(str(job), bandwidth=1.5), batch_size=3, collate_fn=collate)
    seen = 0
    for batch in loader:
        for b, key in enumerate(batch["key"]):
            f = table[key]["num_frames"]
            assert batch["codes"][b, :, :f].tolist() == table[key]["codes"][:2] and batch["mask"][b].sum() == f
            seen += 1
    assert seen == len(table) == 7


_PROBE = """<script>
window.addEventListener('load', function () {
  var started = Date.now();
  function report() {
    var pre = document.createElement('pre');
    pre.id = 'probe';
    pre.textContent = JSON.stringify({
      images: Array.from(document.images).map(function (i) { return [i.complete, i.naturalWidth]; }),
      audio: Array.from(document.querySelectorAll('audio')).map(function (a) { return [a.readyState, a.duration]; }),
      svgs: document.querySelectorAll('svg.hist').length, rows: document.querySelectorAll('table.items tr').length});
    document.body.appendChild(pre);
  }
  (function poll() {
    var ready = Array.from(document.querySelectorAll('audio')).every(function (a) { return a.readyState >= 1; });
    if (ready || Date.now() - started > 8000) report(); else setTimeout(poll, 50);
  })();
});
</script>"""


def _chromium(args, profile):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}"]
    return subprocess.run([CHROMIUM, *flags, *args], check=False, capture_output=True, text=True, timeout=90)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")
def test_report_loads_in_headless_chromium(report, tmp_path):
    page = report / "probe.html"
    page.write_text((report / "index.html").read_text().replace("</body>", _PROBE + "</body>"))
    dom = _chromium(["--virtual-time-budget=10000", "--dump-dom", page.as_uri()], tmp_path / "p1").stdout
    probe = json.loads(dom.split('<pre id="probe">', 1)[1].split("</pre>", 1)[0])
    assert len(probe["images"]) == 9 and all(done and width > 0 for done, width in probe["images"])
    durations = {round(d, 3) for _, d in probe["audio"]}
    items = pq.read_table(report / "items.parquet").to_pylist()
    assert len(probe["audio"]) == 9 and all(state >= 1 for state, _ in probe["audio"])
    assert durations == {round(r["num_samples"] / 24000, 3) for r in items}
    assert probe["svgs"] == 4 and probe["rows"] == 1 + len(items)
    shot = report / "screenshot.png"
    _chromium(["--hide-scrollbars", "--window-size=1400,2400", f"--screenshot={shot}",
               (report / "index.html").as_uri()], tmp_path / "p2")
    assert shot.stat().st_size > 20000
    if os.environ.get("AUDIOTOK_KEEP_SCREENSHOT"):
        shutil.copy(shot, os.environ["AUDIOTOK_KEEP_SCREENSHOT"])


_TRUTH_PROBE = """<script>
window.addEventListener('load', function () {
  function box(el) { var r = el.getBoundingClientRect(); return [r.width, r.height]; }
  function texts(sel) { return Array.from(document.querySelectorAll(sel)).map(function (e) { return e.innerText; }); }
  var rows = Array.from(document.querySelectorAll('table.items tbody tr')).map(function (tr) {
    return Array.from(tr.cells).map(function (c) { return c.innerText; }); });
  var settings = {};
  Array.from(document.querySelectorAll('table')[0].rows).forEach(function (tr) {
    settings[tr.cells[0].innerText] = tr.cells[1].innerText; });
  var pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify({
    rows: rows, settings: settings, banner: texts('#random-weights'), failures: texts('li'),
    ylabels: Array.from(document.querySelectorAll('.spec .ylab')).map(function (e) { return [e.innerText, box(e)]; }),
    xlabels: Array.from(document.querySelectorAll('.spec .xlab')).map(function (e) { return [e.innerText, box(e)]; }),
    transcripts: texts('.transcript'), rejects: texts('#rejects'), cards: texts('.card h3'),
    card_lines: texts('.card h3 + p'),
    note: texts('#codebook-note'), prov: texts('table.prov td'),
    scrollWidth: document.documentElement.scrollWidth});
  document.body.appendChild(pre);
});
</script>"""


def _probe_page(index, tmp_path, width=1400):
    page = index.with_name("truth-probe.html")
    page.write_text(index.read_text().replace("</body>", _TRUTH_PROBE + "</body>"))
    dom = _chromium([f"--window-size={width},2000", "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                    tmp_path / "profile").stdout
    return json.loads(dom.split('<pre id="probe">', 1)[1].split("</pre>", 1)[0])


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")
def test_report_tells_the_truth_in_chromium(job, tmp_path):
    """A failing row is not `ok`; thresholds and path read as words; ranks from 1; spectrogram axes;
    transcripts and the job's rejects shown; random weights: SI-SNR and mel reported, not judged."""
    bad = tmp_path / "bad"
    shutil.copytree(job, bad)
    first = sample_keys(pads.dataset(bad / "tokens").to_table().column("key").to_pylist(), count=3)[0]

    def flip(codes):
        codes[5][10:30] = [(c + 1) % 1024 for c in codes[5][10:30]]
        return codes

    _corrupt(bad, first, flip)
    report = tmp_path / "report"
    from jobs.verify import main

    # SI-SNR >= 50 dB and mel <= 0.1 dB would fail every random-weights row: they must not be judged
    assert main(["--tokens", str(bad), "--count", "3", "--min-si-snr", "50", "--max-mel-distance", "0.1",
                 "--report", str(report)]) == 1
    probe = _probe_page(report / "index.html", tmp_path)
    by_key = {}
    for row in probe["rows"]:
        by_key.setdefault(row[1], []).append(row)
    assert all(r[3].startswith("FAIL") and "code agreement" in r[3] for r in by_key[first])
    assert all(r[3] == "ok" for k, rows in by_key.items() if k != first for r in rows)
    assert sorted({int(r[0]) for r in probe["rows"]}) == [1, 2, 3] and probe["cards"][0].startswith("#1 ")
    thresholds = probe["settings"]["thresholds"]
    assert "{" not in thresholds and "sample_count" not in thresholds and "report_dir" not in thresholds
    assert "code agreement ≥ 0.999" in thresholds and "SI-SNR ≥ 50 dB: reported, not judged" in thresholds
    assert "in this process" in probe["settings"]["path"]
    assert "only code agreement is judged" in probe["banner"][0]
    assert len(probe["failures"]) == 1 and "SI-SNR" not in probe["failures"][0]
    assert probe["ylabels"] and all("frequency" in t and w > 0 and h > 0 for t, (w, h) in probe["ylabels"])
    assert all("time" in t and t.startswith("0 s") and w > 0 for t, (w, h) in probe["xlabels"])
    assert len(probe["ylabels"]) == len(list((report / "media").glob("*.png")))
    texts = dict(zip(*[pads.dataset(bad / "tokens").to_table(columns=[c]).column(c).to_pylist()
                       for c in ("key", "text")]))
    shown = [c.split(" ", 1)[1] for c in probe["cards"]]
    assert len(probe["transcripts"]) == sum(bool(texts[k]) for k in shown) > 0
    paths = dict(zip(*[pads.dataset(bad / "tokens").to_table(columns=[c]).column(c).to_pylist()
                       for c in ("key", "item_path")]))
    assert all(paths[k] in text for k, text in zip(shown, probe["card_lines"]))  # each card names its file
    rejects = sum(pq.read_table(p).num_rows for p in writer.committed_parts(str(bad), "rejects"))
    assert probe["rejects"] == [f"Rejected by the job ({rejects})"]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")
def test_diff_page_explains_fewer_codebooks_in_chromium(job, tmp_path):
    low = run_demo_job(tmp_path / "low", ["bandwidths=[1.5]"])
    sidecar = low / "_provenance.json"  # a multi-line value and a long unbroken one, as real provenance has
    data = json.loads(sidecar.read_text())
    data["model_sources_skipped"] = ["facebook/encodec_24khz: cannot get it (LocalEntryNotFoundError:\nline two)",
                                     "/very/long/" + "x" * 600]
    sidecar.write_text(json.dumps(data))
    from jobs.diff import main

    assert main([str(job), str(low), "--report", str(tmp_path / "diff")]) == 1
    probe = _probe_page(tmp_path / "diff" / "index.html", tmp_path)
    assert probe["note"] and probe["note"][0].startswith("codebooks 0–1 agree 100 %; one side has fewer codebooks "
                                                         "(A has 8, B has 2)")
    assert probe["scrollWidth"] <= 1400
    assert not any("\\n" in cell for cell in probe["prov"]) and any("line two" in cell for cell in probe["prov"])
