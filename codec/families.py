"""What the driver may know of each codec family without importing torch: its name, the `random:`
presets it builds, the `model_type` of its directories' config.json, the checkpoint file suffixes it
owns, and a word that marks its hub ids. Standard library only (`pipeline.preflight` reads it before
any model loads); `registry.py` pairs each entry with its loader. Adding a family adds one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FamilyInfo:
    name: str
    random_presets: tuple[str, ...]  # `random:<preset>` specs it builds
    model_type: str  # transformers' config.json model_type of its directories
    file_suffixes: tuple[str, ...]  # original checkpoint files it owns (any other: EnCodec, the default)
    hub_word: str  # a hub id (owner/name) containing this word is the family's ("" : the default family)


ENCODEC = FamilyInfo("encodec", ("24khz", "32khz", "48khz"), "encodec", (".th",), "")
DAC = FamilyInfo("dac", ("dac_44khz", "dac_24khz", "dac_16khz"), "dac", (".pth",), "dac")
MIMI = FamilyInfo("mimi", ("mimi",), "mimi", (".safetensors",), "mimi")

KNOWN: tuple[FamilyInfo, ...] = (ENCODEC, DAC, MIMI)

# Semantic tokenizers (codec/semantic.py): not acoustic codecs, so not in KNOWN (`load_codec` never loads them).
HUBERT = FamilyInfo("hubert", ("hubert_base", "hubert_large"), "hubert", (), "hubert")
SEMANTIC: tuple[FamilyInfo, ...] = (HUBERT,)


def semantic_family_of(source: str) -> FamilyInfo:
    """The semantic family of a model source (random:<preset>, or anything else: HuBERT, the only one);
    ValueError for an unknown random preset, naming the choices."""
    if source.startswith("random:"):
        preset = source.split(":")[1]
        for family in SEMANTIC:
            if preset in family.random_presets:
                return family
        raise ValueError(f"unknown semantic random preset {source!r}; choose one of "
                         f"{[f'random:{p}' for f in SEMANTIC for p in f.random_presets]}")
    return HUBERT


def random_choices() -> list[str]:
    return [f"random:{p}" for f in KNOWN for p in f.random_presets]


def family_of_random(spec: str) -> FamilyInfo:
    """The family of `random:<preset>[:seed=N]`; ValueError naming the choices."""
    preset = spec.split(":")[1] if ":" in spec else ""
    for family in KNOWN:
        if preset in family.random_presets:
            return family
    raise ValueError(f"unknown random preset {spec!r}; choose one of {random_choices()}")


def family_of_model_type(model_type: str) -> FamilyInfo:
    for family in KNOWN:
        if family.model_type == model_type:
            return family
    raise ValueError(f"model_type {model_type!r} is not a supported codec; supported: {[f.model_type for f in KNOWN]}")


def family_of_file(suffix: str) -> FamilyInfo:
    return next((f for f in KNOWN if suffix in f.file_suffixes), ENCODEC)


def family_of_hub_id(repo_id: str) -> FamilyInfo:
    return next((f for f in KNOWN if f.hub_word and f.hub_word in repo_id.lower()), ENCODEC)
