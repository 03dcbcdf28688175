"""The codec training loop: seeded segments of the training audio through `TrainableEncodec`, the
loss, Adam with a warmup + cosine schedule, export, evaluation, training.json and the model card.

    corpus files (data.train) ─► mono, soxr to 24 kHz ─► seeded random segments, gain (`SegmentSampler`)
      ─► TrainableEncodec: n_q drawn per batch from the target bandwidths
      ─► loss = w_t L1(wave) + w_f multi-scale mel (codec.losses) + w_c commitment + w_s (-SI-SNR); Adam, cosine lr
      ─► export (weight norm folded) ─► codec.save_model(out): config.json + model.safetensors
      ─► held-out files (data.heldout), trained vs the step-0 weights (random, k-means codebooks),
         per bandwidth: SI-SNR and mel distance (codec.metrics) ─► out/training.json, MODEL_CARD.md

Reproducible from `seed` for a given torch version and thread count (`threads`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from ..config import PRESETS, EncodecConfig
from ..loading import load_model, save_model
from ..losses import MultiScaleMelLoss, neg_si_snr_db, waveform_l1
from ..model import EncodecModel, ModelProvenance
from .card import evaluate, write_card
from .config import TrainConfig
from .data import REPO, load_mono, package_version, packages, resolve
from .trainable import TrainableEncodec


def _print(message: str) -> None:
    print(message, flush=True)


def band_limit(x: torch.Tensor, cutoff_hz: float, rate: int) -> torch.Tensor:
    """x [T] with every FFT bin above cutoff_hz zeroed: audio as if it came from a file sampled at
    2 * cutoff_hz (8 and 16 kHz speech upsampled to 24 kHz has nothing above 4 and 8 kHz)."""
    spec = torch.fft.rfft(x)
    spec[int(cutoff_hz * len(x) / rate) + 1 :] = 0
    return torch.fft.irfft(spec, n=len(x))


def lr_at(step: int, steps: int, lr0: float, lr1: float, warmup: int) -> float:
    """Linear warmup from lr0 / 10 over `warmup` steps, then cosine from lr0 to lr1 (step counts from 1)."""
    if step <= warmup:
        return lr0 * (0.1 + 0.9 * step / warmup)
    t = (step - 1 - warmup) / max(1, steps - 1 - warmup)
    return lr1 + 0.5 * (lr0 - lr1) * (1 + math.cos(math.pi * t))


def build_config(model: dict) -> EncodecConfig:
    """The architecture: the 24 kHz preset with the config's `model` section over it."""
    base = {**PRESETS["24khz"].to_dict(), "codebook_dim": None}  # None: follows hidden_size
    return EncodecConfig.from_dict({**base, **model}, name="tiny-24khz")


class SegmentSampler:
    """Seeded random segments [B, 1, segment] from the training clips, drawn in proportion to length."""

    def __init__(self, clips: list[np.ndarray], segment: int, min_rms: float, gain_db: tuple[float, float],
                 generator: torch.Generator, lowpass_prob: float = 0.0, lowpass_hz: tuple[float, ...] = (),
                 rate: int = 24000):
        self.clips = [torch.from_numpy(c) for c in clips if len(c) >= segment]
        if not self.clips:
            raise ValueError(f"no training clip is at least {segment} samples long")
        self.weights = torch.tensor([len(c) - segment + 1 for c in self.clips], dtype=torch.float64)
        self.segment, self.min_rms, self.gain_db, self.gen = segment, min_rms, gain_db, generator
        self.lowpass_prob, self.lowpass_hz, self.rate = lowpass_prob, tuple(lowpass_hz), rate

    def draw(self) -> torch.Tensor:
        for _ in range(20):
            clip = self.clips[int(torch.multinomial(self.weights, 1, generator=self.gen))]
            start = int(torch.randint(len(clip) - self.segment + 1, (1,), generator=self.gen))
            x = clip[start : start + self.segment]
            if x.pow(2).mean().sqrt() >= self.min_rms:
                break
        lo, hi = self.gain_db
        gain = 10 ** ((lo + (hi - lo) * float(torch.rand((), generator=self.gen))) / 20)
        sign = 1.0 if float(torch.rand((), generator=self.gen)) < 0.5 else -1.0
        if self.lowpass_hz and float(torch.rand((), generator=self.gen)) < self.lowpass_prob:
            cutoff = self.lowpass_hz[int(torch.randint(len(self.lowpass_hz), (1,), generator=self.gen))]
            x = band_limit(x, cutoff, self.rate)
        return (x * gain * sign).clamp(-1.0, 1.0)

    def batch(self, size: int) -> torch.Tensor:
        return torch.stack([self.draw() for _ in range(size)])[:, None]


def train(cfg: TrainConfig, out: Path, heldout_eval: bool = True, command: str = "", log=_print) -> dict:
    """Train, save to `out`, evaluate on valid (and held-out unless heldout_eval is False: runs that
    choose settings must not see the held-out files), write training.json (+ MODEL_CARD.md); returns
    the record written to training.json. command: how the run was started (recorded)."""
    torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(int(cfg.seed))
    gen = torch.Generator().manual_seed(int(cfg.seed))
    config = build_config(cfg.model)
    rate, data, tcfg, wts = config.sampling_rate, cfg.data, cfg.train, cfg.loss
    files = resolve(dataclasses.asdict(data))
    train_clips = [load_mono(item, rate) for item in files["train"]]
    valid = {item.name: load_mono(item, rate) for item in files["valid"]}
    heldout = {item.name: load_mono(item, rate) for item in files["heldout"]}
    log(f"[train] {len(train_clips)} training files ({sum(map(len, train_clips)) / rate / 60:.1f} min), "
        f"{len(valid)} valid, {len(heldout)} held out")
    segment = round(data.segment_s * rate / config.hop_length) * config.hop_length
    sampler = SegmentSampler(train_clips, segment, data.min_rms, tuple(data.gain_db), gen,
                             float(data.lowpass_prob), tuple(data.lowpass_hz or ()), rate)

    model = TrainableEncodec(config, dead_threshold=float(tcfg.dead_threshold))
    init_record = None
    with torch.no_grad():
        latents = model.encode_latents(sampler.batch(int(tcfg.init_segments)))
        model.ema.kmeans_init(latents.permute(0, 2, 1).reshape(-1, latents.shape[1]), gen)
    step0 = model.export()
    if tcfg.init_from:  # a second stage: start from an earlier run's weights and codebooks
        init_record = init_from(model, REPO / tcfg.init_from)
    step0.provenance = ModelProvenance("step 0 (random weights, k-means codebooks)", None, True)

    mel_loss = MultiScaleMelLoss(rate)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=float(tcfg.lr),
                           betas=tuple(tcfg.betas))
    steps, lr0, lr1 = int(tcfg.steps), float(tcfg.lr), float(tcfg.lr_final)
    warmup = int(tcfg.warmup_steps)
    n_qs = [config.num_quantizers_for(b) for b in config.target_bandwidths]
    history, start = [], time.time()
    cpu_start = time.process_time()
    model.train()
    for step in range(1, steps + 1):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr0, lr1, warmup)
        x = sampler.batch(int(data.batch_size))
        n_q = n_qs[int(torch.randint(len(n_qs), (1,), generator=gen))]
        recon, commit, _ = model(x, n_q, gen)
        l_t, l_f, l_s = waveform_l1(x, recon), mel_loss(x, recon), neg_si_snr_db(x, recon)
        loss = (wts.waveform * l_t + wts.mel * l_f + wts.commitment * commit
                + wts.si_snr * l_s)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), float(tcfg.grad_clip))
        opt.step()
        if step % int(tcfg.log_every) == 0 or step == steps:
            elapsed = time.time() - start
            row = {"step": step, "n_q": n_q, "loss": float(loss.detach()), "l1": float(l_t.detach()),
                   "mel": float(l_f.detach()), "commit": float(commit.detach()),
                   "si_snr": -float(l_s.detach()), "elapsed_s": round(elapsed, 1)}
            history.append(row)
            eta = elapsed / step * (steps - step)
            if step % int(tcfg.save_every or steps) == 0 and step < steps:
                save_model(model.export(), out)  # a usable partial model if the run is cut short
            log(f"[train] step {step}/{steps} loss {row['loss']:.3f} l1 {row['l1']:.4f} "
                f"mel {row['mel']:.3f} commit {row['commit']:.4f} si-snr {row['si_snr']:.2f} n_q {n_q} | "
                f"{elapsed / 60:.1f} min, eta {eta / 60:.1f} min")
    wall, cpu = time.time() - start, time.process_time() - cpu_start

    trained = model.export()
    save_model(trained, out)
    record = {
        "seed": cfg.seed, "steps": steps, "threads": cfg.threads, "wall_time_s": round(wall, 1),
        "cpu_time_s": round(cpu, 1), "machine": machine(), "torch": torch.__version__,
        "config": config.to_dict(), "weights_license": cfg.weights_license, "init_record": init_record,
        "package_versions": {name: package_version(name) for name in packages(dataclasses.asdict(data))},
        "data": data.settings(),
        "files": {split: [{**f.to_dict(), "seconds": round(len(c) / rate, 2)} for f, c in zip(items, clips)]
                  for split, items, clips in (("train", files["train"], train_clips),
                                              ("valid", files["valid"], valid.values()),
                                              ("heldout", files["heldout"], heldout.values()))},
        "train": dataclasses.asdict(tcfg), "loss_weights": dataclasses.asdict(wts), "history": history,
        "train_seconds": round(sum(len(c) for c in train_clips) / rate, 1),
        "valid_seconds": round(sum(len(c) for c in valid.values()) / rate, 1),
        "heldout_seconds": round(sum(len(c) for c in heldout.values()) / rate, 1),
        "valid_eval": evaluate(trained_model := load_trained(out), valid),
        "eval": ({"trained": evaluate(trained_model, heldout), "random": evaluate(step0, heldout)}
                 if heldout_eval else None),
        "command": command,
    }
    (out / "training.json").write_text(json.dumps(record, indent=1))
    if heldout_eval:
        write_card(record, out / "MODEL_CARD.md")
    return record


def init_from(model: TrainableEncodec, directory: Path) -> dict:
    """Load a `codec.save_model` directory's weights (weight-norm pairs as saved) and codebooks into
    `model`; the EMA statistics restart from the codebooks (count 2 x dead_threshold each). Returns
    the directory's training.json (its config must match `model`'s)."""
    from safetensors.torch import load_file

    record = json.loads((directory / "training.json").read_text())
    if EncodecConfig.from_dict(record["config"]).to_dict() != model.config.to_dict():
        raise ValueError(f"{directory} holds a different architecture than this config")
    state = {k: v for k, v in load_file(str(directory / "model.safetensors")).items()
             if not k.endswith(("codebook.inited", "codebook.cluster_size", "codebook.embed_avg"))}
    model.model.load_state_dict(state, strict=True)
    count = 2.0 * model.ema.dead_threshold
    for k, embed in enumerate(model.ema.codebooks):
        model.ema.cluster_size[k].fill_(count)
        model.ema.embed_avg[k].copy_(embed * count)
    return {key: value for key, value in record.items() if key != "history"}


def load_trained(out: Path) -> EncodecModel:
    return load_model(out)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores visible (shared with other jobs), {platform.system()}"


