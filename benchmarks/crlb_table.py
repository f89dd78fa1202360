"""CRLB of an isolated emitter (appendix A.5) next to Mortensen et al. 2010 (prints a table).

python benchmarks/crlb_table.py
"""

from smlm_diffusion.analysis import crlb, mortensen_precision_px

PIXEL_NM = 108.0
SIGMA_PX = 0.92


def main() -> None:
    print(
        f"PSF sigma {SIGMA_PX} px, pixel {PIXEL_NM:g} nm, emitter at (10.3, 10.6) px on a 21x21 window; "
        "per-axis std in nm"
    )
    print(
        f"{'photons':>8s} {'bg/px':>6s} {'CRLB x,y known N,b':>19s} {'CRLB 4 params':>14s} "
        f"{'Mortensen':>10s} {'ratio':>6s} {'CRLB +1.6e- read':>17s}"
    )
    for photons in (200, 1000, 5000):
        for background in (10, 50):
            xy = crlb(10.3, 10.6, photons, background, SIGMA_PX, free=("x", "y"))["x"] * PIXEL_NM
            full = crlb(10.3, 10.6, photons, background, SIGMA_PX)["x"] * PIXEL_NM
            mort = mortensen_precision_px(photons, background, SIGMA_PX) * PIXEL_NM
            read = crlb(10.3, 10.6, photons, background, SIGMA_PX, read_noise_e=1.6)["x"] * PIXEL_NM
            print(f"{photons:8d} {background:6d} {xy:19.2f} {full:14.2f} {mort:10.2f} {full / mort:6.3f} {read:17.2f}")


if __name__ == "__main__":
    main()
