"""Pieces of the verify page that explain themselves: thresholds in words, what `path` means, each row's
verdict against the judged thresholds, spectrograms with time and frequency axes, the job's rejects.

Each returns escaped HTML (or plain text where noted); report.render_html places them.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Callable

from .job_context import Reject
from .result import CheckResult
from .summary import VerifySummary
from .thresholds import judged, row_failures

EXTRA_CSS = """.spec{display:grid;grid-template-columns:auto auto;align-items:center;gap:2px 4px}
.spec .ylab{writing-mode:vertical-rl;transform:rotate(180deg);font-size:12px;text-align:center}
.spec .xlab{grid-column:2;font-size:12px;display:flex;justify-content:space-between}
.transcript{font-style:italic}.nojudge{color:#666}"""

PATHS = {"inline": "inline: the checks ran in this process (small samples)",
         "ray": "ray: the checks ran on Ray actors (large samples, or --ray ray)"}
MAX_REJECTS_SHOWN = 50


def sample_text(summary: VerifySummary) -> str:
    """Plain text: how the rows were drawn."""
    how = (f"fraction {summary.sample_fraction:g}" if summary.sample_fraction is not None
           else f"count {summary.sample_count}")
    return f"{how} of the committed rows, seed {summary.seed} (the sample depends only on the seed and the keys)"


def path_text(path: str) -> str:
    """Plain text: where the checks ran."""
    return PATHS.get(path, path)


def thresholds_text(summary: VerifySummary) -> str:
    """Each threshold in words; with random weights SI-SNR and mel distance are marked as not judged."""
    th, e = summary.thresholds, html.escape
    judging = judged(th, summary.random_weights)
    parts = []
    for name, limit, used, sign, unit in (
            ("code agreement", th.min_code_agreement, judging.min_code_agreement, "≥", ""),
            ("SI-SNR", th.min_si_snr_db, judging.min_si_snr_db, "≥", " dB"),
            ("mel distance", th.max_mel_distance, judging.max_mel_distance, "≤", " dB")):
        if limit is None:
            parts.append(f"{name}: not set")
        elif used is None:
            parts.append(f'<span class="nojudge">{name} {sign} {limit:g}{unit}: reported, not judged '
                         "(random weights)</span>")
        else:
            parts.append(f"{e(name)} {sign} {limit:g}{unit}")
    return " · ".join(parts) + " (SI-SNR and mel distance at each item's highest bandwidth)"


def verdict_cell(result: CheckResult, summary: VerifySummary) -> str:
    """The items table's status: ok, FAIL with the thresholds the row fails, or why it was not verified."""
    if result.status != "ok":
        return f'<span class="fail">{html.escape(result.status)}</span>'
    failed = row_failures(result, judged(summary.thresholds, summary.random_weights))
    if failed:
        return '<span class="fail">FAIL</span> ' + html.escape("; ".join(failed))
    return "ok"


def spectrogram_html(stem: str, label: str, duration_s: float, sample_rate: int | None) -> str:
    """The spectrogram image with its axes: time in seconds left to right, mel frequency bottom to top."""
    e = html.escape
    top = f"0 – {sample_rate / 2000:g} kHz" if sample_rate else "low – high"
    return (f'<div class="spec"><span class="ylab">frequency (mel scale, {top}) →</span>'
            f'<img src="{stem}.png" alt="{e(label)} spectrogram">'
            f'<div class="xlab"><span>0 s</span><span>time →</span><span>{duration_s:.2f} s</span></div></div>')


def rejects_html(rejects: list[Reject], table: Callable[[list[str], list[list]], str]) -> str:
    """The job's rejects: a count per reason and the first MAX_REJECTS_SHOWN of them."""
    if not rejects:
        return '<h2 id="rejects">Rejected by the job (0)</h2><p>The job rejected no input item.</p>'
    counts = Counter(r.reason for r in rejects)
    out = [f'<h2 id="rejects">Rejected by the job ({len(rejects)})</h2>',
           table(["reason", "items"], [[k, v] for k, v in counts.most_common()])]
    shown = rejects[:MAX_REJECTS_SHOWN]
    out.append(f"<p>{len(shown)} of {len(rejects)} (all in the dataset's rejects/ parts):</p>")
    out.append(table(["key", "source", "reason", "detail"], [[r.key, r.source, r.reason, r.detail] for r in shown]))
    return "".join(out)
