"""`python -m jobs.gpu_check --prepare DIR`: the folder a GPU machine needs besides the tree, < 64 MiB
together with it: a few corpus clips with their licences (DIR/corpus, laid out as ../shared/corpus)
and the package bundle of ../shared/tools/gpu-bundle.sh (DIR/site.tar.xz: ray, soundfile, soxr,
webdataset, datasets; the GPU image has torch, transformers, pyarrow, numpy, pandas, fsspec).

No weights travel: the check uses seeded random models and fits their codebooks on the machine.
Longer corpora are built there by repeating these clips (pipeline.bench.corpus.write_shards).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from pipeline.bench import codec as bench_codec
from pipeline.bench import corpus as bench_corpus
from pipeline.bench import e2e as bench_e2e

REPO = Path(__file__).resolve().parents[3]
LIMIT_MIB = 64.0
# the bench corpus clips (pipeline.bench.corpus: the end-to-end and actor corpora; k-means fitting: they are
# not held out) plus held-out files for the codec clips (bench_codec.held_out), speech and music; no
# non-commercial (CC-BY-NC) file.
HELD_OUT = ["speech/fillets_en_deu-l-tovarisci_22k.ogg", "speech/synth_festival_kal_diphone_16k.wav",
            "speech/klettres_en_saw_44k.ogg", "music/heroes_xm_heroes03_12s_48k.flac",
            "music/asc_frontiers_30s_22k_orig.mp3", "music/drascula_track10_71s_44k.ogg",
            "music/midi_openttd_flying_scotsman_12s_44k.flac", "env/supertux_rain_10s_44k_stereo.flac",
            "env/noisy_librivox0870_plus_rain_snr5_16k.wav"]
CLIPS = list(dict.fromkeys([*bench_corpus.SPEECH, *bench_corpus.MUSIC, *bench_e2e.SPEECH, *bench_e2e.MUSIC,
                            *HELD_OUT]))


def shared_dir() -> Path:
    return Path(os.environ.get("AUDIOTOK_SHARED", REPO.parent / "shared"))


def licence_rows(corpus: Path, names: list[str]) -> list[str]:
    """The rows of corpus/PROVENANCE.md's file table naming `names` (raises if one is missing)."""
    lines = (corpus / "PROVENANCE.md").read_text().splitlines()
    header = [i for i, line in enumerate(lines) if line.startswith("| file |")]
    rows = []
    for name in names:
        found = [line for line in lines if line.startswith(f"| `{name}` |")]
        if not found:
            raise ValueError(f"{name} has no row in {corpus / 'PROVENANCE.md'}")
        rows.append(found[0])
    return ([lines[header[0]], lines[header[0] + 1]] if header else []) + rows


def tree_bytes() -> int:
    """Bytes of what a device call sends besides carried paths: tracked and untracked, not ignored files."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                         capture_output=True, check=True).stdout
    return sum((REPO / p).stat().st_size for p in out.decode().split("\0") if p and (REPO / p).is_file())


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def prepare(dest: Path, bundle: str | None = "build", log=print) -> dict:
    """Fill `dest`; bundle: "build" (run gpu-bundle.sh: needs the package registry), a path to an
    existing site.tar.xz to copy, or None (no bundle). Returns sizes in MiB; raises ValueError when
    tree + dest exceed LIMIT_MIB."""
    source = bench_codec.corpus_dir()
    corpus = dest / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for name in CLIPS:
        target = corpus / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, target)
    (corpus / "LICENSES.md").write_text(
        "# Clips carried for jobs.gpu_check\n\nCopied unchanged from the project's test corpus; rows from its "
        "PROVENANCE.md (source package, path inside it, licence). GPL / CC-BY-SA files keep their licences: "
        "attribute and share alike if redistributed.\n\n" + "\n".join(licence_rows(source, CLIPS)) + "\n")
    if bundle == "build":
        script = shared_dir() / "tools" / "gpu-bundle.sh"
        log(f"building the package bundle with {script} (downloads wheels)")
        subprocess.run(["bash", str(script), str(dest)], check=True)
    elif bundle:
        shutil.copyfile(bundle, dest / "site.tar.xz")
    sizes = {"tree_mib": tree_bytes() / 2**20, "data_mib": folder_bytes(dest) / 2**20,
             "clips_mib": folder_bytes(corpus) / 2**20, "bundle": (dest / "site.tar.xz").is_file()}
    sizes["total_mib"] = sizes["tree_mib"] + sizes["data_mib"]
    log(f"prepared {dest}: {len(CLIPS)} clips {sizes['clips_mib']:.1f} MiB, folder {sizes['data_mib']:.1f} MiB, "
        f"tree {sizes['tree_mib']:.1f} MiB, total {sizes['total_mib']:.1f} MiB of {LIMIT_MIB:.0f}"
        + ("" if sizes["bundle"] else "; NO package bundle (the GPU machine lacks ray, soundfile, soxr, ...)"))
    if sizes["total_mib"] > LIMIT_MIB:
        raise ValueError(f"tree + {dest} = {sizes['total_mib']:.1f} MiB, over the {LIMIT_MIB:.0f} MiB a device "
                         "call carries")
    return sizes
