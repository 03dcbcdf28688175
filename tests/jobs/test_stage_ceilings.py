"""jobs.stage_ceilings: the in-process stage ceiling and one decoder process, timed on the same files."""

import re

import pytest

from jobs import stage_ceilings
from pipeline.bench import corpus, decoder_process
from pipeline.config import AudioConfig
from pipeline.decode_pool import DecodePool
from tests.conftest import corpus_file


@pytest.fixture(autouse=True)
def needs_corpus():
    corpus_file(corpus.SPEECH[0])


def test_prints_ceiling_and_decoder_process_per_round_and_medians(capsys):
    stage_ceilings.main(["--kind", "speech", "--minutes", "0.5", "--rounds", "2", "--malloc", "default"])
    out = capsys.readouterr().out
    row = r"round \d: ceiling decode ([\d.]+) \+ resample ([\d.]+) = [\d.]+ +decoder process ([\d.]+)"
    rounds = re.findall(row, out)
    assert len(rounds) == 2, out
    assert all(float(decode) > 0 and float(resample) > 0 for decode, resample, _ in rounds)
    assert "median: ceiling decode" in out and "decoder process" in out.splitlines()[-1]


def test_allocate_as_decoder_in_a_child_process():
    """mallopt with the decoders' values (run in a child: it would change this test process's malloc)."""
    import subprocess
    import sys

    code = "from pipeline.bench import decoder_process; print(decoder_process.allocate_as_decoder())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_decoder_process_measure_needs_one_started_worker():
    pool = DecodePool(AudioConfig(), 24000, 1, workers=1)
    try:
        with pytest.raises(ValueError, match="one worker"):
            decoder_process.measure(pool, [])
    finally:
        pool.close()
