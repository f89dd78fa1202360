"""CNN phi: frame -> KDE on the 4x grid, trained with MSE to the KDE.

``DeepStormPhi`` is the DeepSTORM-style network of the primary paper (appendix A.6;
Nehme et al. 2020): dilated-conv context aggregation, two 2x nearest-neighbour
resize-convolutions (4x), three refinement convolutions and an element-wise HardTanh.

``ShufflePhi`` (version 2) keeps the dilated context module but computes everything at
camera resolution: a sub-pixel-convolution head (Shi et al. 2016) predicts the 16 KDE
pixels of each camera pixel as channels (the sigma_y = 3 KDE is smooth on the 4x grid),
PixelShuffle(4) places them, and one light 3x3 convolution on 4 channels at 4x smooths
the seams. It takes the two-channel input of normalisation version 2.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv(cin: int, cout: int, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


def _context(in_channels: int, channels: int, dilations) -> nn.Sequential:
    layers = [_conv(in_channels, channels)]
    layers += [_conv(channels, channels, d) for d in dilations]
    return nn.Sequential(*layers)


class DeepStormPhi(nn.Module):
    """(B, 1, H, W) normalised frame -> (B, 1, 4H, 4W) KDE estimate in ``[0, max_value]``."""

    def __init__(
        self, channels: int = 32, dilations: tuple[int, ...] = (1, 2, 4, 8, 4, 2, 1), max_value: float = 8.0
    ) -> None:
        super().__init__()
        self.config = {"channels": channels, "dilations": list(dilations), "max_value": max_value}
        self.context = _context(1, channels, dilations)
        self.upsample = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            _conv(channels, channels),
            nn.Upsample(scale_factor=2, mode="nearest"),
            _conv(channels, channels // 2),
        )
        half = channels // 2
        self.refine = nn.Sequential(_conv(half, half), _conv(half, half), _conv(half, half), nn.Conv2d(half, 1, 1))
        self.output = nn.Hardtanh(0.0, max_value)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.output(self.refine(self.upsample(self.context(frames))))


class ShufflePhi(nn.Module):
    """(B, in_channels, H, W) normalised frame -> (B, 1, 4H, 4W) KDE in ``[0, max_value]``;
    every convolution but the last runs at camera resolution."""

    def __init__(
        self,
        channels: int = 48,
        dilations: tuple[int, ...] = (1, 2, 4, 8, 4, 2, 1),
        in_channels: int = 2,
        max_value: float = 8.0,
        upsampling: int = 4,
    ) -> None:
        super().__init__()
        self.config = {
            "architecture": "shuffle",
            "channels": channels,
            "dilations": list(dilations),
            "in_channels": in_channels,
            "max_value": max_value,
            "upsampling": upsampling,
        }
        self.context = _context(in_channels, channels, dilations)
        self.head = nn.Sequential(
            _conv(channels, channels),
            nn.Conv2d(channels, 4 * upsampling**2, 3, padding=1),
            nn.PixelShuffle(upsampling),
            nn.ReLU(inplace=True),
            nn.Conv2d(4, 1, 3, padding=1),
        )
        self.output = nn.Hardtanh(0.0, max_value)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.output(self.head(self.context(frames)))


def build_phi(config: dict) -> nn.Module:
    """The phi module a model file's ``config`` describes (no "architecture": DeepStormPhi)."""
    config = {k: (tuple(v) if isinstance(v, list) else v) for k, v in config.items()}
    if config.pop("architecture", "deepstorm") == "shuffle":
        return ShufflePhi(**config)
    return DeepStormPhi(**config)


def inference_copy(module: nn.Module) -> nn.Module:
    """An eval-mode copy of phi for inference only: each Conv2d followed by BatchNorm2d is
    folded into one convolution (the same output to float precision) and the weights are
    laid out channels-last, which the CPU convolutions run 1.4-2x faster
    (docs/performance.md, phi path speed). Not for training: it has no BatchNorm left."""
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fast = copy.deepcopy(module).eval()
    for block in fast.modules():
        if isinstance(block, nn.Sequential):
            for i in range(len(block) - 1):
                if isinstance(block[i], nn.Conv2d) and isinstance(block[i + 1], nn.BatchNorm2d):
                    block[i], block[i + 1] = fuse_conv_bn_eval(block[i], block[i + 1]), nn.Identity()
    return fast.to(memory_format=torch.channels_last)
