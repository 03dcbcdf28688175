"""One time window, cropped out of token streams of different frame rates (AudioLM: semantic + acoustic).

A window is [t0, t1) in seconds of the row's segment. A stream at `rate` frames per second takes frames

    start = floor(t0 * rate + 1/2),   stop = floor(t1 * rate + 1/2),   clipped to [0, the row's frames]

(each bound rounded half up to the nearest frame, frame i standing for time i / rate). Each bound is then
within half a frame (1 / (2 rate) seconds) of the window's, so two streams' crops start, and end, within
half a frame of each other's (12.5 Hz: 40 ms; 50 Hz: 10 ms; 75 Hz: 6.7 ms), less than one frame of either.
Only at a row's end can a crop be shorter: HuBERT has floor((L - 400) / 320) + 1 frames, so its nominal end
is up to 25 ms (its first 400-sample window, 1.25 frames at 50 Hz) before the audio's, and the codec's
last frame may cover padding (up to one of its frames): there the ends differ by at most 25 ms plus one
acoustic frame. The loader crops the acoustic `codes` in
whole frames (its plan), so its window is exact there: t0 = start / rate_acoustic, t1 = stop / rate_acoustic.
"""

from __future__ import annotations

import math


def frame_span(t0: float, t1: float, rate: float, total: int) -> tuple[int, int]:
    """(start, count) of the frames of a stream at `rate` Hz covering [t0, t1) seconds, of its `total` frames."""
    if t1 < t0:
        raise ValueError(f"window [{t0}, {t1}) ends before it starts")
    start = min(max(0, math.floor(t0 * rate + 0.5)), total)
    stop = min(max(start, math.floor(t1 * rate + 0.5)), total)
    return start, stop - start


def window_of(start: int, frames: int, rate: float) -> tuple[float, float]:
    """The time window [t0, t1) of frames start..start+frames-1 of a stream at `rate` Hz."""
    return start / rate, (start + frames) / rate
