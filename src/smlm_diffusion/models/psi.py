"""Conditional denoiser psi: SR3-style U-Nets (Saharia et al. 2021; primary paper A.6)
with a sinusoidal time embedding, residual blocks with GroupNorm/SiLU, self-attention at
the lowest resolution, predicting the noise eps.

``ConditionalUNet`` (version 1, the paper's layout) runs on the 4x KDE grid with input
concat(y_t, phi's KDE). ``CameraPsi`` (version 2) runs at camera resolution: a
space-to-depth stem (PixelUnshuffle(4)) gives each camera pixel its 16 KDE pixels of y_t
and of phi's KDE as channels, the normalised raw frame (the data itself) joins there, and a
depth-to-space head (PixelShuffle(4)) returns the noise on the 4x grid. With
``target="residual"`` it models y - phi(x), the mismatch the paper says the DDPM needs;
with ``prediction="v"`` it outputs v instead of the noise (``schedule.predict_y0``).
With ``condition="refined"`` its condition is the KDE of the likelihood-refined
localizations, its third frame channel their precision and a fourth, if it reads one, the
fits' Poisson residual (``models.conditioning``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer sinusoidal embedding of integer steps t -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, channels), channels)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, time_dim: int) -> None:
        super().__init__()
        self.block1 = nn.Sequential(_norm(cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1))
        self.time = nn.Sequential(nn.SiLU(), nn.Linear(time_dim, cout))
        self.block2 = nn.Sequential(_norm(cout), nn.SiLU(), nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.block1(x) + self.time(temb)[:, :, None, None]
        return self.block2(h) + self.skip(x)


class SelfAttention(nn.Module):
    def __init__(self, channels: int, heads: int = 4) -> None:
        super().__init__()
        self.norm = _norm(channels)
        self.attn = nn.MultiheadAttention(channels, heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        seq = self.norm(x).flatten(2).transpose(1, 2)
        out, _ = self.attn(seq, seq, seq, need_weights=False)
        return x + out.transpose(1, 2).reshape(b, c, h, w)


class ConditionalUNet(nn.Module):
    """(y_t (B,1,H,W), condition (B,1,H,W), t (B,)) -> predicted noise (B,1,H,W).
    H and W must be divisible by 2 ** (len(multipliers) - 1)."""

    def __init__(
        self, channels: int = 32, multipliers: tuple[int, ...] = (1, 2, 2), heads: int = 4, in_channels: int = 2
    ) -> None:
        super().__init__()
        self.config = {"channels": channels, "multipliers": list(multipliers), "heads": heads}
        if in_channels != 2:  # 1: unconditional (the structure generator); files without the key have 2
            self.config["in_channels"] = in_channels
        self.factor = 2 ** (len(multipliers) - 1)
        time_dim = channels * 4
        self.time_dim = channels
        self.time_mlp = nn.Sequential(nn.Linear(channels, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.stem = nn.Conv2d(in_channels, channels, 3, padding=1)
        widths = [channels * m for m in multipliers]
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        cin = channels
        for i, width in enumerate(widths):
            self.down.append(ResBlock(cin, width, time_dim))
            last = i == len(widths) - 1
            self.downsample.append(nn.Identity() if last else nn.Conv2d(width, width, 3, stride=2, padding=1))
            cin = width
        self.mid1 = ResBlock(cin, cin, time_dim)
        self.mid_attn = SelfAttention(cin, heads)
        self.mid2 = ResBlock(cin, cin, time_dim)
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, width in reversed(list(enumerate(widths))):
            self.up.append(ResBlock(cin + width, width, time_dim))
            self.upsample.append(
                nn.Identity()
                if i == 0
                else nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width, widths[i - 1], 3, padding=1)
                )
            )
            cin = width if i == 0 else widths[i - 1]
        self.head = nn.Sequential(_norm(cin), nn.SiLU(), nn.Conv2d(cin, 1, 3, padding=1))

    def forward(self, y_t: torch.Tensor, condition: torch.Tensor | None, t: torch.Tensor) -> torch.Tensor:
        if y_t.shape[-1] % self.factor or y_t.shape[-2] % self.factor:
            raise ValueError(f"psi needs tiles whose sides are multiples of {self.factor}")
        temb = self.time_mlp(timestep_embedding(t, self.time_dim))
        h = self.stem(y_t if condition is None else torch.cat([y_t, condition], dim=1))
        skips = []
        for block, down in zip(self.down, self.downsample):
            h = block(h, temb)
            skips.append(h)
            h = down(h)
        h = self.mid2(self.mid_attn(self.mid1(h, temb)), temb)
        for block, up in zip(self.up, self.upsample):
            h = up(block(torch.cat([h, skips.pop()], dim=1), temb))
        return self.head(h)


class CameraPsi(nn.Module):
    """(y_t (B,1,4H,4W), phi KDE (B,1,4H,4W), t (B,), frame (B,F,H,W)) -> noise (B,1,4H,4W),
    or v = sqrt(gamma_t) eps - sqrt(1 - gamma_t) y0 with ``prediction="v"`` (version 3).

    ``blocks`` residual blocks per level; any H, W (inputs are zero-padded to a multiple
    of the U-Net's down-sampling factor and the output cropped back)."""

    uses_frame = True

    def __init__(
        self,
        channels: int = 32,
        multipliers: tuple[int, ...] = (1, 2, 2),
        blocks: int = 1,
        heads: int = 4,
        frame_channels: int = 2,
        upsampling: int = 4,
        target: str = "residual",
        prediction: str = "eps",
        condition: str = "phi",
        z_clip: float | None = None,
    ) -> None:
        super().__init__()
        if condition not in ("phi", "refined"):
            raise ValueError("psi's condition must be 'phi' (phi's KDE) or 'refined' (the refined localizations)")
        if condition == "refined" and (target not in ("residual", "scaled") or frame_channels not in (3, 4)):
            raise ValueError(
                "a psi conditioned on refined localizations models the (scaled) residual and reads "
                "3 frame channels (4 with the fits' residual)"
            )
        if target not in ("residual", "kde", "scaled"):
            raise ValueError("psi's target must be 'residual', 'kde' or 'scaled'")
        if target == "scaled" and condition != "refined":
            raise ValueError("a psi with the scaled residual is conditioned on refined localizations")
        if prediction not in ("eps", "v"):
            raise ValueError("psi's prediction must be 'eps' or 'v'")
        if z_clip is not None and (target != "scaled" or not z_clip > 0):
            raise ValueError("a bound on the residual (z_clip > 0) is for a psi with the scaled residual")
        self.config = {
            "architecture": "camera",
            "channels": channels,
            "multipliers": list(multipliers),
            "blocks": blocks,
            "heads": heads,
            "frame_channels": frame_channels,
            "upsampling": upsampling,
            "target": target,
        }
        if prediction != "eps":  # files without the key predict the noise
            self.config["prediction"] = prediction
        if condition != "phi":  # files without the key are conditioned on phi's KDE
            self.config["condition"] = condition
        self.condition = condition
        self.target = target
        self.z_clip = set_z_clip(self, z_clip)
        self.prediction = prediction
        self.upsampling = upsampling
        self.factor = 2 ** (len(multipliers) - 1)
        time_dim = channels * 4
        self.time_dim = channels
        self.time_mlp = nn.Sequential(nn.Linear(channels, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.unshuffle = nn.PixelUnshuffle(upsampling)
        self.stem = nn.Conv2d(2 * upsampling**2 + frame_channels, channels, 3, padding=1)
        widths = [channels * m for m in multipliers]
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        cin, skip_widths = channels, []
        for i, width in enumerate(widths):
            for _ in range(blocks):
                self.down.append(ResBlock(cin, width, time_dim))
                cin = width
                skip_widths.append(width)
            self.downsample.append(
                nn.Identity() if i == len(widths) - 1 else nn.Conv2d(width, width, 3, stride=2, padding=1)
            )
        self.mid1 = ResBlock(cin, cin, time_dim)
        self.mid_attn = SelfAttention(cin, heads)
        self.mid2 = ResBlock(cin, cin, time_dim)
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, width in reversed(list(enumerate(widths))):
            for _ in range(blocks):
                self.up.append(ResBlock(cin + skip_widths.pop(), width, time_dim))
                cin = width
            self.upsample.append(
                nn.Identity()
                if i == 0
                else nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width, widths[i - 1], 3, padding=1)
                )
            )
            cin = width if i == 0 else widths[i - 1]
        self.head = nn.Sequential(
            _norm(cin), nn.SiLU(), nn.Conv2d(cin, upsampling**2, 3, padding=1), nn.PixelShuffle(upsampling)
        )
        self.blocks = blocks

    def forward(self, y_t: torch.Tensor, condition: torch.Tensor, t: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        u, h, w = self.upsampling, frame.shape[-2], frame.shape[-1]
        if y_t.shape[-2:] != (u * h, u * w) or condition.shape[-2:] != y_t.shape[-2:]:
            raise ValueError(f"psi needs KDE maps {u}x the frame's size")
        temb = self.time_mlp(timestep_embedding(t, self.time_dim))
        x = torch.cat([self.unshuffle(y_t), self.unshuffle(condition), frame], dim=1)
        pad_h, pad_w = -h % self.factor, -w % self.factor
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        hidden = self.stem(x)
        skips = []
        k = 0
        for down in self.downsample:
            for _ in range(self.blocks):
                hidden = self.down[k](hidden, temb)
                k += 1
                skips.append(hidden)
            hidden = down(hidden)
        hidden = self.mid2(self.mid_attn(self.mid1(hidden, temb)), temb)
        k = 0
        for up in self.upsample:
            for _ in range(self.blocks):
                hidden = self.up[k](torch.cat([hidden, skips.pop()], dim=1), temb)
                k += 1
            hidden = up(hidden)
        return self.head(hidden)[..., : u * h, : u * w]


def set_z_clip(psi: nn.Module, z_clip: float | None) -> float | None:
    """Record a scaled psi's bound on its residual z (|z| <= z_clip, the same in training and
    sampling; None: unbounded, the files without the key) in its config, and return it."""
    if z_clip is None:
        psi.config.pop("z_clip", None)
    else:
        psi.config["z_clip"] = float(z_clip)
    psi.z_clip = None if z_clip is None else float(z_clip)
    return psi.z_clip


def build_psi(config: dict) -> nn.Module:
    """The psi module a model file's ``config`` describes (no "architecture": ConditionalUNet)."""
    config = {k: (tuple(v) if isinstance(v, list) else v) for k, v in config.items()}
    if config.pop("architecture", "unet4x") == "camera":
        return CameraPsi(**config)
    return ConditionalUNet(**config)
