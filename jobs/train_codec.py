"""Train a small EnCodec (our `codec/`, 24 kHz mono) on licensed corpus audio; ship it with a card.

python -m jobs.train_codec --config configs/train_tiny.yaml [--out DIR] [--steps N] [--set SECTION.KEY=VALUE ...]

The loop, its typed config and the card live in `codec.trainer` (loop.py, config.py, card.py).
Reproducible from `seed` for a given torch version and thread count (`threads`); the data files
and their licences are part of the config and of the card.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from codec.trainer.config import TrainConfig, apply_override, load_config
from codec.trainer.loop import train


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m jobs.train_codec", description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="training YAML, e.g. configs/train_tiny.yaml")
    p.add_argument("--out", help="output directory (default: the config's `out`)")
    p.add_argument("--steps", type=int, help="training steps (default: the config's train.steps)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. loss.si_snr=0.2 or model.num_filters=16 (YAML value)")
    p.add_argument("--no-heldout", action="store_true",
                   help="skip the held-out evaluation and the card (runs that choose settings)")
    args = p.parse_args(argv)
    raw = load_config(Path(args.config))
    if args.steps is not None:
        raw["train"]["steps"] = args.steps
    try:
        for item in args.set:
            apply_override(raw, item)
        cfg = TrainConfig.from_dict(raw)
    except ValueError as exc:
        p.error(str(exc))
    if not (args.out or cfg.out):
        p.error("no output directory: pass --out or set `out` in the config")
    out = Path(args.out or cfg.out)
    command = " ".join(["python -m jobs.train_codec", *(sys.argv[1:] if argv is None else argv)])
    record = train(cfg, out, heldout_eval=not args.no_heldout, command=command)
    top = record["valid_eval"][str(float(record["config"]["target_bandwidths"][-1]))]
    print(f"[train] wrote {out} in {record['wall_time_s'] / 60:.1f} min; valid at the top bandwidth: "
          f"SI-SNR {top['si_snr_db']:.2f} dB, mel {top['mel_distance_db']:.2f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
