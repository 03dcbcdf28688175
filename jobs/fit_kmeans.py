"""python -m jobs.fit_kmeans --input SPEC --output centroids.safetensors [--model M] [--layer 9] [--k 500] ...

Fits k-means centroids on a seeded sample of a corpus's HuBERT features (`pipeline.kmeans_fit`), for the
semantic tokens of a job (`codec.semantic`); docs/semantic.md.
"""

from __future__ import annotations

import argparse
import sys

from pipeline.errors import AudiotokError
from pipeline.kmeans_fit import FitOptions, fit_kmeans


def main(argv: list[str] | None = None) -> int:
    d = FitOptions("", ".safetensors")
    p = argparse.ArgumentParser(prog="python -m jobs.fit_kmeans",
                                description="Fit k-means centroids on a seeded sample of HuBERT features.")
    p.add_argument("--input", required=True, help="audio folder, glob, tars, manifest or hf:... (as jobs.tokenize)")
    p.add_argument("--output", required=True, help="the .safetensors to write")
    p.add_argument("--model", default=d.model, help=f"HuBERT: a transformers directory, a hub id, random:hubert_base "
                   f"or random:hubert_large (default {d.model})")
    p.add_argument("--layer", type=int, default=d.layer, help=f"transformers' hidden_states index (default {d.layer})")
    p.add_argument("--k", type=int, default=d.k, help=f"clusters (default {d.k})")
    p.add_argument("--seed", type=int, default=d.seed, help="seeds the sample, the init and the mini-batches")
    p.add_argument("--fraction", type=float, default=d.fraction, help="chance an item is sampled (default 1)")
    p.add_argument("--max-seconds", type=float, default=d.max_seconds, help="audio to sample, in seconds")
    p.add_argument("--max-item-seconds", type=float, default=d.max_item_seconds,
                   help="longer items are cut into pieces of this length")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="feature frames per mini-batch")
    p.add_argument("--steps", type=int, default=d.steps, help="mini-batches")
    p.add_argument("--device", default=d.device, help="auto (a GPU when there is one), cpu, cuda, cuda:N")
    p.add_argument("--work-dir", default=None, help="where the temporary feature file goes (default: beside output)")
    args = p.parse_args(argv)
    try:
        fit_kmeans(FitOptions(
            input=args.input, output=args.output, model=args.model, layer=args.layer, k=args.k, seed=args.seed,
            fraction=args.fraction, max_seconds=args.max_seconds, max_item_seconds=args.max_item_seconds,
            batch_size=args.batch_size, steps=args.steps, device=args.device, work_dir=args.work_dir))
    except (AudiotokError, ValueError) as exc:
        print(f"audiotok fit_kmeans: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
