"""The wheel built from this checkout carries the root napari.yaml and validates."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
    )
    return next(out.glob("napari_smlm_diffusion-*.whl"))


def test_wheel_contains_the_root_manifest_and_entry_points(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert "smlm_diffusion/napari.yaml" in names
        assert zf.read("smlm_diffusion/napari.yaml") == (ROOT / "napari.yaml").read_bytes()
        entry_points = zf.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "napari-smlm-diffusion = smlm_diffusion:napari.yaml" in entry_points
    assert "smlm-diffusion = smlm_diffusion.cli:main" in entry_points


def test_npe2_validates_the_unpacked_wheel_with_imports(wheel, tmp_path):
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    check = subprocess.run(
        [sys.executable, "-c", "import smlm_diffusion; print(smlm_diffusion.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert check.stdout.startswith(str(tmp_path))
    npe2 = Path(sys.executable).with_name("npe2")
    result = subprocess.run(
        [str(npe2), "validate", str(tmp_path / "smlm_diffusion" / "napari.yaml"), "--imports"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout
