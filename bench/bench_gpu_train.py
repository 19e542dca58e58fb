"""GPU training step rate of the PixArt-XL-2 transformer (a benchmark, not a test).

Times the trainer's own step (model_forward under bf16 autocast, the hybrid MSE + VB loss,
AdamW, gradient clipping, EMA) on precomputed-feature-shaped inputs: 4x32x32 latents (256 px)
and 120 T5-XXL tokens of 4096 channels, the stage-2 setting. Random weights; figures only.

    python -m bench.bench_gpu_train [--batch-sizes 32 64] [--steps 10] [--resolution 256]
"""
from __future__ import annotations

import argparse
import copy
import time

import torch

from pixcap.trainer.diffusion import GaussianDiffusion
from pixcap.trainer.loop import update_ema
from pixcap.trainer.model import build_transformer, model_forward


def step_rate(batch_size: int, steps: int, resolution: int, checkpointing: bool) -> tuple:
    device = torch.device("cuda")
    model = build_transformer("XL-2", resolution, 4096).to(device)
    if checkpointing:
        model.enable_gradient_checkpointing()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=3e-2, eps=1e-10)
    diffusion = GaussianDiffusion()
    side = resolution // 8
    x0 = torch.randn(batch_size, 4, side, side, device=device)
    emb = torch.randn(batch_size, 120, 4096, device=device)
    mask = torch.ones(batch_size, 120, dtype=torch.long, device=device)
    torch.cuda.reset_peak_memory_stats()

    def one_step():
        t = torch.randint(0, 1000, (batch_size,), device=device)
        noise = torch.randn_like(x0)
        x_t = diffusion.q_sample(x0, t, noise)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            output = model_forward(model, x_t, t, emb, mask)
        diffusion.training_losses(output, x0, x_t, t, noise)["loss"].mean().backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 0.01)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        update_ema(ema, model, 0.9999)

    for _ in range(2):
        one_step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        one_step()
    torch.cuda.synchronize()
    rate = steps / (time.perf_counter() - start)
    return rate, torch.cuda.max_memory_allocated() / 2**30, sum(p.numel() for p in model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--resolution", type=int, default=256)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench_gpu_train: no CUDA device")
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    for checkpointing in (False, True):
        for size in args.batch_sizes:
            rate, peak, params = step_rate(size, args.steps, args.resolution, checkpointing)
            print(f"XL-2 {args.resolution}px batch {size:3d} checkpointing={checkpointing!s:5}: {rate:5.2f} steps/s"
                  f"  {rate * size:6.1f} images/s  peak {peak:5.1f} GiB  ({params / 1e6:.0f} M params)")
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
