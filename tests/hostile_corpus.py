"""A hostile input corpus, generated from real corpus files: `build(dir)` or `python -m tests.hostile_corpus DIR`.

Writes under DIR:
  hostile-000.tar        one sample per hostile kind (see EXPECTED below for each key)
  hostile-001.tar        a shard cut in the middle of a member (the whole shard is unreadable)
  hostile.jsonl          a manifest with pipe:, data:, chained and unknown URLs, missing files, ...
  ok.flac, a-directory/  what the manifest points at
It never writes outside DIR. Real files come from $AUDIOTOK_CORPUS (default ../shared/corpus).

`build` returns {"tars": brace spec, "manifest": path, "expected": {key: reason or "ok"},
"markers": [paths that must never exist: a pickle or shell command from the data would create them],
"shard_ids": {...}}. The expected outcomes assume `HOSTILE_OVERRIDES` (smaller memory budgets, so
that bombs are stopped quickly; the defaults stop them the same way, only later).
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
import sys
import tarfile
from pathlib import Path

import numpy as np
import soundfile as sf

CORPUS = Path(os.environ.get("AUDIOTOK_CORPUS", Path(__file__).resolve().parents[2] / "shared" / "corpus"))
FLAC, OGG, MP3, WAV = ("speech/librivox_0890_16k.flac", "speech/librivox_0920_16k.ogg",
                       "music/asc_frontiers_30s_22k_orig.mp3", "speech/cards_005_16k.wav")
HOSTILE_OVERRIDES = ["audio.max_decoded_bytes=268435456", "source.max_member_bytes=67108864",
                     "source.key_column=key", "audio.decode_timeout_s=60"]


# ----- crafted FLAC: constant (silent) frames, so hours of audio cost a few bytes per 4096 samples ----
def _crc8(data: bytes) -> int:
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


_CRC16 = []
for _i in range(256):
    _c = _i << 8
    for _ in range(8):
        _c = ((_c << 1) ^ 0x8005) & 0xFFFF if _c & 0x8000 else (_c << 1) & 0xFFFF
    _CRC16.append(_c)


def _crc16(data: bytes) -> int:
    crc = 0
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[(crc >> 8) ^ b]
    return crc


def _utf8_number(n: int) -> bytes:
    """FLAC's UTF-8-like coding of a frame number (up to 31 bits)."""
    if n < 0x80:
        return bytes([n])
    for length, lead in ((2, 0xC0), (3, 0xE0), (4, 0xF0), (5, 0xF8), (6, 0xFC)):
        if n < 1 << (5 * length + 1):
            out = [0x80 | ((n >> (6 * k)) & 0x3F) for k in range(length - 1)][::-1]
            return bytes([lead | (n >> (6 * (length - 1)))] + out)
    raise ValueError(n)


_RATE_CODES = {8000: 0x4, 16000: 0x5, 22050: 0x6, 24000: 0x7, 32000: 0x8, 44100: 0x9, 48000: 0xA}


def constant_flac(frames_of_4096: int, rate: int = 16000, channels: int = 1, total: int | None = None,
                  header_rate: int | None = None) -> bytes:
    """A valid FLAC of silence: `frames_of_4096` frames of 4096 samples, 16-bit.

    total: the STREAMINFO sample count (default: the true one; 0 means unknown, as in a stream).
    header_rate: the STREAMINFO sample rate (default `rate`; the frames always say `rate`).
    """
    total = frames_of_4096 * 4096 if total is None else total
    info = struct.pack(">HH", 4096, 4096) + b"\x00" * 6  # block sizes; frame sizes unknown
    packed = ((header_rate or rate) << 44) | ((channels - 1) << 41) | (15 << 36) | total
    info += packed.to_bytes(8, "big") + b"\x00" * 16  # rate, channels, bits, total; MD5 unknown
    out = [b"fLaC", bytes([0x80, 0, 0, 34]), info]
    head = bytes([0xFF, 0xF8, 0xC0 | _RATE_CODES[rate], ((channels - 1) << 4) | 0x08])
    body = b"\x00\x00\x00" * channels  # per channel: CONSTANT subframe, value 0
    for n in range(frames_of_4096):
        h = head + _utf8_number(n)
        frame = h + bytes([_crc8(h)]) + body
        out.append(frame + _crc16(frame).to_bytes(2, "big"))
    return b"".join(out)


def wav_header(rate: int, channels: int, frames: int, data_size: int | None = None, bits: int = 16) -> bytes:
    """A PCM WAV of `frames` zero frames whose data chunk claims `data_size` bytes (default: true)."""
    block = channels * bits // 8
    data = b"\x00" * block * frames
    size = len(data) if data_size is None else data_size
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * block, block, bits)
    riff = min(0xFFFFFFFF, 36 + size)
    return b"RIFF" + struct.pack("<I", riff) + b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + \
        struct.pack("<I", size) + data


def float_wav(values: list[float], rate: int = 16000) -> bytes:
    buf = io.BytesIO()
    x = np.tile(np.array(values, dtype=np.float32), 4000)
    sf.write(buf, x, rate, format="WAV", subtype="FLOAT")
    return buf.getvalue()


def flip(data: bytes, positions: list[float], header_bytes: int | None = None) -> bytes:
    """XOR 0xFF into bytes at fractions of the length (or, with header_bytes, at the first bytes)."""
    out = bytearray(data)
    spots = range(header_bytes) if header_bytes else [int(p * len(data)) for p in positions]
    for i in spots:
        out[i] ^= 0xFF
    return bytes(out)


class _Pickle:
    """Unpickling this runs a shell command that creates `marker`: it must never happen."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _members(marker: str) -> list[tuple]:
    """(tar name, bytes) or (tar name, tar type, linkname), in shard order."""
    import pickle

    flac, ogg, mp3, wav = ((CORPUS / p).read_bytes() for p in (FLAC, OGG, MP3, WAV))
    evil = pickle.dumps(_Pickle(marker))
    rng = np.random.default_rng(0)
    return [
        ("ok-flac.flac", flac),
        ("trunc-flac.flac", flac[: len(flac) // 2]), ("trunc-ogg.ogg", ogg[: len(ogg) // 2]),
        ("trunc-mp3.mp3", mp3[: len(mp3) // 2]), ("trunc-wav.wav", wav[: len(wav) // 2]),
        ("trunc-flac-head.flac", flac[:200]), ("trunc-wav-head.wav", wav[:30]),
        ("fliphead-flac.flac", flip(flac, [], header_bytes=8)), ("fliphead-ogg.ogg", flip(ogg, [], header_bytes=8)),
        ("fliphead-mp3.mp3", flip(mp3, [], header_bytes=8)), ("fliphead-wav.wav", flip(wav, [], header_bytes=24)),
        ("flipframes-flac.flac", flip(flac, [0.3, 0.5, 0.7])), ("flipframes-ogg.ogg", flip(ogg, [0.3, 0.5, 0.7])),
        ("flipframes-mp3.mp3", flip(mp3, [0.3, 0.5, 0.7])), ("flipframes-wav.wav", flip(wav, [0.3, 0.5, 0.7])),
        ("zero-wav.wav", b""), ("zero-flac.flac", b""),
        ("claims2e31-flac.flac", constant_flac(4, total=1 << 31)),
        ("claims2e31-wav.wav", wav_header(16000, 1, 16000, data_size=(1 << 32) - 2)),
        ("rate1hz-wav.wav", wav_header(1, 1, 2000)), ("rate1e9-wav.wav", wav_header(10**9, 1, 2000)),
        ("rate1hz-flac.flac", constant_flac(4, header_rate=1)),
        ("ch0-wav.wav", wav_header(16000, 0, 0, data_size=3200)), ("ch64-wav.wav", wav_header(16000, 64, 400)),
        ("nan-wav.wav", float_wav([0.1, float("nan"), 0.2])), ("inf-wav.wav", float_wav([0.1, float("inf"), -0.2])),
        ("text-as-wav.wav", b"this is not audio, only text\n" * 100),
        ("random-as-flac.flac", rng.integers(0, 256, 50000, dtype=np.uint8).tobytes()),
        ("random-as-mp3.mp3", rng.integers(0, 256, 50000, dtype=np.uint8).tobytes()),
        ("elf-as-ogg.ogg", b"\x7fELF\x02\x01\x01" + bytes(9) + rng.integers(0, 256, 9000, dtype=np.uint8).tobytes()),
        ("../escape.flac", flac), ("/abs/path.flac", flac),
        ("sym.flac", tarfile.SYMTYPE, "/etc/passwd"), ("hard.flac", tarfile.LNKTYPE, "ok-flac.flac"),
        ("dup.flac", flac), ("other.wav", wav), ("dup.flac", flac),
        ("evil-pyd.pyd", evil), ("evil-pth.pth", evil), ("evil-pickle.pickle", evil),
        ("withpickle.flac", flac), ("withpickle.pth", evil),
        ("ten-hours-flac.flac", constant_flac(10 * 3600 * 16000 // 4096)),
        ("ten-hours-header-wav.wav", wav_header(8000, 1, 8000, data_size=10 * 3600 * 8000 * 2)),
        ("bomb-flac.flac", constant_flac(2**16 + 2**10, rate=48000, channels=2, total=0)),  # 2.1 GB decoded
    ]


EXPECTED = {  # key -> reject reason, or "ok" (tokenized; maybe shorter than the original)
    "ok-flac": "ok",
    "trunc-flac": "undecodable", "trunc-ogg": "ok", "trunc-mp3": "ok", "trunc-wav": "ok",
    "trunc-flac-head": "undecodable", "trunc-wav-head": "undecodable",
    "fliphead-flac": "undecodable", "fliphead-ogg": "undecodable", "fliphead-mp3": "undecodable",
    "fliphead-wav": "undecodable",
    "flipframes-flac": "undecodable", "flipframes-ogg": "ok", "flipframes-mp3": "ok", "flipframes-wav": "ok",
    "zero-wav": "empty", "zero-flac": "empty",
    "claims2e31-flac": "too_large", "claims2e31-wav": "ok",
    "rate1hz-wav": "bad_header", "rate1e9-wav": "bad_header", "rate1hz-flac": "bad_header",
    "ch0-wav": "bad_header", "ch64-wav": "bad_header",
    "nan-wav": "non_finite", "inf-wav": "non_finite",
    "text-as-wav": "undecodable", "random-as-flac": "undecodable", "random-as-mp3": "undecodable",
    "elf-as-ogg": "undecodable",
    "../escape": "unsafe_member", "/abs/path": "unsafe_member", "sym": "unsafe_member", "hard": "unsafe_member",
    "dup": "ok", "other": "ok", "dup~dup1": "duplicate_key",
    "evil-pyd": "unsafe_member", "evil-pth": "unsafe_member", "evil-pickle": "unsafe_member", "withpickle": "ok",
    "ten-hours-flac": "too_large", "ten-hours-header-wav": "ok", "bomb-flac": "too_large",
}


def write_tar(path: Path | None, members: list[tuple]) -> bytes:
    """members: (name, bytes) for files, or (name, tarfile type, linkname) for links and devices; the
    tar's bytes are returned and, unless path is None, written to path.

    Files go through webdataset's TarWriter (name split as webdataset splits it: key up to the first
    dot of the basename, ext the rest; mtime 0 so the bytes are reproducible). Links, devices and
    names without such a split cannot be written by TarWriter, so those few go into its tar stream
    with raw `tarfile`, in member order.
    """
    import webdataset as wds

    buf = io.BytesIO()
    with wds.TarWriter(buf, encoder=False, mtime=0) as sink:
        for name, *rest in members:
            split = re.match(r"^((?:.*/|)[^./]+)[.]([^/]*)$", name)
            if len(rest) == 1 and split:
                sink.write({"__key__": split.group(1), split.group(2): rest[0]})
                continue
            info = tarfile.TarInfo(name)  # hostile member TarWriter cannot express
            if len(rest) == 1:
                info.size = len(rest[0])
                sink.tarstream.addfile(info, io.BytesIO(rest[0]))
            else:
                info.type, info.linkname = rest
                sink.tarstream.addfile(info)
    if path is not None:
        path.write_bytes(buf.getvalue())
    return buf.getvalue()


def build(directory: str | os.PathLike) -> dict:
    """Write the hostile corpus into `directory` (created); returns what to run and what to expect."""
    from pipeline.sources import shard_id_for

    root = Path(directory).resolve()
    root.mkdir(parents=True, exist_ok=True)
    markers = [str(root / "PWNED-pickle"), str(root / "PWNED-shell")]
    write_tar(root / "hostile-000.tar", _members(markers[0]))
    whole = write_tar(root / "hostile-tmp.tar",
                      [("a.flac", (CORPUS / FLAC).read_bytes()), ("b.wav", (CORPUS / WAV).read_bytes())])
    (root / "hostile-tmp.tar").unlink()
    (root / "hostile-001.tar").write_bytes(whole[: len(whole) // 3])  # cut inside a member
    (root / "ok.flac").write_bytes((CORPUS / FLAC).read_bytes())
    (root / "a-directory").mkdir(exist_ok=True)
    if not (root / "a-fifo").exists():
        os.mkfifo(root / "a-fifo")  # reading it would block forever
    rows = [
        {"key": "m-ok", "path": "ok.flac", "text": "fine"},
        {"key": "m-pipe", "path": f"pipe:touch {markers[1]}"},
        {"key": "m-pipe-cmd", "path": f"pipe:sh -c 'touch {markers[1]}'"},
        {"key": "m-data", "path": "data:audio/wav;base64,UklGRg=="},
        {"key": "m-chained", "path": f"simplecache::file://{root}/ok.flac"},
        {"key": "m-ftp", "path": "ftp://example.invalid/a.wav"},
        {"key": "m-missing", "path": "does-not-exist.flac"},
        {"key": "m-directory", "path": "a-directory"},
        {"key": "m-dev-zero", "path": "/dev/zero"},
        {"key": "m-fifo", "path": "a-fifo"},
        {"key": "m-no-path"},
        {"key": "m-ok", "path": "ok.flac"},
    ]
    (root / "hostile.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    expected = dict(EXPECTED)
    expected.update({"m-ok": "ok", "m-pipe": "unsafe_member", "m-pipe-cmd": "unsafe_member", "m-data": "unsafe_member",
                     "m-chained": "unsafe_member", "m-ftp": "unsafe_member", "m-missing": "undecodable",
                     "m-directory": "undecodable", "m-dev-zero": "unsafe_member", "m-fifo": "unsafe_member",
                     "m-no-path": "missing_audio",
                     "m-ok~dup1": "duplicate_key"})
    cut_id = shard_id_for(str(root / "hostile-001.tar"))
    expected[cut_id] = "shard_unreadable"
    return {"tars": str(root / "hostile-{000..001}.tar"), "manifest": str(root / "hostile.jsonl"),
            "expected": expected, "markers": markers, "root": str(root)}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.hostile_corpus DIR")
    result = build(sys.argv[1])
    print(json.dumps({k: v for k, v in result.items() if k != "expected"}, indent=1))
    print(f"{len(result['expected'])} inputs; expected outcomes:")
    for key, reason in sorted(result["expected"].items()):
        print(f"  {reason:16s} {key}")
