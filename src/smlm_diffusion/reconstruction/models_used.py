"""Which models a reconstruction runs: the phi paired with its psi, one-sentence warnings
about a pairing or a sampler that will not do, and ``psi_model="auto"``'s choice between the
bundled psi and the sparse-prior one."""

from __future__ import annotations

import numpy as np

from ..errors import SmlmInputError
from ..localizations import Localizations
from .refine import chunk_candidates, refine_frames
from .settings import Reconstruction

#: psi_model="auto" takes the sparse-prior psi up to this local density (``local_density``,
#: emitters per um^2): 0.7 x the top of its training prior (0.5). Measured on the first 4-16
#: frames of the validation and benchmark sets: isolated emitters 0.03-0.12, sparse uniform
#: sets 0.19-0.30; the paper's disc of faint emitters 0.43-0.86 (its localizations alone say
#: 0.27-0.54 per um^2 over the frame: they merge), 1 per um^2 1.1 (docs/models.md)
SPARSE_PSI_MAX_LOCAL_DENSITY_PER_UM2 = 0.35
#: radius of the neighbourhood over which ``local_density`` counts (um)
LOCAL_RADIUS_UM = 1.0


def local_density(tables: list[Localizations], shape_px: tuple[int, int], pixel_size_nm: float) -> float:
    """Mean over localizations of the emitters per um^2 around each within LOCAL_RADIUS_UM in
    its frame: its neighbours and its own excess, each localization counting the emitters its
    phi KDE mass says it holds (``kde_mass``, at least 1), over the part of the disc inside the
    frame. Where localizations merge emitters (a dense cluster of faint ones) the mass still
    counts them, and a clustered movie is judged by its clusters, not its empty area."""
    rows, cols = shape_px
    radius_px = LOCAL_RADIUS_UM * 1000.0 / pixel_size_nm
    reach = int(np.ceil(radius_px)) + 1
    offsets = np.arange(-reach, reach + 1)
    px_um2 = (pixel_size_nm / 1000.0) ** 2
    values = []
    for table in tables:
        if not len(table):
            continue
        xy = table.xy_px(pixel_size_nm)
        mass = np.fmax(1.0, np.nan_to_num(table.extra.get("kde_mass", np.ones(len(table))), nan=1.0))
        near = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1]) < radius_px
        np.fill_diagonal(near, False)
        emitters = near @ mass + (mass - 1.0)
        # the disc's pixels (centres within the radius) that lie inside the frame, per localization
        col = np.floor(xy[:, 0])[:, None, None] + offsets[None, None, :]
        row = np.floor(xy[:, 1])[:, None, None] + offsets[None, :, None]
        in_disc = np.hypot(col + 0.5 - xy[:, 0, None, None], row + 0.5 - xy[:, 1, None, None]) < radius_px
        in_frame = (col >= 0) & (col < cols) & (row >= 0) & (row < rows)
        inside = np.count_nonzero(in_disc & in_frame, axis=(1, 2)) * px_um2
        values.extend(emitters / np.maximum(inside, px_um2))
    return float(np.mean(values)) if values else 0.0


def phi_name(phi_model: str, psi) -> str:
    """The phi to run: the one asked for, except that with the default ("phi") and a psi
    trained on another bundled phi, the posterior conditions on that one (store.BUNDLED)."""
    from ..models.store import paired_bundled_phi

    if psi is not None and phi_model == "phi":
        return paired_bundled_phi(psi) or phi_model
    return phi_model


def pairing_warning(phi, psi) -> list[str]:
    """One sentence when psi was trained on the output of another phi file than this one."""
    from ..models.store import sha256_of

    trained_on = psi.training.get("phi_sha256")
    if not trained_on or phi.path is None or sha256_of(phi.path) == trained_on:
        return []
    return [
        f"The psi model ({psi.path.name if psi.path else 'psi'}) was trained on another phi than "
        f"{phi.path.name}; its posterior is only meaningful with the phi it was trained on."
    ]


def full_sampling_warning(psi, sampler) -> list[str]:
    """One sentence when full sampling is asked of a psi that cannot do it reliably: noise
    prediction on a schedule that reaches noise divides the network's error by
    sqrt(gamma_t) near t = T (docs/models.md, psi v2 sampler)."""
    schedule = psi.schedule
    if (
        sampler.mode != "full"
        or schedule is None
        or schedule.kind != "cosine"
        or getattr(psi.module, "prediction", "eps") != "eps"
    ):
        return []
    return [
        f"Full sampling with this psi ({psi.path.name if psi.path else 'psi'}, noise prediction on the cosine "
        "schedule) is unreliable from t = T: its samples are far too wide. Use accelerated sampling, or a psi "
        "trained with --prediction v."
    ]


def choose_psi(
    result: Reconstruction,
    psi,
    load,
    kdes: np.ndarray,
    photons: np.ndarray,
    background: np.ndarray,
    first_index: int,
    measured: dict[int, Localizations],
):
    """``psi_model="auto"``: the sparse-prior psi (store.SPARSE_PSI) when the first chunk's
    frames' local density is at most SPARSE_PSI_MAX_LOCAL_DENSITY_PER_UM2, else ``psi``
    (the bundled one, trained on 0.05-4 /um^2). A psi hedges for the unresolved neighbours its
    prior puts under a fit; on sparse data the broad prior's hedge is too wide (docs/models.md).
    The choice and its reason go to ``result.psi_model`` / ``psi_choice``. ``load(name)``
    loads a bundled model."""
    from ..models.store import SPARSE_PSI, bundled_path

    settings = result.settings
    if not bundled_path(SPARSE_PSI).is_file():  # an installation without it: the bundled psi
        result.psi_model, result.psi_choice = "psi", f"{SPARSE_PSI} is not installed"
        return psi
    candidates = chunk_candidates(kdes, photons, background, first_index, measured, settings)
    # the fitted localizations (split where two emitters explain a spot better, detection knob
    # applied), weighted by phi's mass: phi's candidates alone count noise at 200 photons
    tables = refine_frames(candidates, photons, background, result.psf_sigma_px, settings)
    density = local_density(tables, photons.shape[-2:], settings.pixel_size_nm)
    limit = SPARSE_PSI_MAX_LOCAL_DENSITY_PER_UM2
    sparse = density <= limit
    result.psi_model = SPARSE_PSI if sparse else "psi"
    result.psi_choice = (
        f"local density {density:.2f} emitters per um^2 in the first {len(tables)} frames; "
        f"{SPARSE_PSI} (for up to {limit:g}) " + ("is used" if sparse else "is not")
    )
    if not sparse:
        return psi
    chosen = load(SPARSE_PSI)
    # the run was set up for psi's inputs and plan: the sparse one must read and sample alike
    same = ("target", "condition", "frame_channels", "prediction")
    if any(chosen.module.config.get(k) != psi.module.config.get(k) for k in same):
        raise SmlmInputError(
            f"the installed {SPARSE_PSI} model does not read the same inputs as psi; "
            "reinstall napari-smlm-diffusion or name the psi model (--psi psi)"
        )
    return chosen
