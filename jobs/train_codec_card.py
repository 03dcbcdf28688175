"""Held-out evaluation of a codec per bandwidth, and the model card written from a training record."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from codec import EncodecModel
from pipeline.verify.metrics import mel_distance_db, si_snr_db


def evaluate(model: EncodecModel, clips: dict[str, np.ndarray]) -> dict:
    """Encode + decode each clip (mono float32 [T] at the model rate) at every target bandwidth:
    {bandwidth: {"si_snr_db": mean, "mel_distance_db": mean, "per_file": {file: [si_snr, mel]}}}."""
    rate = model.config.sampling_rate
    out = {}
    for bw in model.config.target_bandwidths:
        per_file = {}
        for name, clip in clips.items():
            audio = torch.from_numpy(clip)[None, None]
            decoded = model.decode(model.encode(audio, bandwidth=bw))[0][0].numpy()
            per_file[name] = [round(si_snr_db(clip, decoded), 2), round(mel_distance_db(clip, decoded, rate), 2)]
        out[str(bw)] = {
            "si_snr_db": round(float(np.mean([v[0] for v in per_file.values()])), 2),
            "mel_distance_db": round(float(np.mean([v[1] for v in per_file.values()])), 2),
            "per_file": per_file,
        }
    return out


def write_card(record: dict, path: Path) -> None:
    cfg, data = record["config"], record["data"]
    n_q = {bw: _n_q(cfg, bw) for bw in cfg["target_bandwidths"]}
    size_mb = (path.parent / "model.safetensors").stat().st_size / 1e6
    lines = [
        "# tiny-24khz: a small EnCodec trained by audiotok",
        "",
        "A 24 kHz mono EnCodec-architecture codec (our `codec/`, transformers layout) trained here on a",
        "few minutes of permissively licensed audio, so that offline demos and decode-verify checks use",
        "weights whose reconstructions resemble their input. It is **not** a substitute for",
        "`facebook/encodec_24khz`: quality is far lower (see the table) and it has seen ~2 minutes of",
        "audio. Use it for tests, demos and pipeline checks only.",
        "",
        "```python",
        "from codec import load_model",
        'model = load_model("models/tiny-24khz")      # transformers: EncodecModel.from_pretrained(same dir)',
        "```",
        "",
        "## Architecture",
        "",
        f"num_filters {cfg['num_filters']}, hidden_size {cfg['hidden_size']}, codebook_size {cfg['codebook_size']}, "
        f"LSTM layers {cfg['num_lstm_layers']}, ratios {cfg['upsampling_ratios']} (hop 320, 75 frames/s), causal, "
        f"weight norm. Bandwidths (kbps → codebooks): "
        + ", ".join(f"{bw} → {q}" for bw, q in n_q.items())
        + f". Weights: {size_mb:.2f} MB (`model.safetensors`, fp32).",
        "",
        "## Training",
        "",
        (f"* Command: `{record['command']}` (config `configs/train_tiny.yaml`, seed {record['seed']}, "
        f"torch threads: {record['threads']}, torch {record['torch']})."),
        (f"* {record['steps']} steps of {data['batch_size']} random {data['segment_s']} s segments "
        f"(random gain {data['gain_db']} dB and polarity); Adam lr {record['train']['lr']} → "
        f"{record['train']['lr_final']} (cosine), betas {record['train']['betas']}, grad clip {record['train']['grad_clip']}."),
        (f"* Losses: L1 waveform (×{record['loss_weights']['waveform']}) + multi-scale log-mel, windows 64…2048 "
        f"(×{record['loss_weights']['mel']}) + commitment (×{record['loss_weights']['commitment']}); no adversarial "
        "losses. EMA codebooks (decay 0.99, dead codewords re-drawn), k-means initialisation on "
        f"{record['train']['init_segments']} segments, straight-through estimator, quantizer dropout "
        "(n_q drawn per batch from the target bandwidths). Convolutions start from N(0, 1/fan_in) "
        "weights and zero biases (with PyTorch's default init the latents hardly depended on the audio "
        "and training stalled)."),
        (f"* Wall time of the training loop {record['wall_time_s'] / 60:.1f} min ({record['cpu_time_s'] / 60:.1f} min "
        f"of process CPU time) on {record['machine']}; no GPU. Decoding the data and the held-out evaluation "
        "add about a minute."),
        f"* Final training losses: {_last(record)}.",
        "",
        "## Data",
        "",
        (f"Training: {record['train_seconds']} s; held out (never trained on): {record['heldout_seconds']} s. All from "
        "the team's test corpus (`shared/corpus`, see its PROVENANCE.md), all under permissive licences that "
        "allow redistributing a derived model (copyleft and non-commercial files, e.g. the CC-BY-NC "
        "`encodec_test_*.wav`, were left out). Mono mix, soxr HQ to 24 kHz."),
        "",
        "| split | file | licence |",
        "|---|---|---|",
        *[f"| train | `{it['file']}` | {it['licence']} |" for it in data["train"]],
        *[f"| held out | `{it['file']}` | {it['licence']} |" for it in data["heldout"]],
        "",
        "## Quality on the held-out files",
        "",
        "Each file encoded and decoded whole through `codec` (`encode` → `decode`), metrics from",
        "`pipeline.verify.metrics` against the 24 kHz mono input, averaged over the files. *Random* is the same",
        "architecture at step 0 (seeded random weights, codebooks k-means-fitted to its own latents).",
        "",
        "| kbps | codebooks | SI-SNR dB (trained) | SI-SNR dB (random) | mel distance dB (trained) | mel distance dB (random) |",
        "|---|---|---|---|---|---|",
    ]
    ev_t, ev_r = record["eval"]["trained"], record["eval"]["random"]
    for bw in cfg["target_bandwidths"]:
        t, r = ev_t[str(float(bw))], ev_r[str(float(bw))]
        lines.append(f"| {bw} | {n_q[bw]} | {t['si_snr_db']:.2f} | {r['si_snr_db']:.2f} | "
                     f"{t['mel_distance_db']:.2f} | {r['mel_distance_db']:.2f} |")
    top = ev_t[str(float(cfg["target_bandwidths"][-1]))]["per_file"]
    lines += ["", f"Per file at {cfg['target_bandwidths'][-1]} kbps (trained): "
              + "; ".join(f"`{Path(f).name}` {v[0]:.1f} dB SI-SNR, {v[1]:.2f} dB mel" for f, v in top.items()) + ".",
              "", ("SI-SNR: higher is better; mel distance (multi-scale log-mel, dB): lower is better. "
               "The model reproduces the spectral envelope, not the waveform's phase: its SI-SNR is "
               "negative (better than random weights by tens of dB, but far from a real codec's +5 dB "
               "or more), and its decoded audio trails the input by up to a few ms. "
              "`tests/codec/test_tiny_quality.py` checks these files through the codec API."), ""]
    path.write_text("\n".join(lines))


def _n_q(cfg: dict, bw: float) -> int:
    import math

    frame_rate = math.ceil(cfg["sampling_rate"] / math.prod(cfg["upsampling_ratios"]))
    return int(max(1, math.floor(bw * 1000 / (math.log2(cfg["codebook_size"]) * frame_rate))))


def _last(record: dict) -> str:
    rows = record["history"][-5:]
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in ("l1", "mel", "commit")}
    return f"L1 {mean['l1']:.4f}, mel {mean['mel']:.3f}, commitment {mean['commit']:.4f} (mean of the last {len(rows)} logs)"
