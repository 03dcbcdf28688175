"""The example of docs/training.md runs as written, on a committed token dataset."""

import re
import runpy

import torch

from tests.conftest import REPO
from tests.pipeline.training.token_corpus import write_tokens


def test_training_doc_example_runs(tmp_path, monkeypatch, capsys):
    text = (REPO / "docs" / "training.md").read_text()
    code = re.search(r"<!-- training-example -->\s*```python\n(.*?)```", text, re.DOTALL).group(1)
    rows = write_tokens(tmp_path / "out" / "demo", [6, 5, 4], seed=2)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "example.py").write_text(code)
    ns = runpy.run_path(str(tmp_path / "example.py"))
    assert "padding waste" in capsys.readouterr().out
    assert ns["inputs"].shape[:2] == (len(ns["texts"]), 2) and ns["out"].shape[-1] == 8
    assert ns["train_on"].sum() == 2 * int(ns["batch"]["num_frames"].sum())
    assert set(ns["texts"]) <= {r["text"] for r in rows.values()}
    assert (ns["resumed"].epoch, ns["resumed"].batches_done) == (1, len(ns["loader"].plan(1).ranks[0]))
    assert torch.equal(ns["pattern"].revert(ns["targets"], ns["batch"]["codes"].shape[-1])
                       .masked_fill(~ns["batch"]["mask"][:, None], 1024), ns["batch"]["codes"])
