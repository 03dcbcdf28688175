"""The GPU check's run: every section's rows in order, each guarded and within the time budget
(`table.Report`), printed as they finish and written as JSON after each (see __init__.py)."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import torch

from codec.runtime import resolve_device, strict_fp32
from pipeline.engine.ray_backend import shutdown_ray

from .. import codec as bench_codec
from . import codec_rows, e2e_rows, env_row, family_rows, in_child, profile_rows
from . import sizes as sizes_mod
from .sizes import SECTIONS
from .table import Check, Report, format_table

PRESETS = ("24khz", "48khz")


def run_all(args) -> int:
    """Every row of the check for `args` (jobs.gpu_check's options), printed and written as JSON; exit status."""

    device = resolve_device("cpu" if args.cpu else "auto")
    cpu = device == "cpu"
    minutes = None
    if args.minutes:
        minutes = {k: m for k, m in zip(("speech", "music"), args.minutes) if m > 0}
    sizes = sizes_mod.pick(cpu, args.budget_s, minutes)
    strict_fp32()  # fp32 means fp32 in this process too, as in the job's actors
    work = Path(args.work or tempfile.mkdtemp(prefix="gpucheck-"))
    header = {"mode": sizes.mode, "device": device, "why": "--cpu" if args.cpu else ("no CUDA" if cpu else "CUDA"),
              "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "corpus": os.environ.get("AUDIOTOK_CORPUS", "default"),
              "work": str(work), "sizes": sizes.__dict__, "torch": torch.__version__, "cpus": os.cpu_count()}
    report = Report(args.json, header, sizes.budget_s)
    print(f"gpu_check: {sizes.mode} mode on {device} ({header['why']}); corpus {header['corpus']}; "
          f"budget {sizes.budget_s:.0f} s (a GPU run's rows: {sizes_mod.planned_s(sizes_mod.GPU):.0f} s by design); "
          f"JSON {args.json}", flush=True)
    run = _Runner(report, set(SECTIONS) - set(args.skip))
    row_s = sizes.row_s
    run("env", "Ray actor environment", lambda: env_row.env_rows(gpu=not cpu), needs_s=row_s["env"])
    fitted = {}
    needs_model = run.sections & {"agreement", "invariance", "determinism", "profile", "variants"}
    for preset in PRESETS if needs_model else ():
        def fit(preset=preset):  # in a child process, stopped at its limit (a TIMEOUT row; its rows skipped)
            fitted[preset] = in_child.call(bench_codec.fit_preset, (preset, sizes), report.limit_s(sizes, "fit"),
                                           what=f"the {preset} fit")
            return Check("setup", f"{preset} fitted codebooks", "ok", "fitted", fitted[preset].detail)
        run("setup", f"{preset} fitted codebooks", fit, needs_s=row_s["fit"], always=True)
    for section, rows in (("agreement", lambda f: codec_rows.agreement_rows(f, device)),
                          ("invariance", lambda f: codec_rows.invariance_rows(f, device, sizes)),
                          ("determinism", lambda f: codec_rows.determinism_rows(f, device, sizes))):
        for preset in PRESETS:
            run.with_model(section, preset, fitted, rows, needs_s=row_s["codec"])
    for preset in sizes_mod.MEMORY_PRESETS:  # random weights: codebook values change neither memory nor time
        run("memory", f"{preset} peak memory and batch budget",
            lambda p=preset: profile_rows.memory_rows(p, device, sizes.budget_scale, sizes.max_item_s),
            needs_s=row_s["memory"])
    for preset in PRESETS:
        run.with_model("profile", preset, fitted, lambda f: profile_rows.profile_rows(f, device, sizes.profile_batch),
                       needs_s=row_s["profile"])
    for preset in sizes_mod.MEMORY_PRESETS:
        run("profile", f"{preset} LSTM share",
            lambda p=preset: profile_rows.lstm_rows(p, device, sizes.budget_scale, sizes.max_item_s),
            needs_s=row_s["profile"])
    for kind, mins in sizes.e2e_minutes.items():
        state = e2e_rows.E2E(kind, mins, work / f"e2e-{kind}", sizes.e2e_per_shard, sizes.baseline_minutes,
                             sizes.baseline_limit_s, sizes.job_limit_s)
        run("e2e", f"{kind}: corpus + CPU ceilings", lambda s=state: e2e_rows.corpus_row(s), needs_s=row_s["corpus"])
        if not state.shards:
            continue
        run("e2e", f"{kind}: baseline", lambda s=state: e2e_rows.baseline_row(s), needs_s=row_s["baseline"])
        for resample_on in ("decoder", "actor") if kind in sizes.actor_kinds else ("decoder",):
            run("e2e", f"{kind}: ours, resample_on {resample_on}",
                lambda s=state, r=resample_on: e2e_rows.ours_rows(s, r, gpu=not cpu), needs_s=row_s["ours"])
        run("e2e", f"{kind}: verify our output",
            lambda s=state: e2e_rows.verify_row(s, sizes.verify_rows, not cpu, sizes.verify_bandwidths),
            needs_s=row_s["verify"])
    for kind in sizes.actor_kinds:
        run("actor", f"{kind}: actor bench",
            lambda k=kind: e2e_rows.actor_row(k, sizes.actor_minutes, sizes.actor_per_shard, work / f"actor-{k}"),
            needs_s=row_s["actor"])
    for name in (n for n in sizes.variants if n != "compile"):
        for preset in PRESETS:
            run.with_model("variants", preset, fitted, lambda f, n=name: codec_rows.variant_rows(f, device, n),
                           label=f"{preset} {name}", needs_s=row_s["variant"])
    for source in family_rows.FAMILY_PRESETS:
        run("families", source, lambda s=source: family_rows.family_row(s, device, sizes), needs_s=row_s["family"])
    if "compile" in sizes.variants:  # last: it compiles for a minute or more
        for preset in sizes.compile_presets:
            run.with_model("variants", preset, fitted,
                           lambda f: in_child.call(codec_rows.variant_rows, (f, device, "compile"),
                                                   report.limit_s(sizes, "compile"), what="torch.compile"),
                           label=f"{preset} compile", needs_s=row_s["compile"])
    if "compile" not in sizes.variants and "variants" in run.sections:
        report.add(Check("variants", "compile", "skipped", "CPU mode", "torch.compile on the CPU takes minutes"))
    shutdown_ray()
    print("\n" + format_table(report.checks), flush=True)
    data = report.to_json()
    print(f"\n{data['counts']} in {data['elapsed_s']:.0f} s; JSON: {args.json}", flush=True)
    return 1 if data["counts"]["error"] else 0


class _Runner:
    """report.run for the sections asked for; with_model runs a row that needs a preset's fitted model."""

    def __init__(self, report, sections: set[str]):
        self.report, self.sections = report, sections

    def __call__(self, section, name, fn, needs_s=0.0, always=False):
        if always or section in self.sections:
            self.report.run(section, name, fn, needs_s)

    def with_model(self, section, preset, fitted, rows, needs_s=0.0, label=None):
        if section not in self.sections:
            return
        if preset not in fitted:
            self.report.add(Check(section, label or preset, "skipped", "no model", f"fitting {preset} failed"))
            return
        self.report.run(section, label or preset, lambda: rows(fitted[preset]), needs_s)


