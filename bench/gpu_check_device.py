"""The device's two ceilings, measured in the same call as the figures they judge (METHOD.md): a bf16
matrix product's rate on random data, and a device-to-device copy's bandwidth (bytes read plus written)."""
from __future__ import annotations

import statistics

import torch


def device_seconds(run, repeats: int) -> float:
    """The median seconds of run() over `repeats` calls after one warm-up, timed with CUDA events on a GPU."""
    run()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            import time

            began = time.perf_counter()
            run()
            times.append(time.perf_counter() - began)
    return statistics.median(times)


def run(shape, clock, note, context) -> dict:
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    side = 8192 if shape.name == "full" else 256
    dtype = torch.bfloat16 if cuda else torch.float32
    generator = torch.Generator(device).manual_seed(0)
    # never zeros: they run faster than real data
    factors = [torch.randn(side, side, device=device, dtype=dtype, generator=generator) for _ in range(2)]
    seconds = device_seconds(lambda: factors[0] @ factors[1], 20 if cuda else 3)
    found = {"matmul_side": side, "matmul_dtype": str(dtype), "matmul_flops_per_s": 2 * side ** 3 / seconds}
    note("matmul", found)
    factors.clear()
    elements = (1 << 30) if shape.name == "full" else (1 << 22)  # 4 GiB of float32 on a GPU: far past the L2
    source = torch.rand(elements, device=device, generator=generator)
    target = torch.empty_like(source)
    seconds = device_seconds(lambda: target.copy_(source), 10 if cuda else 3)
    found.update(copy_bytes=2 * source.numel() * 4, copy_bytes_per_s=2 * source.numel() * 4 / seconds)
    if cuda:
        properties = torch.cuda.get_device_properties(0)
        found.update(name=properties.name, memory_gib=properties.total_memory / 2**30,
                     capability=f"{properties.major}.{properties.minor}", multiprocessors=properties.multi_processor_count)
    return found
