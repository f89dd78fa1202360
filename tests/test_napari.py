"""The napari face in a real viewer (virtual X screen via pytest-xvfb)."""

import numpy as np

from smlm_diffusion.simulation import CameraModel


def test_sample_data_opens_through_the_manifest_and_lines_up(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-smlm-diffusion", "filaments")
    names = [layer.name for layer in viewer.layers]
    assert names == ["SMLM filaments (simulated)", "ground truth"]
    image, points = viewer.layers
    assert image.data.ndim == 3 and image.data.dtype == np.uint16
    assert image.metadata["pixel_size_nm"] == 108.0
    # each ground-truth point sits on a bright raw pixel of its own frame
    camera = CameraModel(image.metadata["gain_adu_per_photon"], image.metadata["offset_adu"])
    first = points.data[points.data[:, 0] == 0]
    photons = camera.to_photons(np.asarray(image.data[0]))
    rows, cols = np.rint(first[:, 1]).astype(int), np.rint(first[:, 2]).astype(int)
    inside = (rows >= 0) & (rows < 64) & (cols >= 0) & (cols < 64)
    assert inside.sum() > 5
    assert np.median(photons[rows[inside], cols[inside]]) > 10 * np.median(photons)


def test_manifest_validates_with_imports():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("napari-smlm-diffusion")
    manifest.validate_imports()
    assert manifest.display_name == "SMLM Diffusion"


def test_importing_the_napari_face_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, smlm_diffusion._napari.sample_data, smlm_diffusion._napari.reader, "
        "smlm_diffusion._napari.writer, smlm_diffusion._napari.reconstruct_widget, "
        "smlm_diffusion._napari.simulate_widget, smlm_diffusion._napari.evaluate_widget, "
        "smlm_diffusion.reconstruction, smlm_diffusion.cli; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
