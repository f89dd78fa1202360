"""TIFF stacks (lazy, metadata, bad input) and ThunderSTORM CSV (SPEC 3)."""

import numpy as np
import pytest
import tifffile

from smlm_diffusion import SmlmInputError
from smlm_diffusion.analysis import localize_frame, localize_kde
from smlm_diffusion.io import TiffStack, read_localizations_csv, write_localizations_csv, write_stack
from smlm_diffusion.localizations import Localizations
from smlm_diffusion.simulation import expected_photons, render_kde


def test_emitter_at_pixel_centre_comes_back_at_c_plus_half_times_pixel_size(tmp_path):
    px, r, c = 108.0, 7, 11
    x_px, y_px = c + 0.5, r + 0.5
    frame = expected_photons(np.array([[x_px]]), np.array([[y_px]]), np.array([[2000.0]]), (20, 24), 0.92, 10.0)[0]
    kde = render_kde(np.array([[x_px]]), np.array([[y_px]]), np.ones((1, 1)), (20, 24))[0]
    for locs in (localize_frame(frame, 0.92, px, frame=3), localize_kde(kde, px, frame=3)):
        write_localizations_csv(tmp_path / "locs.csv", locs)
        back = read_localizations_csv(tmp_path / "locs.csv")
        assert len(back) == 1 and back.frame[0] == 3
        assert back.x_nm[0] == pytest.approx((c + 0.5) * px, abs=0.5)
        assert back.y_nm[0] == pytest.approx((r + 0.5) * px, abs=0.5)


def test_sub_pixel_position_survives_the_csv(tmp_path):
    px = 100.0
    kde = render_kde(np.array([[6.37]]), np.array([[4.81]]), np.ones((1, 1)), (12, 12))[0]
    write_localizations_csv(tmp_path / "l.csv", localize_kde(kde, px))
    back = read_localizations_csv(tmp_path / "l.csv")
    assert back.x_nm[0] == pytest.approx(637.0, abs=0.5)
    assert back.y_nm[0] == pytest.approx(481.0, abs=0.5)


def test_csv_round_trip_keeps_all_columns(tmp_path):
    locs = Localizations(
        frame=[1, 1, 5],
        x_nm=[10.5, 2000.25, 33.0],
        y_nm=[1.0, 2.0, 3.5],
        intensity_photons=[100.0, 2500.5, 1.0],
        uncertainty_xy_nm=[12.0, np.nan, 3.25],
        extra={"probability": np.array([0.5, 1.0, 0.25]), "sigma_nm": np.array([1.0, 2.0, 3.0])},
    )
    write_localizations_csv(tmp_path / "r.csv", locs)
    header = (tmp_path / "r.csv").read_text().splitlines()[0]
    assert header.startswith("id,frame,x [nm],y [nm],intensity [photon],uncertainty_xy [nm]")
    assert "sigma [nm]" in header
    back = read_localizations_csv(tmp_path / "r.csv")
    np.testing.assert_array_equal(back.frame, locs.frame)
    np.testing.assert_allclose(back.x_nm, locs.x_nm)
    np.testing.assert_allclose(back.intensity_photons, locs.intensity_photons)
    np.testing.assert_allclose(back.uncertainty_xy_nm, locs.uncertainty_xy_nm)
    np.testing.assert_allclose(back.extra["probability"], [0.5, 1.0, 0.25])
    np.testing.assert_allclose(back.extra["sigma_nm"], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(back.extra["id"], [1, 2, 3])


def test_reads_thunderstorm_quoted_header(tmp_path):
    path = tmp_path / "ts.csv"
    path.write_text(
        '"id","frame","x [nm]","y [nm]","sigma [nm]","intensity [photon]","uncertainty [nm]"\n'
        "1.0,1.0,100.5,200.5,130.0,900.0,9.5\n"
    )
    back = read_localizations_csv(path)
    assert back.x_nm[0] == 100.5 and back.uncertainty_xy_nm[0] == 9.5 and back.intensity_photons[0] == 900


@pytest.mark.parametrize(
    "content,fragment",
    [
        ("", "empty"),
        ("frame,x [px],y [px]\n1,2,3\n", r"x \[nm\]"),
        ("frame,x [nm],y [nm]\n1,abc,3\n", "not all numbers"),
        ("frame,x [nm],y [nm]\n0,1,3\n", "count from 1"),
    ],
)
def test_bad_csv_gets_one_clear_sentence(tmp_path, content, fragment):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(SmlmInputError, match=fragment):
        read_localizations_csv(path)


def test_written_stack_is_memory_mapped_with_metadata(tmp_path):
    data = (np.arange(6 * 9 * 7) % 4000).astype(np.uint16).reshape(6, 9, 7)
    write_stack(tmp_path / "s.tif", data, 117.0, extra_info={"offset_adu": 99.0, "gain_adu_per_photon": 2.2})
    with TiffStack(tmp_path / "s.tif") as stack:
        assert stack.shape == (6, 9, 7) and stack.dtype == np.uint16
        assert stack.is_memory_mapped
        assert stack.metadata.pixel_size_nm == pytest.approx(117.0)
        assert stack.metadata.offset_adu == 99.0 and stack.metadata.gain_adu_per_photon == 2.2
        np.testing.assert_array_equal(stack[2], data[2])
        np.testing.assert_array_equal(stack[1:4], data[1:4])
        np.testing.assert_array_equal(np.concatenate([c for _, c in stack.iter_chunks(chunk_frames=4)]), data)


def test_stack_written_from_chunks_equals_the_array(tmp_path):
    data = np.random.default_rng(0).integers(0, 60000, (10, 8, 8)).astype(np.uint16)
    write_stack(tmp_path / "c.tif", (data[i : i + 3] for i in range(0, 10, 3)), 108.0, shape=data.shape)
    np.testing.assert_array_equal(TiffStack(tmp_path / "c.tif")[:], data)


def test_compressed_stack_is_read_page_by_page(tmp_path):
    data = np.random.default_rng(1).integers(0, 1000, (5, 16, 12)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "z.tif", data, compression="zlib")
    with TiffStack(tmp_path / "z.tif") as stack:
        assert not stack.is_memory_mapped
        np.testing.assert_array_equal(stack[3], data[3])
        np.testing.assert_array_equal(stack[1:3], data[1:3])


def test_ome_pixel_size_and_2d_image_as_one_frame(tmp_path):
    tifffile.imwrite(
        tmp_path / "o.ome.tif",
        np.zeros((3, 10, 10), np.uint16),
        ome=True,
        metadata={"axes": "TYX", "PhysicalSizeX": 0.065, "PhysicalSizeXUnit": "µm"},
    )
    assert TiffStack(tmp_path / "o.ome.tif").metadata.pixel_size_nm == pytest.approx(65.0)
    tifffile.imwrite(tmp_path / "one.tif", np.ones((10, 12), np.float32))
    one = TiffStack(tmp_path / "one.tif")
    assert one.shape == (1, 10, 12) and one.metadata.pixel_size_nm is None


def test_a_stack_is_not_read_whole_on_open(tmp_path):
    """Opening a large stack costs nothing: frames are memory-mapped views until read."""
    path = tmp_path / "big.tif"
    write_stack(path, (np.full((50, 256, 256), i, np.uint16) for i in range(40)), 108.0, shape=(2000, 256, 256))
    stack = TiffStack(path)
    assert stack.shape == (2000, 256, 256) and stack.is_memory_mapped
    assert stack[1999][0, 0] == 39 and stack[0][0, 0] == 0


def _bad_files(tmp_path):
    (tmp_path / "text.tif").write_text("this is not an image")
    good = tmp_path / "good.tif"
    write_stack(good, np.ones((20, 32, 32), np.uint16), 108.0)
    (tmp_path / "truncated.tif").write_bytes(good.read_bytes()[:3000])
    tifffile.imwrite(tmp_path / "rgb.tif", np.zeros((16, 16, 3), np.uint8), photometric="rgb")
    tifffile.imwrite(tmp_path / "complex.tif", np.zeros((2, 8, 8), np.complex64))
    tifffile.imwrite(tmp_path / "fourd.tif", np.zeros((2, 3, 8, 8), np.uint16), photometric="minisblack")
    tifffile.imwrite(tmp_path / "empty.tif", np.zeros((0, 8, 8), np.uint16))
    return tmp_path


@pytest.mark.parametrize(
    "name,fragment",
    [
        ("missing.tif", "not found"),
        ("text.tif", "not a readable TIFF"),
        ("rgb.tif", "RGB"),
        ("complex.tif", "pixel type"),
        ("fourd.tif", "expected one stack"),
        ("empty.tif", "no image data|not a readable"),
    ],
)
def test_bad_tiffs_get_one_clear_sentence(tmp_path, name, fragment):
    _bad_files(tmp_path)
    with pytest.raises(SmlmInputError, match=fragment) as info:
        TiffStack(tmp_path / name)
    assert "\n" not in str(info.value)


def test_truncated_tiff_is_reported_when_read(tmp_path):
    _bad_files(tmp_path)
    with pytest.raises(SmlmInputError, match="truncated|not a readable"):
        stack = TiffStack(tmp_path / "truncated.tif")
        stack[:]


def test_nan_frames_and_out_of_range_frames_are_refused(tmp_path):
    data = np.zeros((4, 8, 8), np.float32)
    data[2, 3, 3] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", data, photometric="minisblack")
    stack = TiffStack(tmp_path / "nan.tif")
    stack[0:2]
    with pytest.raises(SmlmInputError, match="Frame 3 .* NaN"):
        stack[1:4]
    with pytest.raises(SmlmInputError, match="outside"):
        stack.read(2, 9)


def test_failed_write_leaves_no_file(tmp_path):
    def chunks():
        yield np.zeros((2, 8, 8), np.uint16)
        raise RuntimeError("simulated failure")

    with pytest.raises(RuntimeError):
        write_stack(tmp_path / "out.tif", chunks(), 108.0, shape=(4, 8, 8))
    assert list(tmp_path.iterdir()) == []


def test_picasso_export_puts_pixel_centres_on_integers_and_carries_the_fit(tmp_path):
    import h5py

    from smlm_diffusion.io import write_picasso_hdf5

    px = 108.0
    locs = Localizations(
        frame=np.array([1, 2]),
        x_nm=np.array([5.5, 7.25]) * px,
        y_nm=np.array([3.5, 9.0]) * px,
        intensity_photons=np.array([1000.0, 500.0]),
        uncertainty_xy_nm=np.array([5.4, 10.8]),
        extra={"sigma_nm": np.array([99.36, 99.36]), "background_photons": np.array([12.0, 30.0])},
    )
    path = write_picasso_hdf5(tmp_path / "locs.hdf5", locs, px, 32, 32, 2)
    with h5py.File(path) as handle:
        table = handle["locs"][...]
    assert np.allclose(table["x"], [5.0, 6.75]) and np.allclose(table["y"], [3.0, 8.5])
    assert np.array_equal(table["frame"], [0, 1])
    assert np.allclose(table["lpx"], [0.05, 0.1]) and np.allclose(table["lpy"], table["lpx"])
    assert np.allclose(table["sx"], 0.92) and np.allclose(table["bg"], [12.0, 30.0])


def test_picasso_raw_and_dax_movies_read_as_stacks(tmp_path):
    """Picasso .raw + .yaml and STORM .dax + .inf: the frames, lazily, with the header's
    pixel size and camera values where it has them; a missing header is one sentence."""
    from smlm_diffusion.io import open_stack

    frames = np.arange(4 * 6 * 5, dtype=np.uint16).reshape(4, 6, 5)
    frames.astype("<u2").tofile(tmp_path / "m.raw")
    (tmp_path / "m.yaml").write_text(
        "Byte Order: <\nData Type: uint16\nFrames: 4\nHeight: 6\nWidth: 5\n"
        "Pixelsize: 130\n---\nCamera:\n  Baseline: 400\n  Sensitivity: 0.46\n"
    )
    with open_stack(tmp_path / "m.raw") as stack:
        assert stack.shape == (4, 6, 5) and np.array_equal(stack.read(1, 3), frames[1:3])
        assert stack.metadata.pixel_size_nm == 130.0 and stack.metadata.offset_adu == 400.0
        assert stack.metadata.gain_adu_per_photon == pytest.approx(1 / 0.46)
    from smlm_diffusion._napari.reader import get_reader

    ((data, kwargs, kind),) = get_reader(str(tmp_path / "m.raw"))(str(tmp_path / "m.raw"))  # napari's drop
    assert kind == "image" and np.array_equal(np.asarray(data), frames) and kwargs["metadata"]["pixel_size_nm"] == 130
    frames.astype(">u2").tofile(tmp_path / "d.dax")
    (tmp_path / "d.inf").write_text(
        "binning = 1 x 1\ndata type = 16 bit integers (binary, big endian)\n"
        "frame dimensions = 5 x 6\nnumber of frames = 4\n"
    )
    with open_stack(tmp_path / "d.dax") as stack:
        assert stack.shape == (4, 6, 5) and np.array_equal(stack[2], frames[2])
    floats = np.ones((2, 6, 5), np.float32)
    floats[1, 2, 3] = np.nan
    floats.tofile(tmp_path / "f.raw")
    (tmp_path / "f.yaml").write_text("Data Type: float32\nFrames: 2\nHeight: 6\nWidth: 5\n")
    with open_stack(tmp_path / "f.raw") as stack:
        assert stack.read(0, 1).shape == (1, 6, 5)
        with pytest.raises(SmlmInputError, match="NaN"):
            stack.read(0, 2)
    (tmp_path / "lone.dax").write_bytes(b"\0" * 10)
    with pytest.raises(SmlmInputError, match="lone.inf is missing"):
        open_stack(tmp_path / "lone.dax")
    frames[:2].astype("<u2").tofile(tmp_path / "m.raw")  # the header says 4 frames
    with pytest.raises(SmlmInputError, match="truncated"):
        open_stack(tmp_path / "m.raw")


def test_micromanager_pixel_size_and_sensor_region(tmp_path):
    import json as _json

    import tifffile as _tifffile

    from smlm_diffusion.cli.reconstruct import sensor_origin

    path = tmp_path / "mm.tif"
    _tifffile.imwrite(
        path,
        np.zeros((3, 16, 20), np.uint16),
        photometric="minisblack",
        extratags=[
            (
                51123,
                "s",
                0,
                _json.dumps(
                    {
                        "PixelSizeUm": 0.108,
                        "ROI": "100-200-20-16",
                        "Binning": "1",
                        "HamamatsuHam_DCAM-CONVERSION FACTOR COEFF": "0.48",
                        "HamamatsuHam_DCAM-CONVERSION FACTOR OFFSET": "100",
                    }
                ),
                True,
            )
        ],
    )
    with TiffStack(path) as stack:
        meta = stack.metadata
    assert meta.pixel_size_nm == pytest.approx(108.0) and meta.extra["sensor_roi_px"] == [100, 200, 20, 16]
    assert sensor_origin(meta, (16, 20)) == (200, 100)  # (row, col) on the sensor
    assert sensor_origin(meta, (16, 16)) is None  # an ROI of another size than the frames: not trusted
    assert meta.gain_adu_per_photon == pytest.approx(1 / 0.48) and meta.offset_adu == 100.0  # the camera's conversion
