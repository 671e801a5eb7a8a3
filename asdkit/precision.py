"""Arithmetic precision of training: float32 everywhere, or bfloat16 autocast where the hardware computes in it natively.

``auto`` takes bfloat16 on a CUDA GPU that has it and on a CPU whose instruction set has
native bfloat16 dot products (AVX512-BF16 or AMX, what oneDNN's bf16 kernels need to beat
float32); elsewhere float32, because oneDNN emulates bfloat16 there, usually slower than
float32. Under ``bf16`` the forward passes of training (supervised epochs, MixMatch's label
guessing and mixed batch, the virtual model, SimCLR) and of evaluation run in bfloat16
autocast; the weights, the optimiser and every loss stay float32. Scoring, the losses that
rank samples for a split, is never autocast (:func:`asdkit.engine.predict`).
"""
from __future__ import annotations

from contextlib import nullcontext
from functools import lru_cache
from pathlib import Path

import torch

from .devices import resolve_device

__all__ = ["PRECISIONS", "native_bf16", "resolve_precision", "autocast"]

PRECISIONS = ("auto", "fp32", "bf16")


def _cpu_flags() -> set[str]:
    """The first processor's flags in /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


@lru_cache(maxsize=None)
def _cpu_bf16() -> tuple[bool, str]:
    """Whether this CPU has native bfloat16 (AVX512-BF16 or AMX), and the instruction set that says so."""
    cpu = getattr(torch, "cpu", None)
    amx = bool(getattr(cpu, "_is_amx_tile_supported", lambda: False)())
    avx = bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)())
    if not (amx or avx):  # an older PyTorch without the probes: the kernel's flags
        flags = _cpu_flags()
        amx, avx = "amx_bf16" in flags, "avx512_bf16" in flags
    if amx:
        return True, "this CPU has AMX (native bfloat16 matrix tiles)"
    if avx:
        return True, "this CPU has AVX512-BF16 (native bfloat16 dot products)"
    return False, "this CPU has neither AVX512-BF16 nor AMX, so oneDNN would emulate bfloat16 (slower than float32)"


def native_bf16(device: torch.device | str) -> tuple[bool, str]:
    """Whether ``device`` computes in bfloat16 natively, and why (what :func:`resolve_precision` prints)."""
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():  # a config made on a machine without the GPU it names: the GPU decides at run time
            return True, "a CUDA device (bfloat16 from Ampere on; checked again where it runs)"
        if torch.cuda.is_bf16_supported():
            return True, f"{torch.cuda.get_device_name(device)} has bfloat16"
        return False, f"{torch.cuda.get_device_name(device)} has no bfloat16"
    if device.type == "cpu":
        return _cpu_bf16()
    return False, f"asdkit trains in float32 on {device.type}"


def _device(name: str) -> torch.device:
    """The device a config's 'device' field names, without requiring it to be usable here ('auto': this machine's)."""
    if name == "auto":
        return resolve_device("auto")
    return torch.device(name.split(":")[0])


def resolve_precision(precision: str, device: str | torch.device = "auto") -> tuple[str, str]:
    """``(fp32 | bf16, why)`` for the asked ``precision`` on ``device``; ``bf16`` where the device lacks it raises ValueError.

    A run calls it again on its own device: a config made on another machine may name a bf16 this one lacks.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"The 'precision' field must be one of {list(PRECISIONS)}. Got {precision!r} instead.")
    dev = _device(device) if isinstance(device, str) else device
    native, why = native_bf16(dev)
    if precision == "bf16" and not native:
        raise ValueError(f"The 'precision' field is 'bf16' but {why}; this machine supports 'fp32' (and 'auto', which picks it). "
                         f"Allowed: {list(PRECISIONS)}.")
    if precision == "fp32" and native:
        return "fp32", f"float32 as asked, though {why}"
    return ("bf16" if native and precision != "fp32" else "fp32"), why


def autocast(device: torch.device, precision: str):
    """bfloat16 autocast on ``device`` under ``bf16``; nothing (full precision) under ``fp32``."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision != "fp32":
        raise ValueError(f"precision must be resolved to 'fp32' or 'bf16' before training. Got {precision!r} instead.")
    return nullcontext()
