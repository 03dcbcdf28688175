"""Pictures and sounds for the verify report, with numpy, zlib and soundfile only.

  png_bytes(rgb)            uint8 [H, W, 3] -> a PNG file (8-bit RGB, filter 0, zlib)
  spectrogram_rgb(audio)    float [C, T] -> uint8 [H, W, 3] mel spectrogram, low frequencies at the bottom
  histogram_svg(values)     an inline <svg> bar chart with an optional threshold line
  wav_bytes(audio)          float [C, T] -> 16-bit PCM WAV (clipped to [-1, 1])
"""

from __future__ import annotations

import html
import io
import math
import struct
import zlib

import numpy as np
import soundfile as sf

from codec.mel import mel_filterbank
from codec.metrics import stft_magnitude

# magma-like colour ramp: (position, r, g, b)
_RAMP = np.array([
    [0.00, 0, 0, 4], [0.13, 28, 16, 68], [0.25, 79, 18, 123], [0.38, 129, 37, 129], [0.50, 181, 54, 122],
    [0.63, 229, 80, 100], [0.75, 251, 135, 97], [0.88, 254, 194, 135], [1.00, 252, 253, 191],
], dtype=np.float64)


def png_bytes(rgb: np.ndarray) -> bytes:
    """uint8 [H, W, 3] -> PNG bytes (IHDR, one IDAT, IEND)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or not rgb.shape[0] or not rgb.shape[1]:
        raise ValueError(f"png_bytes needs uint8 [H, W, 3] with H, W >= 1; got {rgb.shape}")
    height, width, _ = rgb.shape
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rgb.reshape(height, width * 3)], axis=1)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6))
            + chunk(b"IEND", b""))


def colormap(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (any shape) -> uint8 RGB (shape + [3]) on the magma-like ramp."""
    v = np.clip(np.nan_to_num(values, nan=0.0), 0.0, 1.0)
    channels = [np.interp(v, _RAMP[:, 0], _RAMP[:, k]) for k in (1, 2, 3)]
    return np.stack(channels, axis=-1).round().astype(np.uint8)


def mel_db(audio: np.ndarray, sample_rate: int, n_mels: int = 96, max_width: int = 640) -> np.ndarray:
    """Mel band levels in dB [n_mels, frames] of the channel mean of float [C, T] (or [T]) audio.

    n_fft ~ 43 ms (a power of two), hop chosen so that frames <= max_width.
    """
    x = np.asarray(audio, dtype=np.float64)
    x = x.mean(axis=0) if x.ndim == 2 else x
    n_fft = 2 ** round(math.log2(0.043 * sample_rate))
    hop = max(n_fft // 4, math.ceil(len(x) / max_width))
    bank = mel_filterbank(sample_rate, n_fft, n_mels)
    mags = bank @ stft_magnitude(x[None], n_fft, hop)[0]
    return 20 * np.log10(np.maximum(mags, 1e-10))


def spectrogram_rgb(levels_db: np.ndarray, top_db: float, range_db: float = 80.0, scale: int = 2) -> np.ndarray:
    """[n_mels, frames] dB -> uint8 [n_mels * scale, frames, 3]; top_db maps to the brightest colour,
    top_db - range_db and below to black. Pass the original's top to draw decoded audio on the same scale."""
    rgb = colormap((levels_db - (top_db - range_db)) / range_db)[::-1]
    return np.repeat(rgb, scale, axis=0)


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """float [C, T] (or [T]) -> 16-bit PCM WAV bytes, samples clipped to [-1, 1]."""
    x = np.asarray(audio, dtype=np.float32)
    x = x[None] if x.ndim == 1 else x
    buf = io.BytesIO()
    sf.write(buf, np.clip(x.T, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def histogram_svg(values: list[float], title: str, threshold: float | None = None, bins: int = 20,
                  width: int = 320, height: int = 160) -> str:
    """An inline SVG histogram of the finite `values`, with a red line at `threshold` when given."""
    finite = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    esc = html.escape(title)
    if not finite.size:
        return (f'<svg class="hist" width="{width}" height="{height}"><text x="8" y="20">{esc}: no finite values'
                "</text></svg>")
    lo, hi = float(finite.min()), float(finite.max())
    if threshold is not None and math.isfinite(threshold):
        lo, hi = min(lo, threshold), max(hi, threshold)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(finite, bins=bins, range=(lo, hi))
    left, top, plot_w, plot_h = 36, 24, width - 48, height - 52
    scale = plot_h / max(1, counts.max())
    parts = [f'<svg class="hist" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">',
             f'<text x="{left}" y="16" font-size="12">{esc} (n={finite.size})</text>',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#444"/>']
    bar_w = plot_w / bins
    for i, c in enumerate(counts):
        h = c * scale
        parts.append(f'<rect x="{left + i * bar_w:.1f}" y="{top + plot_h - h:.1f}" width="{max(bar_w - 1, 1):.1f}" '
                     f'height="{h:.1f}" fill="#4a6fa5"><title>[{edges[i]:.4g}, {edges[i + 1]:.4g}): {c}</title></rect>')
    parts.append(f'<text x="{left}" y="{height - 12}" font-size="11">{lo:.4g}</text>')
    parts.append(f'<text x="{left + plot_w}" y="{height - 12}" font-size="11" text-anchor="end">{hi:.4g}</text>')
    parts.append(f'<text x="4" y="{top + 10}" font-size="11">{counts.max()}</text>')
    if threshold is not None and math.isfinite(threshold):
        x = left + (threshold - lo) / (hi - lo) * plot_w
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + plot_h}" stroke="#d33" '
                     f'stroke-dasharray="4 2"><title>threshold {threshold}</title></line>')
    parts.append("</svg>")
    return "".join(parts)
