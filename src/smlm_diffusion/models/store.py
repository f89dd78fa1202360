"""Model files: save, verify (SHA-256) and load phi / psi by name or path.

A model file is a ``torch.save`` dict of plain types only (loadable with
``weights_only=True``): ``format``, ``kind`` ("phi" | "psi"), ``config`` (the module's
constructor arguments), ``state_dict``, ``normalisation`` (input and KDE scaling),
``schedule`` (psi), and ``training`` (command, steps, seconds, hardware, versions).
Bundled files live in ``models/weights/`` with their SHA-256 in ``manifest.json``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import SmlmInputError
from .phi import build_phi
from .psi import build_psi
from .schedule import NoiseSchedule

FORMAT_VERSION = 1
WEIGHTS_DIR = Path(__file__).parent / "weights"
MANIFEST = WEIGHTS_DIR / "manifest.json"


#: model kind -> the module a file's ``config`` describes
KINDS = {"phi": build_phi, "psi": build_psi, "structures": build_psi}  # structures: an unconditional U-Net
#: the bundled files: name -> the kind of model it holds. A psi records the SHA-256 of the phi
#: it was trained on; with the default phi, the posterior conditions on the bundled phi of that
#: SHA-256 (``paired_bundled_phi``), so a faster default phi can ship beside psi's own
BUNDLED = {"phi": "phi", "psi": "psi", "psi-sparse": "psi"}
#: the bundled psi trained on a sparse prior (``train psi --density 0.05 0.5``): it hedges less
#: for unresolved neighbours, as sparse data warrant; ``reconstruct`` chooses it for movies
#: whose first frames are sparse (``psi_model="auto"``, models_used.SPARSE_PSI_MAX_LOCAL_DENSITY_PER_UM2)
SPARSE_PSI = "psi-sparse"


@dataclass
class LoadedModel:
    kind: str
    module: nn.Module
    normalisation: dict
    training: dict = field(default_factory=dict)
    schedule: NoiseSchedule | None = None
    path: Path | None = None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_payload(
    kind: str, module: nn.Module, normalisation: dict, training: dict, schedule: NoiseSchedule | None = None
) -> dict:
    payload = {
        "format": FORMAT_VERSION,
        "kind": kind,
        "config": dict(module.config),
        "state_dict": {k: v.detach().cpu().clone() for k, v in module.state_dict().items()},
        "normalisation": normalisation,
        "training": training,
    }
    if schedule is not None:
        payload["schedule"] = schedule.config()
    return payload


def bundled_path(name: str) -> Path:
    return WEIGHTS_DIR / f"{name}.pt"


def _expected_sha(path: Path) -> str | None:
    if path.parent.resolve() != WEIGHTS_DIR.resolve() or not MANIFEST.exists():
        return None
    return json.loads(MANIFEST.read_text()).get(path.name, {}).get("sha256")


def load_model(name_or_path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a bundled model by name ("phi", "psi") or a model file by path, in eval mode.

    Raises SmlmInputError (one sentence) for a missing, corrupt or mismatched file."""
    name = str(name_or_path)
    path = bundled_path(name) if name in BUNDLED else Path(name_or_path)
    if not path.is_file():
        hint = (
            "reinstall napari-smlm-diffusion"
            if name in BUNDLED
            else "check the path or train one with `smlm-diffusion train`"
        )
        raise SmlmInputError(f"model weights file {path} is missing; {hint}")
    expected = _expected_sha(path)
    if expected is not None and sha256_of(path) != expected:
        raise SmlmInputError(
            f"model weights file {path} is corrupt (SHA-256 mismatch); reinstall napari-smlm-diffusion"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        kind = payload["kind"]
        module = KINDS[kind](payload["config"])
        module.load_state_dict(payload["state_dict"])
    except Exception as exc:  # noqa: BLE001 - any unpickling/shape problem means a bad file
        raise SmlmInputError(
            f"model weights file {path} could not be read ({type(exc).__name__}); "
            "it is corrupt or not a napari-smlm-diffusion model"
        ) from exc
    if name in BUNDLED and kind != BUNDLED[name]:
        raise SmlmInputError(f"model weights file {path} holds a {kind} model, not a {BUNDLED[name]} model")
    schedule = NoiseSchedule(**payload["schedule"]) if "schedule" in payload else None
    module.eval().to(device)
    return LoadedModel(kind, module, payload["normalisation"], payload.get("training", {}), schedule, path)


def scale_calibration(model: LoadedModel) -> float:
    """A scaled psi's calibration of its scale map S (the factor on the emitters' part, in
    full and accelerated sampling alike; 1 when its file has none): see ``calibrate_scale``."""
    return float(model.normalisation.get("scale_calibration", 1.0))


def calibrate_scale(path: str | Path, out: str | Path, factor: float, how: str) -> Path:
    """Copy the psi file ``path`` to ``out`` with ``factor`` as its scale calibration: a psi
    whose samples are too narrow (or wide) against an exact posterior on validation data
    (``benchmarks/posterior.py --calibrate``) samples z on a scale map widened by it. ``how``
    (the command that measured it) is recorded beside it in the file's training record."""
    if not 0.2 <= factor <= 5.0:
        raise ValueError(f"a scale calibration of {factor:g} is implausible (0.2-5)")
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if payload.get("kind") != "psi" or payload.get("config", {}).get("target") != "scaled":
        raise ValueError(f"{path} is not a psi with the scaled residual (--target scaled)")
    payload["normalisation"] = {**payload["normalisation"], "scale_calibration": float(factor)}
    payload["training"] = {**payload.get("training", {}), "scale_calibration": {"factor": float(factor), "how": how}}
    return save_file(payload, out)


def paired_bundled_phi(psi: LoadedModel) -> str | None:
    """The name of the bundled phi file whose SHA-256 ``psi`` records as the phi it was
    trained on (None: none is bundled)."""
    trained_on = psi.training.get("phi_sha256")
    if not trained_on or not MANIFEST.exists():
        return None
    manifest = json.loads(MANIFEST.read_text())
    for name, kind in BUNDLED.items():
        if kind == "phi" and manifest.get(f"{name}.pt", {}).get("sha256") == trained_on:
            return name
    return None


def save_file(payload: dict, path: str | Path) -> Path:
    """torch.save to a temporary name in the same folder, then rename (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        torch.save(payload, tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def record_bundled(path: Path) -> None:
    """Write a bundled model file's SHA-256 into the manifest."""
    manifest = json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}
    manifest[path.name] = {"sha256": sha256_of(path), "bytes": path.stat().st_size}
    MANIFEST.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
