"""python -m jobs.train_codec_data --config configs/train_tiny.yaml [--dir DIR] [--list] [--every-file]

Fetches the Debian packages a codec training config draws audio from and prints each split's files
and minutes (`codec.trainer.data`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from codec.trainer.data import corpus_dir, fetch, packages, packages_dir, resolve


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jobs.train_codec_data",
                                description="Fetch and list the training audio of a codec training config.")
    p.add_argument("--config", required=True, help="training YAML, e.g. configs/train_tiny.yaml")
    p.add_argument("--dir", help="where packages are unpacked (default: $AUDIOTOK_TRAIN_AUDIO, else ../train_audio)")
    p.add_argument("--list", action="store_true", help="print every resolved file with its duration")
    p.add_argument("--every-file", action="store_true",
                   help="every match of each glob, whole (ignores every, offset and max_s): audio for jobs.train_lm")
    args = p.parse_args(argv)
    try:
        data = yaml.safe_load(Path(args.config).read_text())["data"]
    except (OSError, KeyError, TypeError, yaml.YAMLError) as exc:
        print(f"error: cannot read data section of {args.config}: {exc}", file=sys.stderr)
        return 2
    root = Path(args.dir) if args.dir else packages_dir()
    fetch(packages(data), root)
    import soundfile as sf

    for split, files in resolve(data, root=root, every_file=args.every_file).items():
        seconds = 0.0
        for f in files:
            path = corpus_dir() / f.path if f.package == "corpus" else root / f.package / f.path
            dur = sf.info(str(path)).duration
            dur = min(dur, f.max_s) if f.max_s is not None else dur
            seconds += dur
            if args.list:
                print(f"{split}\t{f.name}\t{dur:.2f}\t{f.licence}")
        print(f"[data] {split}: {len(files)} files, {seconds / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
