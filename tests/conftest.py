import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Untrained, narrow phi and psi model files (fast; for plumbing tests)."""
    import torch

    from smlm_diffusion.models import CameraPsi, ConditionalUNet, NoiseSchedule, ShufflePhi
    from smlm_diffusion.models.normalisation import INPUT_NORMALISATION, kde_scale
    from smlm_diffusion.models.store import model_payload, save_file

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("models")
    norm = {
        "input": dict(INPUT_NORMALISATION),
        "kde_scale": kde_scale(),
        "kde_sigma_upsampled_px": 3.0,
        "upsampling": 4,
    }
    phi = save_file(model_payload("phi", ShufflePhi(channels=8).eval(), norm, {}), folder / "phi.pt")
    psi = save_file(
        model_payload("psi", ConditionalUNet(channels=8, heads=2), norm, {}, NoiseSchedule()), folder / "psi.pt"
    )
    psi_v2 = save_file(
        model_payload("psi", CameraPsi(channels=8, heads=2, blocks=1), norm, {}, NoiseSchedule(kind="cosine")),
        folder / "psi_v2.pt",
    )
    psi_v3 = save_file(
        model_payload(
            "psi", CameraPsi(channels=8, heads=2, blocks=1, prediction="v"), norm, {}, NoiseSchedule(kind="cosine")
        ),
        folder / "psi_v3.pt",
    )
    return {"phi": str(phi), "psi": str(psi), "psi_v2": str(psi_v2), "psi_v3": str(psi_v3)}


@pytest.fixture(autouse=True)
def _isolated_widget_settings(tmp_path_factory, monkeypatch):
    """Widget parameters persist in a fresh folder per test, never in the user's home."""
    monkeypatch.setenv("SMLM_DIFFUSION_CONFIG_DIR", str(tmp_path_factory.mktemp("config")))
