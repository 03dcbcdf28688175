"""jobs.train_lm, short: on tokens with known structure (a Markov chain across frames and codebooks) the
small LM, trained through TokenLoader and the delay pattern, beats the unigram baseline on held-out files
by far; with a wrong shift or mask it would not learn (or would be too good to be true). The full run on
real corpus tokens and its numbers: docs/training.md."""

import json

import pytest

from jobs.train_lm import main
from pipeline.training.lm_check import held_out
from tests.pipeline.training.token_corpus import write_markov_tokens


def test_holdout_keeps_segments_of_a_file_together():
    keys = [f"file-{i}#{s}" for i in range(200) for s in range(3)]
    held = {k.split("#")[0] for k in keys if held_out(k, 0.2)}
    assert all(held_out(f"{f}#7", 0.2) for f in held) and 20 < len(held) < 60
    assert all(held_out(f"/some/dir/{f}", 0.2) for f in held)  # the file name decides, not where it lies
    assert {k.split("#")[0] for k in keys if held_out(k, 0.2, split_seed=1)} != held
    # a glob limits the candidates, and among them the same files are held out
    glob = "/eval/*"
    assert not any(held_out(f"/extra/{f}#0", 0.2, glob=glob) for f in held)
    assert all(held_out(f"/eval/{f}#0", 0.2, glob=glob) for f in held)


def test_short_training_run_beats_unigram(tmp_path, capsys):
    write_markov_tokens(tmp_path / "tokens")
    rc = main(["--tokens", str(tmp_path / "tokens"), "--pattern", "delay", "--steps", "150",
               "--lr", "5e-3", "--max-tokens", "2048", "--max-frames", "100", "--holdout", "0.25", "--seed", "1",
               "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert rc == 0 and "| codebook | unigram | LM | below unigram |" in out
    result = json.loads((tmp_path / "r.json").read_text())
    assert all(5.4 < u < 5.8 for u in result["unigram"]), out  # about log(256): no marginal structure
    # the entropy of the source is 1.60 nats per code (0.8 predictable, 0.2 uniform): below it the model
    # would see its targets; codebook 1 gets there only through codebook 0 of its own frame
    assert all(1.6 < lm < 3.0 for lm in result["lm"]) and result["reduction"] > 0.45, out


def test_bad_arguments_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--tokens", str(tmp_path), "--pattern", "zigzag"])
    assert exc.value.code == 2
    assert main(["--tokens", str(tmp_path / "nothing")]) == 2
    assert "neither" in capsys.readouterr().err
