"""Conditional denoiser psi: a small SR3-style U-Net (Saharia et al. 2021; primary paper
A.6). Input concat(y_t, phi's KDE); sinusoidal time embedding; residual blocks with
GroupNorm/SiLU; self-attention at the lowest resolution; predicts the noise eps."""

from __future__ import annotations

import math

import torch
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

    def __init__(self, channels: int = 32, multipliers: tuple[int, ...] = (1, 2, 2), heads: int = 4) -> None:
        super().__init__()
        self.config = {"channels": channels, "multipliers": list(multipliers), "heads": heads}
        self.factor = 2 ** (len(multipliers) - 1)
        time_dim = channels * 4
        self.time_dim = channels
        self.time_mlp = nn.Sequential(nn.Linear(channels, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        self.stem = nn.Conv2d(2, channels, 3, padding=1)
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
            self.upsample.append(nn.Identity() if i == 0 else nn.Sequential(
                nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(width, widths[i - 1], 3, padding=1)))
            cin = width if i == 0 else widths[i - 1]
        self.head = nn.Sequential(_norm(cin), nn.SiLU(), nn.Conv2d(cin, 1, 3, padding=1))

    def forward(self, y_t: torch.Tensor, condition: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if y_t.shape[-1] % self.factor or y_t.shape[-2] % self.factor:
            raise ValueError(f"psi needs tiles whose sides are multiples of {self.factor}")
        temb = self.time_mlp(timestep_embedding(t, self.time_dim))
        h = self.stem(torch.cat([y_t, condition], dim=1))
        skips = []
        for block, down in zip(self.down, self.downsample):
            h = block(h, temb)
            skips.append(h)
            h = down(h)
        h = self.mid2(self.mid_attn(self.mid1(h, temb)), temb)
        for block, up in zip(self.up, self.upsample):
            h = up(block(torch.cat([h, skips.pop()], dim=1), temb))
        return self.head(h)
