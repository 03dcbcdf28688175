"""soxr resampling written straight into a buffer the caller gives (libsoxr's C API through ctypes).

    y = resample(x, in_rate, out_rate, quality, alloc)    float32 [C, T'] C-contiguous, or None

x: float32 [T, C], interleaved as libsndfile decodes it. The result is what `soxr.resample` returns for
the same samples given to it channel by channel (planar), transposed: the same library (the libsoxr
inside the `soxr` package, called through the functions it exports), the same set-up (`soxr_create`
with the package's quality spec and no runtime spec), the same input chunks and the same cap on the
output length. Only the memory differs: soxr reads the interleaved samples as they are and writes
each channel's plane into `alloc(n)` (a float32 array of n values; a decoder process passes a piece
of its shared-memory arena), so there is no transposing copy before soxr, no zeroed output buffer and
no copy of the result afterwards. Bit-identity with `soxr.resample` is checked by
tests/pipeline/test_soxr_direct.py and tests/pipeline/test_audio_identity.py.

The planes are laid out one after the other, each as long as the output is predicted to be
(round(T * out_rate / in_rate), capped as `soxr.resample` caps it). When soxr gives fewer samples
the planes are moved together; when it would give more, the result is None and the caller uses
`soxr.resample` (so are builds of the `soxr` package that do not export libsoxr's functions).
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable

import numpy as np
import soxr

_FLOAT32_I, _FLOAT32_S = 0, 4  # soxr_datatype_t: interleaved / split (one pointer per channel)
_QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ")


class _IoSpec(ctypes.Structure):
    _fields_ = [("itype", ctypes.c_int), ("otype", ctypes.c_int), ("scale", ctypes.c_double),
                ("e", ctypes.c_void_p), ("flags", ctypes.c_ulong)]


class _QualitySpec(ctypes.Structure):
    _fields_ = [("precision", ctypes.c_double), ("phase_response", ctypes.c_double),
                ("passband_end", ctypes.c_double), ("stopband_begin", ctypes.c_double),
                ("e", ctypes.c_void_p), ("flags", ctypes.c_ulong)]


def _load():
    try:
        from soxr import soxr_ext

        lib = ctypes.CDLL(soxr_ext.__file__)
        lib.soxr_io_spec.restype = _IoSpec
        lib.soxr_io_spec.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.soxr_quality_spec.restype = _QualitySpec
        lib.soxr_quality_spec.argtypes = [ctypes.c_ulong, ctypes.c_ulong]
        lib.soxr_create.restype = ctypes.c_void_p
        lib.soxr_create.argtypes = [ctypes.c_double, ctypes.c_double, ctypes.c_uint, ctypes.POINTER(ctypes.c_char_p),
                                    ctypes.POINTER(_IoSpec), ctypes.POINTER(_QualitySpec), ctypes.c_void_p]
        lib.soxr_process.restype = ctypes.c_char_p
        lib.soxr_process.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p,
                                     ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t)]
        lib.soxr_delete.restype = None
        lib.soxr_delete.argtypes = [ctypes.c_void_p]
        return lib
    except (ImportError, OSError, AttributeError):
        return None


_LIB = _load()


def available() -> bool:
    return _LIB is not None


def empty(n: int) -> np.ndarray:
    return np.empty(n, np.float32)


def resample(x: np.ndarray, in_rate: int, out_rate: int, quality: str = "HQ",
             alloc: Callable[[int], np.ndarray] = empty) -> np.ndarray | None:
    """float32 [C, T'] (C-contiguous, in the memory `alloc` gave) of float32 [T, C] `x`; None where
    this module cannot give soxr.resample's result (the caller then calls soxr.resample)."""
    if _LIB is None or quality not in _QUALITIES or x.ndim != 2 or not 1 <= x.shape[1] <= 1024:
        return None
    x = np.ascontiguousarray(x, dtype=np.float32)
    ilen, channels = x.shape
    cap = int(ilen * float(out_rate) / float(in_rate) + 1)  # soxr.resample's output capacity per channel
    # the planes' length: the output predicted (mono: the capacity itself, nothing to move)
    plane = cap if channels == 1 else min(cap, math.floor(ilen * out_rate / in_rate + 0.5))
    out = alloc(channels * plane)
    if out.dtype != np.float32 or out.size < channels * plane or not out.flags.c_contiguous:
        raise ValueError("alloc must give a C-contiguous float32 array of the size asked")
    err = ctypes.c_char_p()
    io = _LIB.soxr_io_spec(_FLOAT32_I, _FLOAT32_S)
    spec = _LIB.soxr_quality_spec(getattr(soxr, quality), 0)
    handle = _LIB.soxr_create(float(in_rate), float(out_rate), channels, ctypes.byref(err), ctypes.byref(io),
                              ctypes.byref(spec), None)
    if err.value or not handle:
        raise RuntimeError(f"soxr_create: {(err.value or b'failed').decode(errors='replace')}")
    try:
        chunk = int(max(1000.0, 48000 * float(in_rate) / float(out_rate)))  # soxr.resample's input chunks
        planes = (ctypes.c_void_p * channels)()
        base, xbase = out.ctypes.data, x.ctypes.data
        done, pos = ctypes.c_size_t(), 0

        def process(data, n):  # one soxr_process call, output after `pos` in each plane
            for c in range(channels):
                planes[c] = base + 4 * (c * plane + pos)
            failed = _LIB.soxr_process(handle, data, n, None, planes, plane - pos, ctypes.byref(done))
            if failed:
                raise RuntimeError(f"soxr_process: {failed.decode(errors='replace')}")
            return done.value

        for start in range(0, ilen, chunk):
            pos += process(xbase + 4 * channels * start, min(chunk, ilen - start))
        pos += process(None, 0)  # flush
        if pos == plane < cap:  # planes full: would soxr.resample, with room up to `cap`, have got more?
            spare = np.empty(channels * (cap - plane), np.float32)
            for c in range(channels):
                planes[c] = spare.ctypes.data + 4 * c * (cap - plane)
            if _LIB.soxr_process(handle, None, 0, None, planes, cap - plane, ctypes.byref(done)) or done.value:
                return None
    finally:
        _LIB.soxr_delete(handle)
    for c in range(1, channels) if pos < plane else ():  # fewer samples than predicted: planes together
        out[c * pos:(c + 1) * pos] = out[c * plane:c * plane + pos]
    return out[:channels * pos].reshape(channels, pos)
