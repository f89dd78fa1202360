"""Inference copies of the networks, made once per loaded model: channels-last weights
(the CPU convolutions run 1.5-2.5x faster on them, docs/performance.md) and, for phi,
BatchNorm folded into the convolutions (``models.phi.inference_copy``). The copies
give the same outputs to float precision; training never sees them."""

from __future__ import annotations

import copy
import weakref

import torch

_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def channels_last_copy(module: torch.nn.Module) -> torch.nn.Module:
    """An eval-mode, channels-last copy of ``module``."""
    return copy.deepcopy(module).eval().to(memory_format=torch.channels_last)


def inference_module(module: torch.nn.Module, make=channels_last_copy) -> torch.nn.Module:
    """``make(module)``, cached while the module lives; made again when its weights change
    (a parameter or buffer is written in place, or the module moves to another device)."""
    state = _state(module)
    cached = _COPIES.get(module)
    if cached is None or cached[1] != state:
        cached = (make(module), state)
        _COPIES[module] = cached
    return cached[0]


def _state(module: torch.nn.Module) -> tuple:
    """Versions and devices of the module's tensors: changes when any is written or moved."""
    return tuple((t._version, t.device, t.data_ptr()) for t in (*module.parameters(), *module.buffers()))


def channels_last(tensor: torch.Tensor | None) -> torch.Tensor | None:
    """A 4-D tensor in channels-last layout (other tensors and None unchanged)."""
    if tensor is None or tensor.dim() != 4:
        return tensor
    return tensor.contiguous(memory_format=torch.channels_last)
