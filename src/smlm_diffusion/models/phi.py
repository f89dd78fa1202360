"""DeepSTORM-style CNN phi (primary paper appendix A.6; Nehme et al. 2020): dilated-conv
context aggregation, two 2x nearest-neighbour resize-convolutions (4x), three refinement
convolutions and an element-wise HardTanh. Trained with MSE to the KDE."""

from __future__ import annotations

import torch
from torch import nn


def _conv(cin: int, cout: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DeepStormPhi(nn.Module):
    """(B, 1, H, W) normalised frame -> (B, 1, 4H, 4W) KDE estimate in ``[0, max_value]``."""

    def __init__(self, channels: int = 32, dilations: tuple[int, ...] = (1, 2, 4, 8, 4, 2, 1),
                 max_value: float = 8.0) -> None:
        super().__init__()
        self.config = {"channels": channels, "dilations": list(dilations), "max_value": max_value}
        layers = [_conv(1, channels)]
        layers += [_conv(channels, channels, d) for d in dilations]
        self.context = nn.Sequential(*layers)
        self.upsample = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"), _conv(channels, channels),
            nn.Upsample(scale_factor=2, mode="nearest"), _conv(channels, channels // 2),
        )
        half = channels // 2
        self.refine = nn.Sequential(_conv(half, half), _conv(half, half), _conv(half, half),
                                    nn.Conv2d(half, 1, 1))
        self.output = nn.Hardtanh(0.0, max_value)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.output(self.refine(self.upsample(self.context(frames))))
