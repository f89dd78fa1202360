"""Tiles with a halo: each tile's network input is its core plus ``halo_px`` of context
on every side (clipped at the frame edge, where the network sees the same zero padding
as on a whole frame); only the core of the output is kept, so the stitched result does
not depend on the tile size once the halo covers the network's receptive field."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Tile:
    """Camera-pixel bounds: the core [r0, r1) x [c0, c1) and the input window around it."""

    r0: int
    r1: int
    c0: int
    c1: int
    in_r0: int
    in_r1: int
    in_c0: int
    in_c1: int

    @property
    def input_shape(self) -> tuple[int, int]:
        return self.in_r1 - self.in_r0, self.in_c1 - self.in_c0

    def core_in_input(self, upsampling: int = 1) -> tuple[slice, slice]:
        """Slices selecting the core inside the (upsampled) tile output."""
        u = upsampling
        return (
            slice((self.r0 - self.in_r0) * u, (self.r1 - self.in_r0) * u),
            slice((self.c0 - self.in_c0) * u, (self.c1 - self.in_c0) * u),
        )

    def core_in_frame(self, upsampling: int = 1) -> tuple[slice, slice]:
        u = upsampling
        return slice(self.r0 * u, self.r1 * u), slice(self.c0 * u, self.c1 * u)


def _splits(length: int, target: int) -> list[tuple[int, int]]:
    """Near-equal pieces of at most ``target`` pixels covering ``length``."""
    n = max(1, math.ceil(length / target))
    edges = np.linspace(0, length, n + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def plan_tiles(height_px: int, width_px: int, core_px: int, halo_px: int) -> list[Tile]:
    """Row-major tiles of cores at most ``core_px`` wide covering the frame."""
    if core_px < 1 or halo_px < 0:
        raise ValueError("the tile core must be at least 1 px and the halo non-negative")
    tiles = []
    for r0, r1 in _splits(height_px, core_px):
        for c0, c1 in _splits(width_px, core_px):
            tiles.append(
                Tile(
                    r0,
                    r1,
                    c0,
                    c1,
                    max(0, r0 - halo_px),
                    min(height_px, r1 + halo_px),
                    max(0, c0 - halo_px),
                    min(width_px, c1 + halo_px),
                )
            )
    return tiles
