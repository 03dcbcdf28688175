"""python -m jobs.bench_codec [--presets 24khz 48khz] [--batch-sizes 1 16] [--bandwidths 6 24]
                           [--variants fp32 batched bf16 ...] [--model SOURCE] [--seconds 10]

Encode speed and code agreement of our codec's variants vs transformers' EncodecModel: what is run
and printed is described in `pipeline.bench.codec`.
"""

from __future__ import annotations

import argparse
import os

import torch

from codec.runtime import resolve_device
from pipeline.bench.codec import VARIANTS, bench_preset


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="encode speed and code agreement: our codec's variants vs transformers")
    p.add_argument("--presets", nargs="+", default=["24khz", "48khz"], choices=["24khz", "48khz"])
    p.add_argument("--batch-sizes", nargs="+", type=int, default=None,
                   help="default: 1 16 on the CPU, 1 16 64 256 on CUDA")
    p.add_argument("--bandwidths", nargs="+", type=float, default=[6.0, 24.0])
    p.add_argument("--variants", nargs="+", default=None, choices=VARIANTS,
                   help="default: fp32 batched bf16 on the CPU, all on CUDA")
    p.add_argument("--model", default=None,
                   help="a real checkpoint (dir, .th, hub id), benchmarked instead of --presets; "
                        "default: random weights + k-means codebooks")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--kmeans-iters", type=int, default=10)
    p.add_argument("--kmeans-frames", type=int, default=40000)
    args = p.parse_args(argv)
    import transformers

    device = resolve_device("auto")
    args.batch_sizes = args.batch_sizes or ([1, 16, 64, 256] if device == "cuda" else [1, 16])
    args.variants = args.variants or (list(VARIANTS) if device == "cuda" else ["fp32", "batched", "bf16"])
    name = torch.cuda.get_device_name() if device == "cuda" else f"{os.cpu_count()} CPUs"
    print(f"device={device} ({name}) threads={torch.get_num_threads()} torch={torch.__version__} "
          f"transformers={transformers.__version__}")
    for preset in [None] if args.model else args.presets:
        bench_preset(preset, args, device)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
