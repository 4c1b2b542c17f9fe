"""Where the encoder runs: CUDA with bf16 autocast when present, else CPU (same code path)."""
from __future__ import annotations

import contextlib
import os

import torch

from models.contracts import DEVICES, check_device

__all__ = ["DEVICES", "resolve_device", "autocast", "use_all_cores"]


def resolve_device(name: str = "auto") -> torch.device:
    """auto -> cuda if available else cpu; ValueError for an unknown name or missing CUDA."""
    check_device(name, "device")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but torch sees no CUDA device")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; nothing on CPU (no native bf16 matmuls on most CPUs)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def use_all_cores(device: torch.device) -> None:
    """On CPU, let torch use every core the process may run on (its CPU affinity), unless
    OMP_NUM_THREADS says otherwise (e.g. two trainings sharing a machine: more threads than cores
    makes torch's threads wait on each other and everything many times slower)."""
    if device.type == "cpu" and not os.environ.get("OMP_NUM_THREADS"):
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        torch.set_num_threads(max(1, cores or 1))
