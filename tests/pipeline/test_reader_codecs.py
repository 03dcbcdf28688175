"""reader.check_same_codec: datasets of two codecs never share a training stream."""

import pytest

from pipeline.provenance import Provenance
from pipeline.reader import check_same_codec

# the fields check_same_codec does not look at, as a dataset written before codec families would have them
_REST = {"model_source": "x", "random_weights": True, "codec_config": {}, "channels": 1, "hop_length": 320,
         "chunk_length": None, "chunk_stride": None, "bandwidths": [6.0], "bandwidth_to_num_quantizers": {"6.0": 8},
         "num_quantizers": 8, "precision": "fp32", "device": "cpu", "pipeline_version": "0", "resampler": "soxr",
         "segment_max_s": 30.0}


def prov(fields: dict) -> Provenance:
    return Provenance.from_json({**_REST, **fields})

ENCODEC = {"model_name": "encodec_24khz", "checkpoint_sha256": "a" * 64, "sample_rate": 24000, "frame_rate": 75}
DAC = {"codec_family": "dac", "model_name": "dac_24khz", "checkpoint_sha256": "b" * 64, "sample_rate": 24000,
       "frame_rate": 75.0}


def test_same_codec_passes_and_old_datasets_are_encodec():
    check_same_codec(["a", "b"], [prov(ENCODEC), prov({**ENCODEC, "codec_family": "encodec"})])


@pytest.mark.parametrize("other, named", [
    (DAC, "codec_family"),
    ({**ENCODEC, "checkpoint_sha256": "c" * 64}, "checkpoint_sha256"),
    ({**ENCODEC, "model_name": "encodec_48khz", "sample_rate": 48000}, "sample_rate"),
])
def test_different_codecs_are_refused(other, named):
    with pytest.raises(ValueError, match=f"(?s)a and b were tokenized by different codecs.*{named}"):
        check_same_codec(["a", "b"], [prov(ENCODEC), prov(other)])
