"""Whole-experiment post-processing: drift (RCC), linking of blinks, FRC (issue 14)."""

import json

import numpy as np
import pytest

from smlm_diffusion.analysis.drift import apply_drift, estimate_drift
from smlm_diffusion.analysis.frc import frc_resolution, measured_frc
from smlm_diffusion.analysis.linking import link_groups, linked_table
from smlm_diffusion.analysis.nena import nena
from smlm_diffusion.cli import main
from smlm_diffusion.errors import SmlmInputError
from smlm_diffusion.io import read_localizations_csv, write_localizations_csv
from smlm_diffusion.localizations import Localizations


def _structure(rng, n_sites=3000):
    """Sites on 8 lines through a 10 um field (nm)."""
    t = rng.uniform(-0.5, 0.5, n_sites)
    angle = rng.integers(0, 8, n_sites) * np.pi / 8
    return np.c_[5000 + 8000 * t * np.cos(angle), 5000 + 8000 * t * np.sin(angle)]


def _blinking(rng, sites, n_frames, sigma_nm, mean_on_frames=3.0, drift=None):
    """Every site switches on once at a random frame for a geometric number of frames;
    positions jittered by ``sigma_nm`` and displaced by ``drift(frame) -> (dx, dy)``."""
    n = len(sites)
    start = rng.integers(1, n_frames - 10, n)
    length = rng.geometric(1.0 / mean_on_frames, n)
    frame = np.repeat(start, length) + np.concatenate([np.arange(k) for k in length])
    site = np.repeat(np.arange(n), length)
    keep = frame <= n_frames
    frame, site = frame[keep], site[keep]
    dx, dy = drift(frame) if drift is not None else (0.0, 0.0)
    locs = Localizations(
        frame=frame,
        x_nm=sites[site, 0] + dx + rng.normal(0, sigma_nm, len(site)),
        y_nm=sites[site, 1] + dy + rng.normal(0, sigma_nm, len(site)),
        intensity_photons=np.full(len(site), 1000.0),
        uncertainty_xy_nm=np.full(len(site), float(sigma_nm)),
    )
    return locs, site, n


def _drift(frame):
    f = np.asarray(frame, float)
    return 250 * f / 1500 + 30 * np.sin(2 * np.pi * f / 500), -150 * f / 1500 + 30 * np.cos(2 * np.pi * f / 700)


def test_rcc_recovers_a_linear_plus_sinusoidal_drift_to_a_few_nm():
    rng = np.random.default_rng(0)
    locs, _, _ = _blinking(rng, _structure(rng, 6000), 1500, 10.0, drift=_drift)
    drift = estimate_drift(locs, 1500)
    true_x, true_y = _drift(drift.frames)
    for estimate, truth in ((drift.x_nm, true_x - true_x[0]), (drift.y_nm, true_y - true_y[0])):
        error = estimate - truth
        assert np.sqrt(np.mean((error - error.mean()) ** 2)) < 5.0  # residual drift RMS per axis
        assert abs(error.mean()) < 15.0  # frame 1 is the reference
    corrected = apply_drift(locs, drift)
    dx, dy = drift.at(locs.frame)
    assert np.allclose(corrected.x_nm, locs.x_nm - dx) and np.allclose(corrected.extra["drift_y_nm"], dy)
    assert np.allclose(corrected.uncertainty_xy_nm, np.hypot(locs.uncertainty_xy_nm, drift.std_at(locs.frame)))
    record = drift.record()
    assert record["pairs_used"] <= record["pairs_total"] and record["residual_nm"] < 10


def test_drift_is_applied_only_when_significant_and_consistent():
    """A drifting movie: applied, and each corrected row's uncertainty carries the drift's
    standard error. The same structure still, and independent emitters (no structure that
    repeats between segments): the RCC estimate is not above what it finds with blocks of
    frames shuffled, so the positions stay."""
    from smlm_diffusion.analysis.drift import decide_drift

    rng = np.random.default_rng(3)
    sites = _structure(rng, 6000)
    drifting, _, _ = _blinking(rng, sites, 1500, 10.0, drift=_drift)
    drift = estimate_drift(drifting, 1500)
    decision = decide_drift(drifting, drift, 1500)
    assert decision.apply and decision.size_nm > 5 * max(decision.null_sizes_nm)
    corrected = apply_drift(drifting, drift)
    std = corrected.extra["drift_std_nm"]
    assert np.all(std >= 0) and std.mean() > 0 and np.allclose(corrected.uncertainty_xy_nm, np.hypot(10.0, std))

    still, _, _ = _blinking(rng, sites, 1500, 10.0)
    decision = decide_drift(still, estimate_drift(still, 1500), 1500)
    assert not decision.apply and "positions left as they are" in decision.reason

    k = 400  # independent emitters at 2 per um^2 on a 14 um field, 40 frames
    frames = np.repeat(np.arange(1, 41), k)
    xy = rng.uniform(0, 14000, (40 * k, 2))
    independent = Localizations(frame=frames, x_nm=xy[:, 0], y_nm=xy[:, 1])
    decision = decide_drift(independent, estimate_drift(independent, 40), 40)
    assert not decision.apply


def test_too_few_localizations_for_drift_is_one_sentence():
    locs = Localizations(frame=np.arange(1, 101), x_nm=np.zeros(100), y_nm=np.zeros(100))
    with pytest.raises(SmlmInputError, match="at least 3 segments"):
        estimate_drift(locs, 100)
    bad = Localizations(frame=np.arange(1, 4), x_nm=np.array([0.0, np.nan, 1.0]), y_nm=np.zeros(3))
    with pytest.raises(SmlmInputError, match="NaN"):
        estimate_drift(bad, 3)


def test_linking_finds_the_on_events_and_averages_their_positions():
    rng = np.random.default_rng(1)
    sites = _structure(rng, 2000)
    locs, site, n_events = _blinking(rng, sites, 3000, 12.0)
    groups = link_groups(locs, max_dark_frames=0)
    linked = linked_table(locs, groups)
    assert abs(len(linked) - n_events) <= 0.05 * n_events
    # each group's (equal-weight) mean position against its majority site
    counts = np.bincount(groups)
    group_site = np.array([np.bincount(site[groups == g]).argmax() for g in range(len(counts))])
    x, y = np.bincount(groups, locs.x_nm) / counts, np.bincount(groups, locs.y_nm) / counts
    linked_rmse = np.sqrt(np.mean((x - sites[group_site, 0]) ** 2 + (y - sites[group_site, 1]) ** 2))
    single_rmse = np.sqrt(np.mean((locs.x_nm - sites[site, 0]) ** 2 + (locs.y_nm - sites[site, 1]) ** 2))
    # averaging n frames divides the variance by n, so over events of geometric length the
    # ideal linked RMSE is single x sqrt(mean(1/n)) (not single / sqrt(mean n), which is
    # 1.28x smaller for a mean of 3 frames: Jensen's inequality)
    ideal = single_rmse * np.sqrt(np.mean(1.0 / np.bincount(site)))
    assert linked_rmse <= 1.1 * ideal
    assert linked.extra["n_frames"].sum() == len(locs)
    assert np.allclose(linked.uncertainty_xy_nm, 12.0 / np.sqrt(linked.extra["n_frames"]))


def test_linking_takes_the_closest_free_neighbour_not_only_the_nearest():
    """One-to-one, the closest pair first: A's nearest (C) is B's closer partner, so A links
    to D; and a nearest neighbour beyond its own limit does not hide a farther one within."""
    taken = Localizations(
        frame=np.array([1, 1, 2, 2]),
        x_nm=np.array([0.0, 12.0, 10.0, -15.0]),
        y_nm=np.zeros(4),
        uncertainty_xy_nm=np.full(4, 10.0),
    )
    assert link_groups(taken).tolist() == [0, 1, 1, 0]
    limits = Localizations(
        frame=np.array([1, 2, 2]),
        x_nm=np.array([0.0, 25.0, -30.0]),
        y_nm=np.zeros(3),
        uncertainty_xy_nm=np.array([5.0, 2.0, 20.0]),
    )  # C's limit 20 nm, D's 62 nm
    assert link_groups(limits).tolist() == [0, 1, 0]


def test_frc_orders_three_precisions_and_linked_halves_are_not_optimistic():
    rng = np.random.default_rng(2)
    sites = _structure(rng, 8000)
    resolutions = []
    for sigma in (5.0, 10.0, 20.0):
        locs, _, _ = _blinking(rng, sites, 2000, sigma)
        plain = frc_resolution(locs).resolution_nm
        grouped = frc_resolution(locs, groups=link_groups(locs, max_dark_frames=0)).resolution_nm
        assert grouped >= plain * 0.98
        resolutions.append(grouped)
    assert resolutions[0] < resolutions[1] < resolutions[2]
    assert 2.0 * 10.0 < resolutions[1] < 5.0 * 10.0  # FRC of a well-sampled structure: ~3x the precision


def test_frc_takes_a_finer_pixel_where_the_data_need_it_or_gives_a_bound():
    """Clusters of sites 10 nm apart localized at 1.5 nm over a 14 um field: at the pixel
    that fits the field the curve never falls below 1/7; on the densest square at a finer
    pixel it does, at a few times the precision. Too fine for any pixel: a bound."""
    rng = np.random.default_rng(1)
    centres = rng.uniform(500, 13300, (400, 2))
    grid = np.stack(np.meshgrid(np.arange(4) * 10.0, np.arange(3) * 10.0), -1).reshape(-1, 2)
    sites = (centres[:, None] + grid).reshape(-1, 2)
    site = rng.integers(0, len(sites), 60000)
    blink = np.repeat(np.arange(len(site)), rng.integers(1, 4, len(site)))
    xy = sites[site[blink]] + rng.normal(0, 1.5, (len(blink), 2))
    locs = Localizations(frame=np.ones(len(blink), int), x_nm=xy[:, 0], y_nm=xy[:, 1])
    assert not np.isfinite(frc_resolution(locs, render_nm=6.5, groups=blink).resolution_nm)
    frc = measured_frc(locs, groups=blink)
    assert 3.0 < frc.resolution_nm < 15.0 and frc.render_nm < 2.0 and frc.region_nm is not None
    assert frc.record()["resolution_nm"] == round(frc.resolution_nm, 1) and frc.record()["finer_than_nm"] is None
    exact = Localizations(frame=np.ones(len(blink), int), x_nm=sites[site[blink], 0], y_nm=sites[site[blink], 1])
    bound = measured_frc(exact, groups=blink)  # no scatter at all: finer than any pixel
    assert not np.isfinite(bound.resolution_nm) and bound.finer_than_nm == pytest.approx(1.0)
    assert "finer than 1 nm" in bound.sentence() and "--pixel-size-nm" in bound.sentence()


@pytest.mark.parametrize("sigma", [3.0, 12.0])
def test_nena_recovers_the_precision_and_checks_the_uncertainties(sigma):
    """Blinks of 3 frames on average over sites on lines: NeNA within 10 % of the
    simulated precision; the consecutive-frame check gives z std 1 with the right
    uncertainties and 2 with uncertainties half as large."""
    rng = np.random.default_rng(4)
    locs, _, _ = _blinking(rng, _structure(rng, 3000), 1000, sigma)
    result = nena(locs)
    assert result.precision_nm == pytest.approx(sigma, rel=0.10) and result.pairs > 1000
    assert 0.9 < result.z_std < 1.1 and 0.93 < result.z_coverage_95 < 0.97
    halved = Localizations(
        frame=locs.frame, x_nm=locs.x_nm, y_nm=locs.y_nm, uncertainty_xy_nm=locs.uncertainty_xy_nm / 2
    )
    assert 1.6 < nena(halved).z_std < 2.4
    with pytest.raises(SmlmInputError, match="NeNA needs"):
        nena(locs.select(slice(0, 30)))


def test_frc_command_prints_json_and_writes_the_curve(tmp_path, capsys):
    rng = np.random.default_rng(3)
    locs, _, _ = _blinking(rng, _structure(rng, 3000), 1000, 10.0)
    path = write_localizations_csv(tmp_path / "locs.csv", locs)
    assert main(["frc", str(path), "--out", str(tmp_path / "frc")]) == 0
    record = json.loads(capsys.readouterr().out)
    # 9k rows with blinks kept in one half: 59-65 nm by the split of the groups (sigma 10 nm; without linking 39)
    assert 15 < record["resolution_nm"] < 75 and record["groups"] < record["localizations"]
    assert record["nena"]["precision_nm"] == pytest.approx(10.0, rel=0.15)
    assert (tmp_path / "frc" / "frc.png").stat().st_size > 0
    curve = np.loadtxt(tmp_path / "frc" / "frc.csv", delimiter=",", skiprows=1)
    assert curve.shape[1] == 2 and curve[2, 1] > 0.5


def test_drift_columns_round_trip_through_the_csv(tmp_path):
    locs = Localizations(
        frame=np.array([1, 2]),
        x_nm=np.array([1.0, 2.0]),
        y_nm=np.array([3.0, 4.0]),
        extra={"drift_x_nm": np.array([0.5, 0.7]), "drift_y_nm": np.array([0.1, 0.2])},
    )
    path = write_localizations_csv(tmp_path / "d.csv", locs)
    assert "drift x [nm],drift y [nm]" in path.read_text().splitlines()[0]
    back = read_localizations_csv(path)
    assert np.allclose(back.extra["drift_x_nm"], [0.5, 0.7])


def test_reconstruct_corrects_drift_links_and_reports_the_frc(tmp_path):
    from smlm_diffusion.io import write_stack
    from smlm_diffusion.simulation import SimulationConfig, simulate_stack

    cfg = SimulationConfig(
        n_frames=24,
        height_px=64,
        width_px=64,
        density_per_um2=1.2,
        photons=2000.0,
        background_photons=10.0,
        offset_adu=100.0,
        structure="filaments",
        blinking=True,
        seed=4,
    )
    movie = write_stack(tmp_path / "m.tif", simulate_stack(cfg, quantize=True).adu, 108.0)
    out = tmp_path / "rec"
    assert main(["reconstruct", str(movie), "--out", str(out), "--no-posterior", "--device", "cpu", "--link"]) == 0
    record = json.loads((out / "run.json").read_text())
    assert record["drift"]["method"].startswith("RCC") and record["frc"]["resolution_nm"] > 0
    assert 0 < record["nena"]["precision_nm"] < 30 and record["nena"]["consecutive_frames_check"]["pairs"] > 0
    assert record["linking"]["groups"] < record["localizations"]
    # no drift simulated: the estimate is tested, not applied, and the run says why
    assert record["drift"]["applied"] is False and "positions left as they are" in record["drift"]["reason"]
    assert any(w.startswith("Drift correction was not applied") for w in record["warnings"])
    locs = read_localizations_csv(out / "localizations.csv")
    assert "drift_x_nm" not in locs.extra and not (out / "drift.csv").exists()
    linked = read_localizations_csv(out / "localizations_linked.csv")
    assert linked.extra["n_frames"].sum() == len(locs)
