"""Where a run computes: the device a config's 'device' field names, checked to be usable here."""
from __future__ import annotations

import torch

__all__ = ["resolve_device", "CPU_CHUNK", "forward_chunk", "available_memory"]

# Images per no-grad forward pass on a CPU. At 1,024 28×28 images the first layer's activations (100 MB) overflow the
# caches: 256 at a time is 1.6× faster in float32 and 1.4× in bfloat16 (benchmarks/precision.py), with the same bits.
CPU_CHUNK = 256


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; an explicit name must be usable here."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"The 'device' parameter must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'. Got {name!r} instead.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name} was asked for but this PyTorch sees no CUDA GPU; use --device auto or cpu.")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) here.")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"--device {name} was asked for but Apple's MPS backend is not available; use --device auto or cpu.")
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"The 'device' parameter must be 'auto', 'cpu', 'cuda' or 'mps'. Got {name!r} instead.")
    return dev


def forward_chunk(batch_size: int, device: torch.device) -> int:
    """How many images one no-grad forward pass takes: ``batch_size``, at most :data:`CPU_CHUNK` on a CPU (a speed detail: eval mode gives each image the same output in any batch)."""
    return min(batch_size, CPU_CHUNK) if torch.device(device).type == "cpu" else batch_size


def available_memory(device: torch.device | str = "cpu") -> int:
    """Bytes a run may still allocate on ``device``: the GPU's free memory, else the host's MemAvailable (or 8 GiB if unknown)."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 * 2**30
