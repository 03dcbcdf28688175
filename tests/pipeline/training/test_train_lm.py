"""jobs.train_lm, short: real corpus audio tokenized by the trained tiny codec, a small LM trained on it
beats the unigram baseline on held-out files. (The full run and its numbers: README, "Training on the tokens".)"""

import json

import pytest

from jobs.train_lm import held_out, main
from tests.pipeline.training.token_corpus import write_real_tokens

FILES = {  # 12 files, music and speech: ~2.5 minutes of audio
    "elvish": "music/wesnoth_elvish-theme_6s_44k.wav",
    "battle": "music/wesnoth_battle-epic_10s_44k.flac",
    "cave": "music/supertux_retro_cave_old_10s_48k.flac",
    "scotsman": "music/midi_openttd_flying_scotsman_12s_44k.flac",
    "heroes": "music/heroes_xm_heroes03_12s_48k.flac",
    "blupi": "music/midi_planetblupi_music001_15s_48k.ogg",
    "encodec": "music/encodec_test_24k_mono_20s.wav",
    "librivox-0870": "speech/librivox_0870_16k.wav",
    "librivox-0890": "speech/librivox_0890_16k.flac",
    "librivox-0920": "speech/librivox_0920_16k.ogg",
    "arctic": "speech/cmu_arctic_a0007_16k.wav",
    "tovarisci": "speech/fillets_en_deu-l-tovarisci_22k.ogg",
}


def test_holdout_keeps_segments_of_a_file_together():
    keys = [f"file-{i}#{s}" for i in range(200) for s in range(3)]
    held = {k.split("#")[0] for k in keys if held_out(k, 0.2)}
    assert all(held_out(f"{f}#7", 0.2) for f in held) and 20 < len(held) < 60


def test_short_training_run_beats_unigram(tmp_path, capsys):
    write_real_tokens(tmp_path / "tokens", FILES)
    rc = main(["--tokens", str(tmp_path / "tokens"), "--pattern", "delay", "--bandwidth", "1.5", "--minutes", "0.5",
               "--max-steps", "150", "--dim", "64", "--layers", "2", "--holdout", "0.25", "--seed", "1",
               "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert rc == 0 and "| codebook | unigram | LM | below unigram |" in out
    result = json.loads((tmp_path / "r.json").read_text())
    assert len(result["lm"]) == len(result["unigram"]) == 2
    assert result["reduction"] > 0.03, out  # the full run reaches more: see the README


def test_bad_arguments_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--tokens", str(tmp_path), "--pattern", "zigzag"])
    assert exc.value.code == 2
    assert main(["--tokens", str(tmp_path / "nothing")]) == 2
    assert "neither" in capsys.readouterr().err
