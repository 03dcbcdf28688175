"""Issue 31's evidence on held-out speech: random:hubert_base layer 9 + centroids fitted by `jobs.fit_kmeans`
on other speech clips give, item by item in one mixed-length batch, exactly the cluster ids of transformers'
HubertModel (same weights) run on each item alone and quantized by the same centroids with the same search
(`codec.codewords.nearest`). A flipped id fails the test and names the frame's distance margin."""

from __future__ import annotations

import shutil

import pytest
import torch

from codec.codewords import nearest
from codec.semantic import SemanticSpec, load_semantic
from jobs.fit_kmeans import main as fit_kmeans_main
from tests.codec.hubert.reference import reference_features, reference_of
from tests.conftest import corpus_file, real_audio

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FIT_ON = ["speech/alsa_front_center_48k.wav", "speech/cards_005_16k.wav", "speech/fillets_en_deu-l-tovarisci_22k.ogg",
          "speech/asterisk_en_allison_demo-congrats_8k_32kbps.mp3"]
HELD_OUT = ["speech/cmu_arctic_a0007_16k.wav", "speech/librivox_0890_16k.flac", "speech/klettres_en_saw_44k.ogg"]
SECONDS = 2.0


def margins(features: torch.Tensor, centroids: torch.Tensor, ours: torch.Tensor, theirs: torch.Tensor) -> list:
    """(frame, our id, their id, |d(ours) - d(theirs)| / d(theirs)) for each frame whose ids differ."""
    out = []
    for t in (ours != theirs).nonzero().flatten().tolist():
        d = (features[t] - centroids).pow(2).sum(1)
        out.append((t, int(ours[t]), int(theirs[t]), float((d[ours[t]] - d[theirs[t]]).abs() / d[theirs[t]])))
    return out


def test_held_out_speech_ids_equal_transformers_items_alone(tmp_path):
    for rel in FIT_ON:
        shutil.copy(corpus_file(rel), tmp_path / rel.split("/")[-1])
    centroids = tmp_path / "hubert_base_l9_k64.safetensors"
    assert fit_kmeans_main(["--input", str(tmp_path), "--output", str(centroids), "--model", "random:hubert_base",
                            "--layer", "9", "--k", "64", "--seed", "0", "--max-item-seconds", "2",
                            "--max-seconds", "8", "--batch-size", "256", "--steps", "20"]) == 0
    tok = load_semantic(SemanticSpec("random:hubert_base", 9, str(centroids)))
    clips = [torch.from_numpy(real_audio(rel, 16000, 1, seconds=SECONDS))[0] for rel in HELD_OUT]
    lengths = [len(c) - 97 * b for b, c in enumerate(clips)]  # mixed lengths, none on a hop boundary
    audio = torch.zeros(len(clips), 1, max(lengths))
    for b, (clip, n) in enumerate(zip(clips, lengths)):
        audio[b, 0, :n] = clip[:n]
    ref = reference_of(tok.model)
    codewords = tok.centroids.vectors
    theirs = [nearest(reference_features(ref, tok.model, audio[b, 0, :n], 9), codewords) for b, n in enumerate(lengths)]
    distinct = set(torch.cat(theirs).tolist())
    assert len(distinct) >= 8, f"the held-out speech uses only {len(distinct)} of 64 clusters: the check would be weak"
    for plan in ("cpu", "cuda"):  # one item per pass, and the whole batch with length masks
        ours = tok.set_batch_plan(plan).encode(audio, lengths)
        feats = tok.features(audio, lengths)
        for b, n in enumerate(lengths):
            assert ours[b].shape == (1, (n - 400) // 320 + 1)
            flipped = margins(feats[b], codewords, ours[b][0], theirs[b])
            assert not flipped, f"{HELD_OUT[b]} ({plan} plan): ids differ at (frame, ours, theirs, margin) {flipped}"
