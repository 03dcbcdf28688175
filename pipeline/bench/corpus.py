"""Bench corpora: real corpus clips transcoded to FLAC once, copied into webdataset tar shards.

    sources(kind, corpus) -> [Clip]            the clips of `kind` ("speech" | "music") as FLAC bytes
    write_shards(clips, seconds, out, per_shard) -> BenchCorpus

Speech: 16 kHz mono clips (-> the 24 kHz model); music: 44.1 kHz stereo clips (-> the 48 kHz model).
Clips are repeated in a fixed order until `seconds` of audio; each shard holds `per_shard` items.
Only `distinct` shards are written; the rest are hard links to them under their own names (the bench
needs hours of audio, not gigabytes of disk), so every shard is read and decoded as a file of its own.
Keys are `itemNNNN` within each shard.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

SPEECH = ["speech/librivox_0870_16k.wav", "speech/librivox_0890_16k.flac", "speech/librivox_0920_16k.ogg",
          "speech/cards_005_16k.wav", "speech/cmu_arctic_a0007_16k.wav", "speech/goforward_16k.wav",
          "speech/synth_flite_kal16_16k.wav", "speech/synth_festival_kal_diphone_16k.wav"]
MUSIC = ["music/wesnoth_battle-epic_10s_44k.flac", "music/wesnoth_elvish-theme_6s_44k.wav",
         "music/drascula_track12_9s_44k.ogg", "music/wesnoth_loyalists_30s_44k_192kbps.mp3",
         "music/midi_openttd_flying_scotsman_12s_44k.flac"]
RATES = {"speech": (16000, 1), "music": (44100, 2)}  # what each kind's clips must be: (Hz, channels)


@dataclass(frozen=True)
class Clip:
    name: str
    flac: bytes
    seconds: float


@dataclass(frozen=True)
class BenchCorpus:
    shards: list[str]  # tar paths, in order
    items: int
    seconds: float  # audio in all shards


def default_corpus() -> Path:
    return Path(os.environ.get("AUDIOTOK_CORPUS", Path(__file__).resolve().parents[3] / "shared" / "corpus"))


def sources(kind: str, corpus: Path | None = None) -> list[Clip]:
    """The corpus clips of `kind` as 16-bit FLAC at their own rate; ValueError if one is not the kind's rate."""
    if kind not in RATES:
        raise ValueError(f"kind must be one of {sorted(RATES)}; got {kind!r}")
    corpus = Path(corpus or default_corpus())
    rate, channels = RATES[kind]
    clips = []
    for rel in SPEECH if kind == "speech" else MUSIC:
        path = corpus / rel
        if not path.is_file():
            raise FileNotFoundError(f"bench corpus clip {path} is missing (set AUDIOTOK_CORPUS to the corpus folder)")
        data, got = sf.read(path, dtype="float32", always_2d=True)
        if got != rate or data.shape[1] != channels:
            raise ValueError(f"{rel}: {got} Hz x {data.shape[1]} ch; {kind} clips must be {rate} Hz x {channels} ch")
        buf = io.BytesIO()
        sf.write(buf, np.clip(data, -1, 1), rate, format="FLAC", subtype="PCM_16")
        clips.append(Clip(rel, buf.getvalue(), data.shape[0] / rate))
    return clips


def write_shards(clips: list[Clip], seconds: float, out: Path, per_shard: int = 64, distinct: int = 4,
                 first_clip: int = 0) -> BenchCorpus:
    """Tar shards `bench-NNNNN.tar` in `out` holding clips repeated (from `first_clip` on) until `seconds`."""
    import webdataset as wds

    if not clips or seconds <= 0 or per_shard < 1:
        raise ValueError("write_shards needs clips, seconds > 0 and per_shard >= 1")
    if out.exists():  # shards of an earlier build would be listed with these
        for old in out.glob("bench-*.tar"):
            old.unlink()
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    total = 0.0
    while total < seconds:
        total += clips[(first_clip + count) % len(clips)].seconds
        count += 1
    shards: list[str] = []
    written: dict[tuple[int, int], Path] = {}
    files = 0  # shards written as files (at least `distinct`, more when their clips differ)
    for first in range(0, count, per_shard):
        size = min(per_shard, count - first)
        start = (first_clip + first) % len(clips)
        path = out / f"bench-{len(shards):05d}.tar"
        same = written.get((start, size))  # a shard of the same clips in the same order: linked
        if same is None or files < distinct:
            with wds.TarWriter(str(path), encoder=False, mtime=0) as sink:
                for i in range(size):
                    clip = clips[(start + i) % len(clips)]
                    sink.write({"__key__": f"item{i:04d}", "flac": clip.flac})
            written.setdefault((start, size), path)
            files += 1
        else:
            os.link(same, path)
        shards.append(str(path))
    return BenchCorpus(shards, count, total)
