"""Inference copies of the networks, made once per loaded model and dtype: channels-last
weights (the CPU convolutions run 1.5-2.5x faster on them, docs/performance.md), for phi
BatchNorm folded into the convolutions (``models.phi.inference_copy``), and optionally
bfloat16 arithmetic (``reduced_precision``). The float32 copies give the same outputs to
float precision; training never sees them."""

from __future__ import annotations

import contextlib
import copy
import weakref

import torch
import torch.nn.functional as F

_COPIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def channels_last_copy(module: torch.nn.Module) -> torch.nn.Module:
    """An eval-mode, channels-last copy of ``module``."""
    return copy.deepcopy(module).eval().to(memory_format=torch.channels_last)


def inference_module(module: torch.nn.Module, make=channels_last_copy, dtype=None) -> torch.nn.Module:
    """``make(module)``, in ``dtype`` when one is given (``reduced_precision``), cached while
    the module lives; made again when its weights change (a parameter or buffer is written in
    place, or the module moves to another device)."""
    state = _state(module)
    copies = _COPIES.setdefault(module, {})
    cached = copies.get((make, dtype))
    if cached is None or cached[1] != state:
        fast = make(module)
        cached = (fast if dtype is None else reduced_precision(fast, dtype), state)
        copies[(make, dtype)] = cached
    return cached[0]


class Float32GroupNorm(torch.nn.GroupNorm):
    """GroupNorm computed in float32 on any input (its statistics need float32, and on the
    CPU the bfloat16 kernel is 2-3x slower than the float32 one: docs/performance.md)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x.float(), self.num_groups, self.weight, self.bias, self.eps)


class Float32Island(torch.nn.Module):
    """A submodule run in float32 inside an autocast region (autocast off, float inputs)."""

    def __init__(self, module: torch.nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *args):
        with torch.autocast(args[0].device.type, enabled=False):
            return self.module(*(a.float() if torch.is_floating_point(a) else a for a in args))


#: psi's parts kept in float32 under bfloat16: the input stem (it reads y_t, whose small
#: noise at the last steps bfloat16 would round away), the time embedding and the output head
FLOAT32_PARTS = ("stem", "time_mlp", "head")


def reduced_precision(module: torch.nn.Module, dtype) -> torch.nn.Module:
    """``module`` (an inference copy) for running under ``torch.autocast`` in ``dtype``: its
    GroupNorms compute in float32 (``Float32GroupNorm``); a module with no normalisation
    left (phi's copy, BatchNorm folded) gets its weights in ``dtype``, so that no cast is
    repeated per call."""
    norms = (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm)
    if not any(isinstance(m, norms) for m in module.modules()):
        return module.to(dtype)
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is torch.nn.GroupNorm:
                replacement = Float32GroupNorm(child.num_groups, child.num_channels, child.eps, child.affine)
                replacement.load_state_dict(child.state_dict())
                setattr(parent, name, replacement.to(child.weight.device))
    for name in FLOAT32_PARTS:
        if isinstance(getattr(module, name, None), torch.nn.Module):
            setattr(module, name, Float32Island(getattr(module, name)))
    return module


def autocast(device, dtype):
    """A ``torch.autocast`` context for ``dtype`` on ``device``, or a no-op for None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def _state(module: torch.nn.Module) -> tuple:
    """Versions and devices of the module's tensors: changes when any is written or moved."""
    return tuple((t._version, t.device, t.data_ptr()) for t in (*module.parameters(), *module.buffers()))


def channels_last(tensor: torch.Tensor | None) -> torch.Tensor | None:
    """A 4-D tensor in channels-last layout (other tensors and None unchanged)."""
    if tensor is None or tensor.dim() != 4:
        return tensor
    return tensor.contiguous(memory_format=torch.channels_last)
