"""Encode throughput of our codec vs transformers' EncodecModel, side by side in one run.

python -m jobs.bench_codec [--presets 24khz 48khz] [--batch-sizes 1 4 16] [--bandwidths 6 24] [--seconds 10] [--repeats 2]

Clips are cut from real audio when AUDIOTOK_CORPUS (default ../shared/corpus) is there, else
seeded noise. Both models share the same seeded random weights (transformers loads ours through
save_model). Prints x realtime for each, the ratio, code agreement with transformers, and peak
CUDA memory on a GPU. Not yet done (issue 2): codebooks fitted to real latents, bf16/compile paths.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from codec import random_model, save_model


def clips(rate: int, channels: int, seconds: float, count: int) -> torch.Tensor:
    corpus = Path(os.environ.get("AUDIOTOK_CORPUS", Path(__file__).resolve().parents[1].parent / "shared" / "corpus"))
    name = "music/encodec_test_24k_mono_20s.wav" if channels == 1 else "music/encodec_test_48k_stereo_15s.wav"
    n = int(seconds * rate)
    if (corpus / name).is_file():
        import soundfile as sf
        import soxr

        data, sr = sf.read(corpus / name, dtype="float32", always_2d=True)
        data = soxr.resample(data, sr, rate) if sr != rate else data
        data = np.tile(data[:, :channels].T, (1, int(np.ceil((n + count * rate) / data.shape[0])) + 1))
        return torch.from_numpy(np.stack([data[:, i * rate : i * rate + n] for i in range(count)])).float()
    return torch.randn(count, channels, n, generator=torch.Generator().manual_seed(0)) * 0.1


def timed(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--presets", nargs="+", default=["24khz", "48khz"])
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4])
    p.add_argument("--bandwidths", nargs="+", type=float, default=[6.0, 24.0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    import transformers

    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"device={device} threads={torch.get_num_threads()} torch={torch.__version__} transformers={transformers.__version__}")
    print(f"{'preset':7} {'kbps':>5} {'batch':>5} {'ours x rt':>10} {'hf x rt':>9} {'ratio':>6} {'agree %':>8} {'peak MiB':>9}")
    for preset in args.presets:
        ours = random_model(f"random:{preset}").to(device)
        ref = transformers.EncodecModel.from_pretrained(save_model(ours.cpu(), tempfile.mkdtemp())).eval().to(device)
        ours.to(device)
        cfg = ours.config
        for bw in args.bandwidths:
            if bw not in cfg.target_bandwidths:
                continue
            for batch in args.batch_sizes:
                x = clips(cfg.sampling_rate, cfg.audio_channels, args.seconds, batch).to(device)
                if device == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                t_ours = timed(lambda: ours.encode(x, bandwidth=bw), args.repeats)
                peak = torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else float("nan")
                with torch.no_grad():
                    t_ref = timed(lambda: ref.encode(x, bandwidth=bw), args.repeats)
                    ref_codes = ref.encode(x, bandwidth=bw).audio_codes
                ref_codes = torch.cat(list(ref_codes.transpose(0, 1).unbind(1)), dim=-1) if ref_codes.shape[0] > 1 else ref_codes[0]
                ours_codes = torch.stack([i.codes for i in ours.encode(x, bandwidth=bw)])
                agree = (ours_codes == ref_codes[..., : ours_codes.shape[-1]].cpu()).float().mean().item() * 100
                audio_s = batch * args.seconds
                print(f"{preset:7} {bw:5.1f} {batch:5d} {audio_s / t_ours:10.1f} {audio_s / t_ref:9.1f} "
                      f"{t_ref / t_ours:6.2f} {agree:8.3f} {peak:9.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
