"""The fixed vocabulary of rejection reasons written to `<out>/rejects/`.

Every input key ends up exactly once in the tokens or in the rejects; each rejection names one of
these reasons (and a free-text detail). The README lists the same table.
"""

from __future__ import annotations

REASONS: dict[str, str] = {
    "empty": "the audio member or file has zero bytes",
    "missing_audio": "a sample in the shard has no audio member (only metadata members)",
    "undecodable": "libsndfile cannot read it: corrupt, truncated, non-audio or unsupported format",
    "bad_header": "the header claims an impossible value (sample rate, channels or frame count outside limits)",
    "too_large": "the decoded size would exceed the configured memory budget",
    "no_frames": "the file decodes to zero samples",
    "non_finite": "decoded samples contain NaN or Inf",
    "too_short": "shorter than the configured minimum duration",
    "decoder_crash": "the decoder process died on this file (e.g. a segfault), after bounded retries",
    "duplicate_key": "the key was already seen earlier in the same shard (audio files: in the same input)",
    "unsafe_member": "a tar member with an unsafe name or type (absolute path, '..', link, device, pickle)",
    "shard_unreadable": "the shard itself could not be opened or listed, after bounded retries",
}


def check_reason(reason: str) -> str:
    if reason not in REASONS:
        raise ValueError(f"unknown reject reason {reason!r}; expected one of {sorted(REASONS)}")
    return reason
