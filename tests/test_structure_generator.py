"""The unconditional structure DDPM (issue 15): patches, training plumbing, generation and
the memorisation check."""

import numpy as np
import pytest

from smlm_diffusion.models.store import load_model
from smlm_diffusion.models.structure_generator import (
    StructurePatches,
    generate_structures,
    max_normalised_cross_correlation,
    train_structure_generator,
)


def ring(centre, radius_nm, n=400, seed=0):
    angle = np.random.default_rng(seed).uniform(0, 2 * np.pi, n)
    return np.asarray(centre) + radius_nm * np.c_[np.cos(angle), np.sin(angle)]


def test_patches_are_scaled_to_minus_one_one_and_hold_the_structure():
    points = np.concatenate(
        [ring((500 + 900 * i, 500 + 900 * j), 150, seed=i * 3 + j) for i in range(3) for j in range(3)]
    )
    patches = StructurePatches([points], patch_px=32).batch(np.random.default_rng(0), 8)
    assert patches.shape == (8, 1, 32, 32) and patches.min() >= -1 and patches.max() <= 1
    # nearly empty crops are redrawn: every patch holds some of a ring
    assert np.all((patches > -0.5).reshape(8, -1).any(axis=1))


def test_memorisation_check_finds_shifted_copies_and_not_independent_images():
    rng = np.random.default_rng(1)
    references = rng.random((5, 32, 32))
    copies = np.roll(references[:2], (7, -3), axis=(1, 2))
    others = rng.random((2, 32, 32))
    assert max_normalised_cross_correlation(copies, references) == pytest.approx([1.0, 1.0], abs=1e-9)
    assert np.all(max_normalised_cross_correlation(others, references) < 0.3)


def test_generator_trains_resumes_saves_and_generates(tmp_path):
    points = np.concatenate([ring((400, 400), 120), ring((1200, 900), 180, seed=1)])
    out, ckpt = tmp_path / "gen.pt", tmp_path / "gen.ckpt"
    record = train_structure_generator(
        [points], out, steps=2, batch_size=2, checkpoint_path=ckpt, channels=8, patch_px=32, sources=["rings.csv"]
    )
    assert record["steps"] == 2 and ckpt.exists() and record["structure_files"] == ["rings.csv"]
    again = train_structure_generator(
        [points], tmp_path / "gen2.pt", steps=3, batch_size=2, checkpoint_path=ckpt, channels=8, patch_px=32
    )
    assert again["steps"] == 3  # resumed from step 2
    model = load_model(out)
    assert model.kind == "structures" and model.normalisation["patch_px"] == 32
    images = generate_structures(model.module, model.schedule, 3, batch_size=2, patch_px=32)
    assert images.shape == (3, 32, 32) and images.min() >= 0 and images.max() <= 1
    np.testing.assert_array_equal(
        images, generate_structures(model.module, model.schedule, 3, batch_size=2, patch_px=32)
    )


def test_patches_refuse_empty_structures():
    with pytest.raises(ValueError, match="no points"):
        StructurePatches([np.zeros((0, 2))])
