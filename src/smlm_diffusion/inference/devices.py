"""Compute devices: ``auto`` = CUDA, then MPS, then CPU. torch is imported lazily so
that importing the package (or the napari plugin) stays fast."""

from __future__ import annotations

from ..errors import SmlmInputError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
#: arithmetic of the networks' convolutions: "auto" = bfloat16 on a CPU that computes it
#: natively (AVX512-BF16 or AMX), float32 elsewhere; docs/performance.md, reduced precision
PRECISION_CHOICES = ("auto", "float32", "bfloat16")


def available_devices() -> list[str]:
    """Devices present on this machine, best first (always ends with ``cpu``)."""
    import torch

    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found + ["cpu"]


def resolve_device(name: str = "auto"):
    """A ``torch.device`` for ``name``; a clear error when it is not present."""
    import torch

    name = (name or "auto").lower()
    if name not in DEVICE_CHOICES and not name.startswith("cuda:"):
        raise SmlmInputError(f"Unknown device '{name}'; choose one of {', '.join(DEVICE_CHOICES)}.")
    present = available_devices()
    if name == "auto":
        return torch.device(present[0])
    base = name.split(":")[0]
    if base not in present:
        raise SmlmInputError(
            f"Device '{name}' is not available on this machine (found: {', '.join(present)}); use --device auto or cpu."
        )
    return torch.device(name)


def native_bfloat16_cpu() -> bool:
    """Whether this CPU computes bfloat16 natively (x86 AVX512-BF16 or AMX-BF16 on Linux),
    so that oneDNN's bfloat16 convolutions are faster than float32 ones. Elsewhere oneDNN
    may emulate bfloat16, which is slower, and ``auto`` keeps float32."""
    import torch

    try:
        if not torch.backends.mkldnn.is_available() or not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            return False
        with open("/proc/cpuinfo") as cpuinfo:
            flags = next((line for line in cpuinfo if line.startswith("flags")), "").split()
    except (OSError, RuntimeError, AttributeError):
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def inference_dtype(device, precision: str = "auto"):
    """The dtype of a network's convolutions for ``precision`` on ``device``: None for
    float32, or ``torch.bfloat16``. "auto" gives bfloat16 on a CPU with native bfloat16
    (``native_bfloat16_cpu``: phi 2.4x, psi 1.2-1.4x faster, with psi's input stem, time
    embedding and head kept in float32, ``fast_modules.FLOAT32_PARTS``; the same accuracy and
    coverage, docs/performance.md) and float32 on GPUs (not measured there)."""
    import torch

    precision = (precision or "auto").lower()
    if precision not in PRECISION_CHOICES:
        raise SmlmInputError(f"Unknown precision '{precision}'; choose one of {', '.join(PRECISION_CHOICES)}.")
    if precision == "bfloat16":
        return torch.bfloat16
    if precision == "auto" and torch.device(device).type == "cpu" and native_bfloat16_cpu():
        return torch.bfloat16
    return None
