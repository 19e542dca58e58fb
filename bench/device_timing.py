"""Timing and memory on the benchmarks' device: a CUDA GPU when there is one, else the CPU.

CUDA runs kernels asynchronously, so a wall-clock time means something only with the device's
queue drained before and after; these helpers do that, and do nothing extra on the CPU.
"""
from __future__ import annotations

import time

import torch


def first(batch: dict, rows: int) -> dict:
    """The first `rows` rows of a column batch."""
    return {column: values[:rows] for column, values in batch.items()}


def synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(run) -> tuple:
    """(seconds, result) of run(), the device's queue drained before and after."""
    synchronize()
    start = time.perf_counter()
    result = run()
    synchronize()
    return time.perf_counter() - start, result


def peak_gib() -> float:
    """The most memory torch has held on the GPU since the last reset_peak(), in GiB (nan on the CPU)."""
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")


def reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
