"""Checkpoints: tensors in one safetensors file, a JSON header in its metadata; never a pickle.

Why this shape: `torch.load` of a pickle runs arbitrary code, and `torch.save(module)` ties a file to class
paths. A safetensors file is a length-prefixed JSON header plus raw buffers, so reading one executes nothing. We
keep ONE file (no sidecar that can get separated): our header is a JSON string stored under the metadata key
`polytask` of the safetensors header. It holds the architecture (`NetworkSpec` as a dict under `network`), the goal
modality, the task(s), the step, a config hash and whatever a trainer adds (JSON only).

Resume state is tensors too: optimizer moments are flattened to `<prefix>/state/<i>/<name>` tensors (their
scalar settings go to the header), RNG states to `rng/torch` (+ `rng/cuda/<i>`) tensors and JSON for numpy and
Python's `random`.

Writes are atomic (`polytask.learning.data.atomic`: temp file, fsync, `os.replace`, fsync the folder). Loading checks
the file layout before handing it to safetensors and refuses pickles and zip archives (torch.save) with a clear message.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from safetensors.torch import save as st_save
from torch import Tensor

from polytask.learning.data.atomic import atomic_open

FORMAT = "polytask-checkpoint"
FORMAT_VERSION = 1
META_KEY = "polytask"
MAX_HEADER_BYTES = 100 * 1024 * 1024
SUFFIX = ".safetensors"


class CheckpointError(ValueError):
    """A checkpoint file is not ours, is damaged, or was made for something else; the message names file and key."""


# --- writing -------------------------------------------------------------------------------------------
def save_checkpoint(path: str | os.PathLike, tensors: dict[str, Tensor], header: dict[str, Any]) -> Path:
    """Write `tensors` and the JSON-able `header` to `path` atomically. Returns the path."""
    path = Path(path)
    for name, t in tensors.items():
        if not isinstance(t, Tensor):
            raise CheckpointError(f"{path}: tensor {name!r} is {type(t).__name__}, expected a torch.Tensor")
    full_header = {"format": FORMAT, "version": FORMAT_VERSION, **header}
    try:
        text = json.dumps(full_header, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: header is not plain JSON ({err})") from err
    # Clone to own contiguous storage: safetensors refuses tensors that share memory (views, tied weights).
    data = st_save({k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()},
                   metadata={META_KEY: text})
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return path


# --- reading -------------------------------------------------------------------------------------------
def _sniff(path: Path) -> dict[str, Any]:
    """Check that `path` is a safetensors file and return its raw JSON header, without trusting anything."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(9)
            # A safetensors header length can start with byte 0x80 too, so recognise safetensors by its layout
            # (u64 length, then JSON) before looking for pickle or zip signatures; nothing is ever unpickled.
            n_guess = struct.unpack("<Q", head[:8])[0] if len(head) >= 8 else 0
            looks_safetensors = head[8:9] == b"{" and 2 <= n_guess <= min(MAX_HEADER_BYTES, size - 8)
            fh.seek(8)
            if not looks_safetensors and (head[:1] == b"\x80" or head[:2] in (b"(d", b"}q", b"(l")):
                raise CheckpointError(f"{path}: is a Python pickle; refusing to load it (pickles can run code). "
                                      "Checkpoints must be safetensors files written by polytask.")
            if not looks_safetensors and head[:4] == b"PK\x03\x04":
                raise CheckpointError(f"{path}: is a zip archive (torch.save format); refusing to load it. "
                                      "Checkpoints must be safetensors files written by polytask.")
            if len(head) < 8:
                raise CheckpointError(f"{path}: too short ({size} bytes) to be a safetensors checkpoint")
            (n,) = struct.unpack("<Q", head[:8])
            if n < 2 or n > min(MAX_HEADER_BYTES, size - 8):
                raise CheckpointError(f"{path}: not a safetensors file (header length {n} for a {size}-byte file)")
            raw = fh.read(n)
    except OSError as err:
        raise CheckpointError(f"{path}: cannot read checkpoint ({err.strerror or err})") from err
    if not raw.lstrip().startswith(b"{"):
        raise CheckpointError(f"{path}: not a safetensors file (header does not start with '{{')")
    try:
        parsed = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not a safetensors file (header is not JSON: {err})") from err
    if not isinstance(parsed, dict):
        raise CheckpointError(f"{path}: not a safetensors file (header is {type(parsed).__name__})")
    return parsed


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The polytask header of a checkpoint, without loading any tensor."""
    path = Path(path)
    raw = _sniff(path)
    meta = raw.get("__metadata__") or {}
    if not isinstance(meta, dict) or META_KEY not in meta:
        raise CheckpointError(f"{path}: safetensors file without a polytask header (metadata key {META_KEY!r})")
    try:
        header = json.loads(meta[META_KEY])
    except (json.JSONDecodeError, TypeError) as err:
        raise CheckpointError(f"{path}: polytask header is not valid JSON ({err})") from err
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{path}: header format {header.get('format') if isinstance(header, dict) else None!r}"
                              f", expected {FORMAT!r}")
    if header.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint version {header.get('version')!r}, expected {FORMAT_VERSION}")
    return header


def load_checkpoint(path: str | os.PathLike, expect: dict[str, Any] | None = None,
                    device: str | torch.device = "cpu") -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Load (tensors, header). With `expect`, every key must match the header, else CheckpointError names it.

    `expect={"network": spec}` compares the architecture field by field; other keys compare by equality
    (e.g. `{"goal_modality": "image", "kind": "expert"}`).
    """
    path = Path(path)
    header = read_header(path)
    if expect:
        check_expectations(header, expect, str(path))
    try:
        tensors = load_file(str(path), device=str(device))
    except Exception as err:  # safetensors raises its own error type for damaged buffers
        raise CheckpointError(f"{path}: damaged safetensors data ({type(err).__name__}: {err})") from err
    return tensors, header


def check_expectations(header: dict[str, Any], expect: dict[str, Any], where: str) -> None:
    problems = []
    for key, want in expect.items():
        if key not in header:
            problems.append(f"key {key!r} missing (expected {_plain(want)!r})")
            continue
        got = header[key]
        if key == "network":
            want_d, got_d = _plain(want), got
            if not isinstance(got_d, dict):
                problems.append(f"network is {got_d!r}, expected a mapping")
                continue
            for field in sorted(set(want_d) | set(got_d)):
                if want_d.get(field) != got_d.get(field):
                    problems.append(f"architecture mismatch: network.{field} is {got_d.get(field)!r} in the "
                                    f"checkpoint, expected {want_d.get(field)!r}")
        elif _plain(want) != got:
            problems.append(f"{key} mismatch: {got!r} in the checkpoint, expected {_plain(want)!r}")
    if problems:
        raise CheckpointError(f"{where}: checkpoint does not match: " + "; ".join(problems))


def _plain(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, tuple):
        return list(value)
    return value


# --- modules, optimizers, RNGs as tensors -------------------------------------------------------------------
def module_tensors(prefix: str, module: torch.nn.Module) -> dict[str, Tensor]:
    return {f"{prefix}/{k}": v for k, v in module.state_dict().items()}


def load_module(module: torch.nn.Module, tensors: dict[str, Tensor], prefix: str, where: str = "checkpoint") -> None:
    """Load `prefix/*` tensors into `module`, naming missing/unexpected/mis-shaped keys in the error."""
    mine = {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + "/")}
    own = module.state_dict()
    missing = sorted(set(own) - set(mine))
    extra = sorted(set(mine) - set(own))
    shapes = [f"{k}: {tuple(mine[k].shape)} != {tuple(own[k].shape)}" for k in own
              if k in mine and mine[k].shape != own[k].shape]
    if missing or extra or shapes:
        raise CheckpointError(f"{where}: module {prefix!r} does not match: missing {missing[:5]}, "
                              f"unexpected {extra[:5]}, shape mismatches {shapes[:5]}")
    module.load_state_dict(mine)


def optimizer_tensors(prefix: str, opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Flatten an optimizer state (Adam's moments and step) to tensors + JSON settings."""
    sd = opt.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, state in sd["state"].items():
        for name, value in state.items():
            if isinstance(value, Tensor):
                tensors[f"{prefix}/state/{idx}/{name}"] = value
            else:
                scalars.setdefault(str(idx), {})[name] = value
    # A CUDA-graph step keeps its learning rate in a 0-d tensor; the header stores plain numbers.
    groups = [{k: (list(v) if isinstance(v, tuple) else float(v) if isinstance(v, Tensor) else v)
               for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict[str, Any], prefix: str,
                   where: str = "checkpoint") -> None:
    try:
        groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
        state: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith(prefix + "/state/"):
                idx, name = key[len(prefix) + 7:].split("/", 1)
                state.setdefault(int(idx), {})[name] = value
        for idx, extra in meta.get("scalars", {}).items():
            state.setdefault(int(idx), {}).update(extra)
        opt.load_state_dict({"state": state, "param_groups": groups})
    except (KeyError, ValueError, TypeError) as err:
        raise CheckpointError(f"{where}: optimizer {prefix!r} state does not fit ({err})") from err


def rng_tensors(np_rng: np.random.Generator | None = None) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Capture torch (CPU and CUDA), numpy-Generator and Python `random` states for an exact resume."""
    tensors = {"rng/torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = s
    meta: dict[str, Any] = {"python": _py_state_to_json(random.getstate())}
    if np_rng is not None:
        meta["numpy"] = np_rng.bit_generator.state
    return tensors, meta


def restore_rng(tensors: dict[str, Tensor], meta: dict[str, Any], np_rng: np.random.Generator | None = None) -> None:
    torch.set_rng_state(tensors["rng/torch"].to("cpu", torch.uint8))
    cuda = sorted((k for k in tensors if k.startswith("rng/cuda/")), key=lambda k: int(k.rsplit("/", 1)[1]))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k].to("cpu", torch.uint8) for k in cuda])
    if "python" in meta:
        random.setstate(_py_state_from_json(meta["python"]))
    if np_rng is not None and "numpy" in meta:
        np_rng.bit_generator.state = meta["numpy"]


def _py_state_to_json(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _py_state_from_json(data: list) -> tuple:
    version, internal, gauss = data
    return (version, tuple(internal), gauss)


def config_hash(config: Any) -> str:
    """A short stable hash of a JSON-able config (dicts sorted), to tell runs and checkpoints apart."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def prefixed(prefix: str, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """`tensors` under `<prefix>/` (one checkpoint holding the state of several parts)."""
    return {f"{prefix}/{k}": v for k, v in tensors.items()}


def unprefixed(prefix: str, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """The tensors under `<prefix>/`, with the prefix taken off."""
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + "/")}
