"""The typed verify records: CheckResult / BandwidthScores JSON round trip, the top bandwidth, Scores."""

import json
import math

import numpy as np

from codec import metrics
from pipeline.verify.result import BandwidthScores, CheckResult, Media


def _scores(n_q, snr):
    return BandwidthScores(n_q=n_q, si_snr_db=snr, mel_distance_db=7.25, lsd_db=3.5, code_agreement=0.875)


def test_round_trip_through_json():
    r = CheckResult(key="a#1", source="s/a.tar", num_samples=24000, duration_s=1.0, start_s=10.0,
                    code_agreement_all=0.5, bandwidths={1.5: _scores(2, -3.25), 6.0: _scores(8, 4.5)})
    text = json.dumps(r.to_json())
    data = json.loads(text)
    assert list(data["bandwidths"]) == ["1.5", "6.0"] and data["bandwidths"]["6.0"]["n_q"] == 8
    back = CheckResult.from_json(data)
    assert back == r and back.bandwidths[6.0].si_snr_db == 4.5 and isinstance(back.num_samples, int)
    assert back.to_json() == r.to_json()


def test_round_trip_keeps_nan_and_drops_media():
    silent = _scores(2, math.nan)
    r = CheckResult(key="b", source="s", num_samples=5, duration_s=0.1, start_s=0.0, bandwidths={1.5: silent},
                    media=Media(np.zeros((1, 5), np.float32), {1.5: np.zeros((1, 5), np.float32)}))
    data = json.loads(json.dumps(r.to_json(), allow_nan=False))  # NaN becomes null: strict JSON
    assert data["code_agreement_all"] is None and data["bandwidths"]["1.5"]["si_snr_db"] is None
    assert "media" not in data
    back = CheckResult.from_json(data)
    assert math.isnan(back.code_agreement_all) and math.isnan(back.bandwidths[1.5].si_snr_db)
    assert back.media is None and back.bandwidths[1.5].mel_distance_db == 7.25
    unverified = CheckResult(key="c", source="s", num_samples=5, duration_s=0.1, start_s=0.0,
                             status="missing_original", detail="gone")
    assert CheckResult.from_json(json.loads(json.dumps(unverified.to_json()))).to_json() == unverified.to_json()


def test_top_scores_is_the_highest_bandwidth():
    r = CheckResult(key="a", source="s", num_samples=1, duration_s=0.0, start_s=0.0,
                    bandwidths={6.0: _scores(8, 1.0), 1.5: _scores(2, 2.0), 3.0: _scores(4, 3.0)})
    assert r.top_scores().n_q == 8
    assert CheckResult(key="a", source="s", num_samples=1, duration_s=0.0, start_s=0.0).top_scores() is None


def test_bandwidth_scores_from_metrics():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(4800)
    y = x + 0.1 * rng.standard_normal(4800)
    s = metrics.all_metrics(x, y, 24000)
    b = BandwidthScores.from_scores(4, s, 0.25)
    assert (b.n_q, b.code_agreement) == (4, 0.25)
    assert (b.si_snr_db, b.mel_distance_db, b.lsd_db) == (metrics.si_snr_db(x, y), metrics.mel_distance_db(x, y, 24000),
                                                          metrics.lsd_db(x, y, 24000))
