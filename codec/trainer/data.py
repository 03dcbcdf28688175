"""Training audio of the codec (`codec.trainer`): Debian packages fetched and unpacked, a config's file
list resolved. Command line: python -m jobs.train_codec_data --config configs/train_tiny.yaml [--list].

    config data.{train,valid,heldout} entries ─► AudioFile records (package, path, licence, max_s)
      {file: F, licence: L}                          F inside the test corpus (AUDIOTOK_CORPUS)
      {package: P, glob: G, licence: L, every: N,    every N-th (from `offset`) match of G, sorted,
       offset: K, exclude: [..], max_s: S}           inside P unpacked in DIR (AUDIOTOK_TRAIN_AUDIO)
      {package: P, path: X, licence: L, max_s: S}    one file of P

Fetching runs `apt-get download P` (Debian 12 bookworm) and `dpkg-deb -x` into DIR/P; nothing is
copied into the repository. A file listed in valid or heldout is never a training file even when a
train glob matches it; `resolve` raises when a glob matches nothing or a file is missing, with
the command that fetches it. `--every-file` lists every match of a train glob (`every` and
`offset` ignored) with its whole length (`max_s` ignored): more audio from the same packages for
`jobs.train_lm`, with the same exclusions, so the corpus files stay out of it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SPLITS = ("train", "valid", "heldout")


@dataclass(frozen=True)
class AudioFile:
    """One audio file of a split. package: Debian package name, or "corpus" for the test corpus;
    path: inside the unpacked package (or the corpus); max_s: seconds kept from the start (None: all)."""

    package: str
    path: str
    licence: str
    max_s: float | None = None

    @property
    def name(self) -> str:
        return self.path if self.package == "corpus" else f"{self.package}:{self.path}"

    def to_dict(self) -> dict:
        return {"package": self.package, "path": self.path, "licence": self.licence, "max_s": self.max_s}


def corpus_dir() -> Path:
    return Path(os.environ.get("AUDIOTOK_CORPUS", REPO.parent / "shared" / "corpus"))


def packages_dir() -> Path:
    return Path(os.environ.get("AUDIOTOK_TRAIN_AUDIO", REPO.parent / "train_audio"))


def packages(data: dict) -> list[str]:
    """Debian packages the config's splits draw from, sorted."""
    return sorted({e["package"] for split in SPLITS for e in data.get(split) or [] if "package" in e})


def fetch(names: list[str], root: Path, log=print) -> None:
    """apt-get download + dpkg-deb -x each package not yet unpacked into root/<package>."""
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        if (root / name).is_dir():
            continue
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            log(f"[data] apt-get download {name}")
            subprocess.run(["apt-get", "download", name], cwd=tmp, check=True, capture_output=True)
            (deb,) = Path(tmp).glob("*.deb")
            subprocess.run(["dpkg-deb", "-x", str(deb), str(Path(tmp) / "x")], check=True)
            version = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True,
                                     text=True).stdout.strip()
            (root / f"{name}.version").write_text(version + "\n")
            (Path(tmp) / "x").rename(root / name)


def package_version(name: str, root: Path | None = None) -> str | None:
    """The Debian version `fetch` recorded for an unpacked package (None if unknown)."""
    path = (root or packages_dir()) / f"{name}.version"
    return path.read_text().strip() if path.is_file() else None


def resolve(data: dict, corpus: Path | None = None, root: Path | None = None,
            every_file: bool = False) -> dict[str, list[AudioFile]]:
    """split -> its files; train loses every file that valid or heldout lists. every_file: each
    train entry's every match, whole (its `every`, `offset` and `max_s` ignored); valid and heldout
    stay as listed."""
    corpus, root = corpus or corpus_dir(), root or packages_dir()
    if every_file:
        drop = ("every", "offset", "max_s")
        data = {**data, "train": [{k: v for k, v in e.items() if k not in drop} for e in data.get("train") or []]}
    out = {split: [f for e in data.get(split) or [] for f in _entry(e, corpus, root)] for split in SPLITS}
    kept = {(f.package, f.path) for split in ("valid", "heldout") for f in out[split]}
    out["train"] = [f for f in out["train"] if (f.package, f.path) not in kept]
    return out


def _entry(entry: dict, corpus: Path, root: Path) -> list[AudioFile]:
    licence, max_s = entry["licence"], entry.get("max_s")
    if "file" in entry:
        if not (corpus / entry["file"]).is_file():
            raise FileNotFoundError(f"corpus file {corpus / entry['file']} not found (set AUDIOTOK_CORPUS)")
        return [AudioFile("corpus", entry["file"], licence, max_s)]
    package = entry["package"]
    base = root / package
    if not base.is_dir():
        raise FileNotFoundError(f"package {package} is not unpacked in {root}: "
                                "python -m jobs.train_codec_data --config <yaml> fetches it")
    if "path" in entry:
        if not (base / entry["path"]).is_file():
            raise FileNotFoundError(f"{entry['path']} not found in package {package} ({base})")
        return [AudioFile(package, entry["path"], licence, max_s)]
    exclude = set(entry.get("exclude") or [])
    matches = sorted(str(p.relative_to(base)) for p in base.glob(entry["glob"]) if p.is_file())
    offset, every = int(entry.get("offset", 0)), int(entry.get("every", 1))
    matches = [m for m in matches if m not in exclude][offset::every]
    if not matches:
        raise FileNotFoundError(f"glob {entry['glob']!r} matches no file in package {package} ({base})")
    return [AudioFile(package, m, licence, max_s) for m in matches]


def load_mono(item: AudioFile, rate: int, corpus: Path | None = None, root: Path | None = None) -> np.ndarray:
    """The file decoded, mixed to mono (mean of channels), cut to max_s, soxr HQ to `rate`: float32 [T].

    Package files are cached as .npy under <root>/.cache (keyed by path, max_s and rate): decoding
    an hour of audio takes minutes on a shared 2-core machine."""
    if item.package == "corpus":
        return _decode(corpus or corpus_dir(), item, rate)
    root = root or packages_dir()
    key = hashlib.sha1(f"{item.package}/{item.path}|{item.max_s}|{rate}".encode()).hexdigest()
    cached = root / ".cache" / f"{key}.npy"
    if cached.is_file():
        return np.load(cached)
    mono = _decode(root / item.package, item, rate)
    cached.parent.mkdir(exist_ok=True)
    tmp = cached.with_suffix(".tmp.npy")
    np.save(tmp, mono)
    tmp.replace(cached)
    return mono


def _decode(base: Path, item: AudioFile, rate: int) -> np.ndarray:
    import soundfile as sf
    import soxr

    data, sr = sf.read(base / item.path, dtype="float32", always_2d=True)
    if item.max_s is not None:
        data = data[: int(item.max_s * sr)]
    mono = data.mean(axis=1)
    if sr != rate:
        mono = soxr.resample(mono, sr, rate, quality="HQ")
    return np.ascontiguousarray(mono, dtype=np.float32)
