"""The verify report: per-item metrics and aggregates as JSON and Parquet, and an HTML page.

    <report>/index.html          summary, aggregates, histograms, items worst first, spectrograms + players
    <report>/items.parquet|json  one row per (item, bandwidth), worst item first (`rank`)
    <report>/aggregates.parquet  n, mean, p5, median, p95 of each metric, by bandwidth and by source x bandwidth
    <report>/summary.json        the verify summary (settings, thresholds, failures, passed) + aggregates
    <report>/media/              <rank>-<key>-orig.png|wav and -<kbps>kbps.png|wav for the worst items

The directory is self-contained (relative links only); open index.html from disk or any static server.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import os
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..html_report import CSS, Raw, fmt, json_ready, table
from . import report_media
from .job_context import JobContext
from .report_parts import (
    EXTRA_CSS,
    path_text,
    rejects_html,
    sample_text,
    spectrogram_html,
    thresholds_text,
    verdict_cell,
)
from .result import CheckResult, finite_or_none
from .summary import VerifySummary

METRICS = ("si_snr_db", "mel_distance_db", "lsd_db", "code_agreement")
ITEMS_SCHEMA = pa.schema([
    ("rank", pa.int32()), ("key", pa.string()), ("source", pa.string()), ("status", pa.string()),
    ("detail", pa.string()), ("bandwidth_kbps", pa.float64()), ("n_q", pa.int32()), ("num_samples", pa.int64()),
    ("start_s", pa.float64()), ("duration_s", pa.float64()), ("si_snr_db", pa.float64()),
    ("mel_distance_db", pa.float64()), ("lsd_db", pa.float64()), ("code_agreement", pa.float64()),
    ("code_agreement_all", pa.float64()),
])
_STATS = ("mean", "p5", "median", "p95")


def flatten(results: list[CheckResult]) -> list[dict]:
    """Checker results (worst first) -> rows of ITEMS_SCHEMA, ranked from 1 (the worst); a row that was
    not verified gives one row with null bandwidth and metrics. Non-finite numbers become null."""
    rows = []
    for rank, r in enumerate(results, start=1):
        base = {"rank": rank, "key": r.key, "source": r.source, "status": r.status, "detail": r.detail,
                "num_samples": r.num_samples, "start_s": r.start_s, "duration_s": r.duration_s,
                "code_agreement_all": finite_or_none(r.code_agreement_all)}
        if not r.bandwidths:
            rows.append({**base, "bandwidth_kbps": None, "n_q": None, **dict.fromkeys(METRICS)})
        for bw, m in r.bandwidths.items():
            rows.append({**base, "bandwidth_kbps": bw, **m.to_json()})  # n_q and METRICS
    return rows


def _stats(values: list[float | None]) -> dict[str, float | None]:
    v = np.asarray([x for x in values if x is not None], dtype=np.float64)
    if not v.size:
        return dict.fromkeys(_STATS)
    return {"mean": float(v.mean()), "p5": float(np.percentile(v, 5)), "median": float(np.median(v)),
            "p95": float(np.percentile(v, 95))}


def aggregates(rows: list[dict]) -> list[dict]:
    """Per bandwidth (source None) and per (source, bandwidth): n and _STATS of each metric."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row["bandwidth_kbps"] is None:
            continue
        groups.setdefault(("bandwidth", None, row["bandwidth_kbps"]), []).append(row)
        groups.setdefault(("source", row["source"], row["bandwidth_kbps"]), []).append(row)
    out = []
    for (by, source, bw), members in sorted(groups.items(), key=lambda g: (g[0][0], g[0][1] or "", g[0][2])):
        entry = {"group": by, "source": source, "bandwidth_kbps": bw, "n": len(members)}
        for metric in METRICS:
            for stat, value in _stats([m[metric] for m in members]).items():
                entry[f"{metric}_{stat}"] = value
        out.append(entry)
    return out


def _media_name(rank: int, key: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", key)[:40].strip("_") or "item"
    return f"{rank:03d}-{safe}-{hashlib.sha1(key.encode()).hexdigest()[:6]}"


def write_media(directory: str, rank: int, result: CheckResult, sample_rate: int) -> dict[str, str]:
    """PNG spectrograms and WAVs of the original and each decoded bandwidth (result.media must be
    set); {label: relative stem}."""
    os.makedirs(os.path.join(directory, "media"), exist_ok=True)
    stem = f"media/{_media_name(rank, result.key)}"
    original = result.media.original
    ref_levels = report_media.mel_db(original, sample_rate)
    top = float(ref_levels.max())
    out = {}
    signals = [("original", "orig", original, ref_levels)]
    for bw, audio in result.media.decoded.items():
        signals.append((f"decoded {bw:g} kbps", f"{bw:g}kbps", audio, report_media.mel_db(audio, sample_rate)))
    for label, suffix, audio, levels in signals:
        path = f"{stem}-{suffix}"
        with open(os.path.join(directory, path + ".png"), "wb") as f:
            f.write(report_media.png_bytes(report_media.spectrogram_rgb(levels, top)))
        with open(os.path.join(directory, path + ".wav"), "wb") as f:
            f.write(report_media.wav_bytes(audio, sample_rate))
        out[label] = path
    return out


def write_report(directory: str, results: list[CheckResult], summary: VerifySummary,
                 sample_rate: int, context: JobContext | None = None) -> VerifySummary:
    """Write every report file for `results` (sorted worst first; those with media get pictures and
    players); returns the summary with its aggregates filled in (also in summary.json)."""
    os.makedirs(directory, exist_ok=True)
    rows = flatten(results)
    aggs = aggregates(rows)
    summary = dataclasses.replace(summary, aggregates=aggs)
    pq.write_table(pa.Table.from_pylist(rows, schema=ITEMS_SCHEMA), os.path.join(directory, "items.parquet"))
    agg_table = pa.Table.from_pylist(aggs) if aggs else pa.table({"group": pa.array([], pa.string())})
    pq.write_table(agg_table, os.path.join(directory, "aggregates.parquet"))
    with open(os.path.join(directory, "items.json"), "w") as f:
        json.dump(json_ready(rows), f, indent=1)
    with open(os.path.join(directory, "summary.json"), "w") as f:
        json.dump(json_ready(summary.to_json()), f, indent=2, default=str)
    media = {r.key: write_media(directory, rank, r, sample_rate) for rank, r in enumerate(results, start=1)
             if r.media is not None}
    with open(os.path.join(directory, "index.html"), "w", encoding="utf-8") as f:
        f.write(render_html(results, rows, aggs, summary, media, sample_rate, context))
    return summary


def render_html(results: list[CheckResult], rows: list[dict], aggs: list[dict], summary: VerifySummary,
                media: dict[str, dict[str, str]], sample_rate: int | None = None,
                context: JobContext | None = None) -> str:
    """The report page as one string (media referenced by relative paths)."""
    s, e = summary.to_json(), html.escape
    context = context or JobContext()
    verdict = '<span class="pass">PASSED</span>' if summary.passed else '<span class="fail">FAILED</span>'
    title = f"audiotok verify: {e(str(summary.tokens))}"
    head = f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title><style>{CSS}{EXTRA_CSS}</style>"
    out = [head + "</head>", f"<body><h1>audiotok verify {verdict}</h1>"]
    if summary.random_weights:
        out.append('<p class="warn" id="random-weights">The model has RANDOM weights: decoded audio is noise-like, '
                   "so only code agreement is judged; SI-SNR and mel distance are reported, not judged.</p>")
    info = [[k, v if isinstance(v := s.get(k), str) else Raw(e(json.dumps(json_ready(v), default=str)))] for k in
            ("tokens", "rows_total", "rows_sampled", "seed", "model_source", "model_sha256",
             "model_matches_provenance", "device", "threads", "bandwidths")]
    info.insert(3, ["sample", sample_text(summary)])
    info += [["thresholds", Raw(thresholds_text(summary))], ["path", path_text(summary.path)]]
    out.append("<h2>Summary</h2>" + table(["setting", "value"], info))
    if summary.failures:
        out.append("<h2>Failures</h2><ul>" + "".join(f"<li>{e(x)}</li>" for x in summary.failures) + "</ul>")
    header = ["kbps", "source", "n"] + [f"{m}: mean · p5 · median · p95" for m in METRICS]
    for group, title in (("bandwidth", "By bandwidth"), ("source", "By source")):
        body = [[a["bandwidth_kbps"], (a["source"] or "all").rsplit("/", 1)[-1], a["n"]]
                + [Raw(" · ".join(fmt(a[f"{m}_{st}"], 3) for st in _STATS)) for m in METRICS]
                for a in aggs if a["group"] == group]
        out.append(f"<h2>{title}</h2>" + table(header, body))
    top = max((r["bandwidth_kbps"] for r in rows if r["bandwidth_kbps"] is not None), default=None)
    th = summary.thresholds
    limits = {"si_snr_db": th.min_si_snr_db, "mel_distance_db": th.max_mel_distance,
              "code_agreement": th.min_code_agreement}
    out.append(f"<h2>Histograms at {fmt(top)} kbps</h2><div>")
    for m in METRICS:
        values = [r[m] for r in rows if r["bandwidth_kbps"] == top]
        out.append(report_media.histogram_svg(values, m, limits.get(m)))
    out.append("</div><h2>Items, worst first</h2>")
    by_key = {r.key: r for r in results}
    body = []
    for r in rows:
        key = Raw(f'<a href="#item-{r["rank"]}">{e(r["key"])}</a>' if r["key"] in media else e(r["key"]))
        body.append([r["rank"], key, r["source"].rsplit("/", 1)[-1], Raw(verdict_cell(by_key[r["key"]], summary)),
                     r["bandwidth_kbps"], r["n_q"], r["duration_s"], r["si_snr_db"], r["mel_distance_db"], r["lsd_db"],
                     r["code_agreement"], Raw(e(r["detail"])) if r["detail"] else ""])
    out.append(table(["rank", "key", "source", "status", "kbps", "n_q", "seconds", "SI-SNR dB", "mel dB",
                       "LSD dB", "code agreement", "detail"], body, "items"))
    for rank, r in enumerate(results, start=1):
        if r.key not in media:
            continue
        text = context.transcripts.get(r.key)
        transcript = f'<p class="transcript">transcript: “{e(text)}”</p>' if text else ""
        out.append(f'<div class="card" id="item-{rank}"><h3>#{rank} {e(r.key)}</h3>'
                   f'<p>{e(context.item_paths.get(r.key, r.source))} · {r.duration_s:.2f} s from {r.start_s:.2f} s · '
                   f'code agreement '
                   f'{fmt(r.code_agreement_all)}</p>{transcript}<div class="media">')
        for label, stem in media[r.key].items():
            out.append(f'<figure><figcaption>{e(label)}</figcaption>'
                       f'{spectrogram_html(stem, label, r.duration_s, sample_rate)}'
                       f'<audio controls preload="auto" src="{stem}.wav"></audio></figure>')
        out.append("</div></div>")
    out.append(rejects_html(context.rejects, table))
    out.append("</body></html>")
    return "\n".join(out)
