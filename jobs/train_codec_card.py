"""python -m jobs.train_codec_card models/tiny-24khz   # rewrites MODEL_CARD.md from its training.json"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from codec.trainer.card import write_card
from codec.trainer.data import package_version


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not (Path(args[0]) / "training.json").is_file():
        print("usage: python -m jobs.train_codec_card MODEL_DIR (a directory with training.json)",
              file=sys.stderr)
        return 2
    out = Path(args[0])
    record = json.loads((out / "training.json").read_text())
    if not record.get("package_versions"):  # records written before versions were kept
        record["package_versions"] = {p: package_version(p) for p in sorted({f["package"] for f in
                                      record["files"]["train"]})}
        (out / "training.json").write_text(json.dumps(record, indent=1))
    write_card(record, out / "MODEL_CARD.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
