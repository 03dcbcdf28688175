"""reader.check_same_codec: datasets of two codecs never share a training stream."""

import pytest

from pipeline.reader import check_same_codec

ENCODEC = {"model_name": "encodec_24khz", "checkpoint_sha256": "a" * 64, "sample_rate": 24000, "frame_rate": 75}
DAC = {"codec_family": "dac", "model_name": "dac_24khz", "checkpoint_sha256": "b" * 64, "sample_rate": 24000,
       "frame_rate": 75.0}


def test_same_codec_passes_and_old_datasets_are_encodec():
    check_same_codec(["a", "b"], [ENCODEC, {**ENCODEC, "codec_family": "encodec"}])


@pytest.mark.parametrize("other, named", [
    (DAC, "codec_family"),
    ({**ENCODEC, "checkpoint_sha256": "c" * 64}, "checkpoint_sha256"),
    ({**ENCODEC, "model_name": "encodec_48khz", "sample_rate": 48000}, "sample_rate"),
])
def test_different_codecs_are_refused(other, named):
    with pytest.raises(ValueError, match=f"(?s)a and b were tokenized by different codecs.*{named}"):
        check_same_codec(["a", "b"], [ENCODEC, other])
