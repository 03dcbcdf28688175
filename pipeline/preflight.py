"""Driver-side checks of a tokenize run, before Ray starts: each mistake is one line within seconds.

    check_model        the model source names something that can load (a hub id: in the local cache, or
                       found on the hub within HUB_TIMEOUT_S; HF_HUB_OFFLINE=1 means the cache only),
                       and the bandwidths are ones that model has (when its config is at hand)
    check_output       --output is a directory, or a path where one can be made
    check_committed    an output that already holds committed shards was made with the same settings
    check_hub_input    an `hf:<hub name>` input needs a reachable hub (bounded, as the model's lookup)
    check_semantic     a `semantic:` tokenizer's centroids file is readable ([k, dim] from its header, k
                       within int16, dim the model's width), its layer within the model's (when the model
                       is a random preset or a local directory: known without loading it)

Raises ConfigError / InputError (exit status 2). The weights themselves load in the actors.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import logging
import os
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from .config import JobConfig
from .errors import ConfigError, InputError

if TYPE_CHECKING:
    from .manifest_snapshot import ManifestState

HUB_TIMEOUT_S = 2.5  # one bounded hub lookup per hub-id model source

# job_config keys whose change gives other tokens, rows or columns than those committed
TOKEN_SETTINGS = ("bandwidths", "precision", "batch_plan", "audio.max_duration_s", "audio.resample_quality",
                  "audio.resample_on", "source.metadata_columns")


def _bounded(call: Callable[[], Any], timeout_s: float) -> tuple[bool, Any]:
    """(finished, result or exception) of `call` run on a daemon thread for at most `timeout_s`."""
    box: list = []

    def run():
        try:
            box.append(call())
        except Exception as exc:  # reported to the caller
            box.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout_s)
    return (bool(box), box[0] if box else None)


def is_hub_id(source: str) -> bool:
    return source.count("/") == 1 and not source.startswith((".", "/", "~")) and ":" not in source


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_unreachable(timeout_s: float = HUB_TIMEOUT_S) -> str | None:
    """None when the hub (HF_ENDPOINT) accepts a TCP connection within `timeout_s`, else why not. A plain
    connect, name lookup included, bounded: no network answers here at once, not in a hub client's retries."""
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    done, error = _bounded(lambda: socket.create_connection((endpoint.hostname, endpoint.port or 443),
                                                            timeout=timeout_s).close(), timeout_s)
    if done and not isinstance(error, Exception):
        return None
    return f"the hub ({endpoint.hostname}) cannot be reached ({error if done else f'no answer in {timeout_s:g} s'})"


def check_hub_input(input_spec: str, timeout_s: float = HUB_TIMEOUT_S) -> None:
    """InputError when `hf:<hub name>` must be listed from a hub that cannot be reached (HF_HUB_OFFLINE=1:
    the datasets cache only, not checked here)."""
    from .sources.common import is_remote

    name = input_spec[3:] if input_spec.startswith("hf:") else None
    if (not name or hub_offline() or is_remote(name) or os.path.exists(os.path.expanduser(name))
            or name.startswith(("/", ".", "~")) or name.count("/") > 1 or any(c in name for c in "*?[{")
            or name.lower().endswith((".parquet", ".arrow"))):
        return
    unreachable = hub_unreachable(timeout_s)
    if unreachable:
        raise InputError(f"input {input_spec}: not a local path, and {unreachable}; give a local save_to_disk "
                         "directory, Parquet files or an audiofolder (hf:/path/...), or set HF_HUB_OFFLINE=1 to "
                         "read the datasets cache only")


def _hub_config(repo_id: str, timeout_s: float) -> dict | None:
    """The repo's config.json from the local hub cache, else from the hub within `timeout_s`;
    ConfigError when neither has it."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:
        raise ConfigError(f"model {repo_id!r} is a hub id but huggingface_hub is not installed "
                          f"(pip install huggingface_hub), or give a local directory") from exc
    try:
        return json.loads(Path(hf_hub_download(repo_id, "config.json", local_files_only=True)).read_text())
    except Exception:  # not cached
        pass
    if hub_offline():
        raise ConfigError(f"model {repo_id!r} is not in the local hub cache and HF_HUB_OFFLINE is set; "
                          "download it first or give a local directory or checkpoint file")
    unreachable = hub_unreachable(timeout_s)
    if unreachable:
        raise ConfigError(f"model {repo_id!r} is not in the local hub cache and {unreachable}; check the network, "
                          "or give a local directory or checkpoint file")
    hub_log = logging.getLogger("huggingface_hub")
    level = hub_log.level
    hub_log.setLevel(logging.ERROR)  # its retry lines would break the one-line rule
    done, result = _bounded(lambda: hf_hub_download(repo_id, "config.json", etag_timeout=timeout_s), timeout_s)
    if done:  # else the lookup runs on, silenced, on its daemon thread
        hub_log.setLevel(level)
    if not done:
        raise ConfigError(f"model {repo_id!r}: the hub did not answer within {timeout_s:g} s and the model is "
                          "not in the local cache; check the network, or give a local directory or checkpoint file")
    if isinstance(result, Exception):
        raise ConfigError(f"model {repo_id!r} cannot be found in the local hub cache nor on the hub "
                          f"({type(result).__name__}: {str(result).splitlines()[0] if str(result) else ''})")
    return json.loads(Path(result).read_text())


def _tiny_models() -> dict[str, Path]:
    """codec.loading.TINY_MODELS (tiny:<name> -> <repo>/models/tiny-<name>), found without importing torch."""
    spec = importlib.util.find_spec("codec")
    models = Path(spec.origin).resolve().parents[1] / "models" if spec and spec.origin else Path("models")
    return {f"tiny:{p.name.removeprefix('tiny-')}": p for p in sorted(models.glob("tiny-*"))}


def _codec_module(name: str):
    """codec.<name> (a module that imports only the standard library: config, families), without
    importing torch (codec/__init__ does) when the package is not loaded yet: the checks stay within
    seconds on a loaded machine."""
    if f"codec.{name}" in sys.modules:
        return sys.modules[f"codec.{name}"]
    spec = importlib.util.find_spec("codec")
    path = Path(spec.origin).with_name(f"{name}.py") if spec and spec.origin else None
    if path is None or not path.is_file():
        return importlib.import_module(f"codec.{name}")
    module_spec = importlib.util.spec_from_file_location(f"_audiotok_preflight_codec_{name}", path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_spec.name] = module  # dataclasses look their module up
    module_spec.loader.exec_module(module)
    return module


def _codec_config(source: str, timeout_s: float) -> dict | None:
    """The codec config (transformers' config.json) `source` names; ConfigError when `source` names
    nothing loadable."""
    presets = _codec_module("config").PRESETS
    families = _codec_module("families")
    tiny = _tiny_models()

    if source.startswith("random:"):
        parts = source.split(":")
        if len(parts) < 2 or len(parts) > 3 or (len(parts) == 3 and not parts[2].removeprefix("seed=").isdigit()):
            raise ConfigError(f"model {source!r}: unknown random model; choose one of "
                              f"{families.random_choices()} (optionally :seed=N)")
        try:
            family = families.family_of_random(source)
        except ValueError:
            raise ConfigError(f"model {source!r}: unknown random model; choose one of "
                              f"{families.random_choices()} (optionally :seed=N)") from None
        return presets[parts[1]].to_dict() if family is families.ENCODEC else {"model_type": family.model_type}
    if source.startswith("tiny:"):
        if source not in tiny or not tiny[source].is_dir():
            raise ConfigError(f"model {source!r}: no such tiny model; shipped: "
                              f"{[k for k, v in tiny.items() if v.is_dir()]}")
        return json.loads((tiny[source] / "config.json").read_text())
    path = Path(source).expanduser()
    if path.is_dir():
        weights = [n for n in ("model.safetensors", "pytorch_model.bin") if (path / n).is_file()]
        if not (path / "config.json").is_file() or not weights:
            raise ConfigError(f"model {source!r}: a model directory needs config.json and model.safetensors "
                              "(or pytorch_model.bin)")
        try:
            return json.loads((path / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"model {source!r}: cannot read its config.json ({exc})") from exc
    if path.is_file():  # an original checkpoint: only loading it tells (a few seconds for EnCodec's sizes)
        from codec.registry import load_codec

        try:
            model = load_codec(path)
            return model.config_dict() if model.family == "encodec" else {"model_type": model.family}
        except Exception as exc:  # torch.load and the key maps raise many types for a file that is not one
            raise ConfigError(f"model {source!r} is not a checkpoint that loads ({type(exc).__name__}: "
                              f"{' '.join(str(exc).split())[:300]})") from None
    if is_hub_id(source):
        return _hub_config(source, timeout_s)
    raise ConfigError(f"model {source!r} not found: not a local directory or file, not a hub id (org/name), "
                      f"not tiny:24khz or one of {_codec_module('families').random_choices()}")


def check_model(cfg: JobConfig, timeout_s: float = HUB_TIMEOUT_S) -> list[str]:
    """ConfigError unless one of cfg.model / cfg.model_fallback can be found, and has cfg.bandwidths.

    A config's `model` may fail when it has a `model_fallback` (the fallback is then checked, and the
    returned line says why the first was skipped); an explicit --model has no fallback (jobs.tokenize)."""
    config_cls = _codec_module("config").EncodecConfig

    sources = [cfg.model] + ([cfg.model_fallback] if cfg.model_fallback else [])
    skipped = []
    for i, source in enumerate(sources):
        try:
            config = _codec_config(str(source), timeout_s)
        except ConfigError as exc:
            if i + 1 < len(sources):
                skipped.append(str(exc))
                continue
            raise ConfigError("; ".join([*skipped, str(exc)])) from None
        if config is not None and config.get("model_type", "encodec") == "encodec":
            # other families' bandwidths are checked when the model loads in the actor
            have = config_cls.from_dict(config).target_bandwidths
            wrong = [b for b in cfg.bandwidths if float(b) not in have]
            if wrong:
                raise ConfigError(f"bandwidths {wrong} kbps are not ones model {source!r} has; it has {list(have)}")
        return skipped
    return skipped


def _hubert_presets() -> dict:
    """codec/hubert/config.py's PRESETS, without importing torch (that module imports the standard library)."""
    spec = importlib.util.find_spec("codec")
    path = Path(spec.origin).parent / "hubert" / "config.py"
    module_spec = importlib.util.spec_from_file_location("_audiotok_preflight_hubert_config", path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_spec.name] = module
    module_spec.loader.exec_module(module)
    return module.PRESETS


def centroids_shape(path: str) -> tuple[int, int]:
    """(k, dim) from the header of a .safetensors ('centroids' tensor) or .npy file; ConfigError if unreadable."""
    import struct

    import numpy as np

    p = Path(path).expanduser()
    try:
        with open(p, "rb") as f:
            if p.suffix == ".safetensors":
                size = struct.unpack("<Q", f.read(8))[0]
                if size > 100 << 20:
                    raise ValueError(f"header of {size} bytes")
                header = json.loads(f.read(size))
                if "centroids" not in header:
                    names = sorted(k for k in header if k != "__metadata__")
                    raise ValueError(f"no 'centroids' tensor (tensors: {names})")
                shape = header["centroids"]["shape"]
            elif p.suffix == ".npy":
                version = np.lib.format.read_magic(f)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(f)
                if dtype.kind != "f":
                    raise ValueError(f"it holds {dtype} values; centroids must be floats")
            else:
                raise ValueError("centroids must be a .safetensors (jobs.fit_kmeans) or a .npy [k, dim] float array")
    except (OSError, ValueError, struct.error, KeyError, TypeError) as exc:
        raise ConfigError(f"semantic.centroids {path}: cannot read it ({exc})") from None
    if len(shape) != 2 or min(shape) < 1:
        raise ConfigError(f"semantic.centroids {path}: centroids must be [k, dim]; got shape {list(shape)}")
    return int(shape[0]), int(shape[1])


def check_semantic(cfg: JobConfig) -> None:
    """ConfigError for a `semantic` tokenizer that cannot load: see the module docstring."""
    sem = cfg.semantic
    if sem is None:
        return
    k, dim = centroids_shape(sem.centroids)
    if k > 32767:
        raise ConfigError(f"semantic.centroids {sem.centroids}: {k} clusters do not fit the int16 column "
                          "semantic_codes; use at most 32767")
    config = None
    if sem.model.startswith("random:"):
        presets = _hubert_presets()
        name = sem.model.split(":")[1]
        if name not in presets:
            raise ConfigError(f"semantic.model {sem.model!r}: unknown random model; choose one of "
                              f"{[f'random:{p}' for p in presets]} (optionally :seed=N)")
        config = dataclasses.asdict(presets[name])
    elif Path(sem.model).expanduser().is_dir():
        try:
            config = json.loads((Path(sem.model).expanduser() / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"semantic.model {sem.model}: cannot read its config.json ({exc})") from None
    elif not is_hub_id(sem.model):
        raise ConfigError(f"semantic.model {sem.model!r} not found: not a local directory, not a hub id (org/name), "
                          "not random:hubert_base or random:hubert_large")
    if config is not None:
        layers, width = config.get("num_hidden_layers"), config.get("hidden_size")
        if isinstance(layers, int) and not 0 <= sem.layer <= layers:
            raise ConfigError(f"semantic.layer {sem.layer} is out of range: {sem.model} has hidden_states "
                              f"0..{layers}")
        if isinstance(width, int) and width != dim:
            raise ConfigError(f"semantic.centroids {sem.centroids} are {dim} wide; {sem.model}'s features are "
                              f"{width} wide")


def is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def check_output(out_dir: str) -> None:
    """InputError when a local `out_dir` is a file, lies under a file, or cannot be created."""
    if not is_local(out_dir):
        return
    path = Path(out_dir.removeprefix("file://")).expanduser()
    if path.exists() and not path.is_dir():
        raise InputError(f"--output {out_dir} is a file; give a directory (it is created when missing)")
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"--output {out_dir}: {parent} is a file, so the directory cannot be created")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"--output {out_dir}: {parent} is not writable")


def _get(data: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    return data


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list) and all(isinstance(x, (int, float)) for x in a + b):
        return sorted(map(float, a)) == sorted(map(float, b))
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def settings_changed(committed: dict, cfg: JobConfig) -> list[str]:
    """'key: committed -> now' for each token-affecting setting of `cfg` that differs from the
    `_provenance.json` record `committed` (its job_config and model)."""
    from .config import to_dict

    old_job, now = committed.get("job_config") or {}, to_dict(cfg)
    changes = []
    if cfg.model not in (old_job.get("model"), committed.get("model_source")):
        changes.append(f"model: {committed.get('model_source')} -> {cfg.model}")
    for key in TOKEN_SETTINGS:
        old = _get(old_job, key) if key != "bandwidths" else committed.get("bandwidths", _get(old_job, key))
        if old is not None and not _same(old, _get(now, key)):
            changes.append(f"{key}: {old} -> {_get(now, key)}")
    if old_job and not _same(old_job.get("semantic"), now.get("semantic")):  # a stream added, dropped or changed
        changes.append(f"semantic: {old_job.get('semantic')} -> {now.get('semantic')}")
    return changes


def check_committed(out_dir: str, cfg: JobConfig, committed: int, provenance: dict | None) -> None:
    """InputError when `out_dir` holds `committed` shards made with other token-affecting settings."""
    if not committed or not provenance:
        return
    changes = settings_changed(provenance, cfg)
    if changes:
        raise InputError(f"--output {out_dir} already holds {committed} committed shard(s) made with other settings "
                         f"({'; '.join(changes)}); write to a new output directory, or re-run with the committed "
                         "settings")


@dataclass(frozen=True)
class Preflight:
    """What the checks found: the input's shards (sources.list_shards) and the output's committed state
    (`manifest_snapshot.load(..., start=True)`, None when the output does not exist yet), which the job's
    start uses rather than reading it again."""

    shards: list
    state: ManifestState | None = None


def preflight(cfg: JobConfig, input_spec: str, out_dir: str, log: Callable[[str], None] | None = None) -> Preflight:
    """Every driver-side check, in the order a user fixes them."""
    from . import manifest_snapshot, sources
    from .sources.common import normalize

    check_output(out_dir)
    check_model(cfg)
    check_semantic(cfg)
    exists = not is_local(out_dir) or Path(out_dir.removeprefix("file://")).expanduser().exists()
    state = (manifest_snapshot.load(normalize(str(out_dir)), start=True, storage_options=cfg.output.storage_options)
             if exists else None)
    if state is not None and state.records:
        check_committed(out_dir, cfg, len(state.records), state.provenance)
    check_hub_input(input_spec)
    return Preflight(sources.list_shards(input_spec, cfg.source, log), state)
