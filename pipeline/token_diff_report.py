"""The token diff's report: `<dir>/diff.json` (the whole result) and `<dir>/index.html` (verify report style).

The page shows the verdict, the counts, per-codebook agreement, differing provenance fields and the
non-identical keys worst first (at most `max_keys` of them; diff.json has them all).
"""

from __future__ import annotations

import html
import json
import os

from .html_report import CSS, Raw, fmt, json_ready, table
from .token_diff import DiffResult


def write_diff_report(directory: str, result: DiffResult, max_keys: int = 500) -> dict:
    """Write diff.json and index.html under `directory`; returns the summary written to diff.json."""
    os.makedirs(directory, exist_ok=True)
    summary = result.summary()
    with open(os.path.join(directory, "diff.json"), "w") as f:
        json.dump(json_ready(summary), f, indent=1)
    with open(os.path.join(directory, "index.html"), "w", encoding="utf-8") as f:
        f.write(render_html(result, max_keys))
    return summary


_DIFF_CSS = """table.prov{table-layout:fixed;width:100%;max-width:1300px}
table.prov td{white-space:pre-wrap;overflow-wrap:anywhere;text-align:left;vertical-align:top}
table.prov td:first-child{width:14em}.note{background:#eef4ff;border:1px solid #9ab;padding:6px}"""


def codebook_note(result: DiffResult) -> str | None:
    """When paired keys have different numbers of codebooks (e.g. one side at a lower bandwidth), one
    line saying so and how the codebooks both sides have agree; None otherwise."""
    pairs = sorted({(d.n_q_a, d.n_q_b) for d in result.keys if d.n_q_a and d.n_q_b and d.n_q_a != d.n_q_b})
    if not pairs:
        return None
    shared = min(min(p) for p in pairs)
    matches, positions = sum(result.codebook_matches[:shared]), sum(result.codebook_positions[:shared])
    agree = matches / positions if positions else 1.0
    sides = "; ".join(f"A has {a}, B has {b}" for a, b in pairs)
    return (f"codebooks 0–{shared - 1} agree {100 * agree:.4g} %; one side has fewer codebooks ({sides}): "
            "the codebooks only one side has count as disagreement. A lower bandwidth stores fewer codebooks "
            "(its codes are a prefix of a higher one's), so tokenize both at the same bandwidths to compare them.")


def _value(value) -> str:
    """A provenance value readable in a cell: text as is (newlines kept), a list of texts one per line."""
    if isinstance(value, str):
        return html.escape(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return html.escape("\n".join(value)) if value else "[]"
    return html.escape(json.dumps(value, default=str))


def _pair(a, b) -> str:
    return fmt(a) if a == b else f"{fmt(a)} → {fmt(b)}"


def render_html(result: DiffResult, max_keys: int = 500) -> str:
    e, r = html.escape, result
    verdict = '<span class="pass">AGREE</span>' if r.passed else '<span class="fail">DIFFER</span>'
    title = f"audiotok diff: {e(r.a)} vs {e(r.b)}"
    head = f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
    out = [head + f"<style>{CSS}{_DIFF_CSS}</style></head><body><h1>audiotok diff {verdict}</h1>"]
    counts = [["A", r.a], ["B", r.b], ["rows in A", r.rows_a], ["rows in B", r.rows_b], ["paired keys", r.paired],
              ["identical keys", r.identical], ["keys only in A", r.only_a], ["keys only in B", r.only_b],
              ["duplicate keys", r.duplicates], ["keys whose codes differ", r.codes_differ],
              ["keys whose num_frames differ", r.frames_differ],
              ["keys whose num_samples / pad_samples differ", r.samples_differ],
              ["keys whose scales differ", r.scales_differ], ["code agreement", r.agreement],
              ["min_agreement", r.options.min_agreement], ["scale_rtol", r.options.scale_rtol]]
    note = codebook_note(r)
    if note:
        out.append(f'<p class="note" id="codebook-note">{e(note)}</p>')
    out.append("<h2>Summary</h2>" + table(["what", "value"], counts))
    if r.failures:
        out.append("<h2>Failures</h2><ul>" + "".join(f"<li>{e(x)}</li>" for x in r.failures) + "</ul>")
    body = [[i, a, p] for i, (a, p) in enumerate(zip(r.codebook_agreement, r.codebook_positions))]
    out.append("<h2>Code agreement by codebook</h2>" + table(["codebook", "agreement", "positions"], body))
    if r.provenance_differences:
        body = [[k, Raw(_value(v[0])), Raw(_value(v[1]))]
                for k, v in r.provenance_differences.items()]
        out.append("<h2>Provenance fields that differ</h2>" + table(["field", "A", "B"], body, "prov"))
    shown = r.keys[:max_keys]
    out.append(f"<h2>Keys that are not identical, worst first ({len(shown)} of {len(r.keys)})</h2>")
    body = []
    for rank, d in enumerate(shown):
        per_q = " · ".join(fmt(x, 4) for x in d.codebook_agreement)
        body.append([rank, d.key, d.status, d.agreement, Raw(e(per_q)), _pair(d.frames_a, d.frames_b),
                     d.frames_differing, d.first_differing_frame, _pair(d.num_samples_a, d.num_samples_b),
                     _pair(d.pad_samples_a, d.pad_samples_b), d.scales_differing, d.scale_max_abs_diff,
                     _pair(d.shard_a, d.shard_b)])
    out.append(table(["rank", "key", "status", "agreement", "per codebook", "frames", "frames differing",
                              "first differing frame", "num_samples", "pad_samples", "scales differing",
                              "max |Δ scale|", "shard"], body, "items"))
    out.append("</body></html>")
    return "\n".join(out)
