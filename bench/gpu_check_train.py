"""The trainer's step on one GPU: PixArt-XL-2 at 256 px on precomputed-feature-shaped inputs.

The step is trainer/loop.py's, on its own parts (build_transformer, model_forward, GaussianDiffusion):
caption dropout, timesteps and noise from the trainer's generator, q_sample, the forward under bf16
autocast, the hybrid MSE + VB loss, backward, gradient clipping, AdamW with the job's defaults, and the
EMA update. Inputs are what `pixcap encode` stores: 4 x 32 x 32 latents and 120 T5-XXL tokens of 4096
channels with a mask (captions of random length). Random weights; figures only.

Variants on one model: eager (SDPA picks its kernel), eager with SDPA held to flash and memory-efficient
attention (flash for the unmasked self-attention; the masked cross-attention cannot take flash), and
torch.compile. Each gives steps/s, images/s, peak memory and model FLOPs utilisation: the step's
forward and backward FLOPs (torch's FlopCounterMode, counted once) over the matrix product's rate
measured by the device part.
"""
from __future__ import annotations

import copy
import dataclasses

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from bench.gpu_check import ASSUMED_PEAK_FLOPS
from bench.device_timing import peak_gib, reset_peak, timed

WARM_UP_STEPS = 3  # the first compiles, for the compiled variant
FLASH_OR_EFFICIENT = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]


@torch.no_grad()
def update_ema(ema, model, decay: float) -> None:
    # trainer/loop.py's update_ema, written out here: importing the loop pulls in the data stream's
    # packages (webdataset, s3fs) that the GPU machine lacks and this step never uses.
    for e, p in zip(ema.parameters(), model.parameters()):
        if p.requires_grad:
            e.lerp_(p, 1.0 - decay)


def job_default(name: str):
    from pixcap.schemas.train_job import TrainJob

    return next(f.default for f in dataclasses.fields(TrainJob) if f.name == name)


class TrainStep:
    """The trainer's step on one fixed batch of precomputed-feature-shaped inputs."""

    def __init__(self, shape, device: str):
        from pixcap.trainer.diffusion import GaussianDiffusion
        from pixcap.trainer.model import build_transformer

        self.device = torch.device(device)
        with torch.device(device):  # initialised where it trains: no 2.4 GB copy from the CPU
            self.model = build_transformer(shape.train_size, shape.train_resolution, shape.train_caption_channels, seed=0)
        self.ema = copy.deepcopy(self.model).eval().requires_grad_(False)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=job_default("lr"),
                                           weight_decay=job_default("weight_decay"), eps=job_default("eps"))
        self.diffusion = GaussianDiffusion()
        self.generator = torch.Generator(device).manual_seed(0)
        n, side, tokens = shape.train_batch, shape.train_resolution // 8, shape.train_tokens
        self.x0 = torch.randn(n, 4, side, side, device=device, generator=self.generator)
        self.emb = torch.randn(n, tokens, shape.train_caption_channels, device=device, generator=self.generator)
        lengths = torch.randint(tokens // 4, tokens + 1, (n, 1), device=device, generator=self.generator)
        self.mask = (torch.arange(tokens, device=device)[None] < lengths).long()
        self.null_emb = torch.randn(1, tokens, shape.train_caption_channels, device=device, generator=self.generator)
        self.null_mask = torch.ones(1, tokens, dtype=torch.long, device=device)
        self.net = self.model
        self.autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda")

    def loss(self):
        """Forward and loss, as loop.py computes them."""
        from pixcap.trainer.model import model_forward

        n = self.x0.shape[0]
        drop = torch.rand(n, generator=self.generator, device=self.device) < job_default("caption_dropout")
        emb = torch.where(drop[:, None, None], self.null_emb.to(self.emb.dtype), self.emb)
        mask = torch.where(drop[:, None], self.null_mask, self.mask)
        t = torch.randint(0, self.diffusion.num_timesteps, (n,), generator=self.generator, device=self.device)
        noise = torch.randn(self.x0.shape, generator=self.generator, device=self.device, dtype=self.x0.dtype)
        x_t = self.diffusion.q_sample(self.x0, t, noise)
        with self.autocast:
            output = model_forward(self.net, x_t, t, emb, mask)
        return self.diffusion.training_losses(output, self.x0, x_t, t, noise)["loss"].mean()

    def __call__(self) -> None:
        self.loss().backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), job_default("grad_clip"))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        update_ema(self.ema, self.model, job_default("ema_decay"))

    def flops(self) -> int:
        """The forward's and backward's FLOPs of one step: its matrix products, attention's among them.
        Counted with SDPA on its math path, whose products torch counts on every device (its CPU flash
        kernel goes uncounted); the FLOPs are the same whichever kernel runs them."""
        counter = FlopCounterMode(display=False)
        with counter, sdpa_kernel([SDPBackend.MATH]):
            self.loss().backward()
        self.optimizer.zero_grad(set_to_none=True)
        return counter.get_total_flops()


def sdpa_backends(shape, device: str) -> dict:
    """Which SDPA kernels take the step's self-attention (no mask) and cross-attention (a key mask)."""
    from pixcap.schemas.models import TRANSFORMER_SIZES

    trunk = TRANSFORMER_SIZES[shape.train_size]
    heads, dim = trunk["num_attention_heads"], trunk["attention_head_dim"]
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    patches = (shape.train_resolution // 16) ** 2
    q = torch.randn(2, heads, patches, dim, device=device, dtype=dtype)
    kv = torch.randn(2, heads, shape.train_tokens, dim, device=device, dtype=dtype)
    mask = torch.zeros(2, 1, patches, shape.train_tokens, device=device, dtype=dtype)
    found = {}
    for kind, args in (("self", (q, q, q, None)), ("cross_masked", (q, kv, kv, mask))):
        for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION):
            try:
                with sdpa_kernel([backend]):
                    torch.nn.functional.scaled_dot_product_attention(*args[:3], attn_mask=args[3])
                found[f"{kind} {backend.name.lower()}"] = "ok"
            except RuntimeError as e:
                found[f"{kind} {backend.name.lower()}"] = f"no: {str(e).splitlines()[0][:120]}"
    return found


def run(shape, clock, note, context) -> dict:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    built, step = timed(lambda: TrainStep(shape, device))
    flops = step.flops()
    ceiling = context.get("ceilings", {}).get("matmul_flops_per_s")
    peak = ceiling or (ASSUMED_PEAK_FLOPS if device == "cuda" else None)
    found = {"size": shape.train_size, "resolution": shape.train_resolution, "batch_size": shape.train_batch,
             "parameters": sum(p.numel() for p in step.model.parameters()), "build_s": built,
             "flops_per_step": flops, "flops_per_image": flops / shape.train_batch, "peak_flops_per_s": peak,
             "peak_source": "measured" if ceiling else "assumed", "sdpa": sdpa_backends(shape, device), "variants": {}}
    note("build", {k: v for k, v in found.items() if k != "variants"})
    # On a CPU the compiled variant traces with dynamo alone (backend eager): the check of the code path
    # stays seconds long; on a GPU it is inductor, what torch.compile gives by default.
    compile_backend = "inductor" if device == "cuda" else "eager"
    plan = [("eager", None, False), ("eager, SDPA flash + efficient", FLASH_OR_EFFICIENT, False),
            (f"compiled ({compile_backend})", None, True)]
    for name, backends, compiled in plan:
        needed = 60 if compiled and device == "cuda" else 5
        if clock.left() < needed:
            result = {"skipped": f"{clock.left():.0f} s left of the part's budget, {needed} s needed"}
        else:
            try:
                result = measure(step, shape, backends, compiled, compile_backend, flops, peak)
            except Exception as e:  # a compile error or out of memory is this variant's row
                result = {"error": f"{type(e).__name__}: {e}"[:1000]}
                reset_peak()
        found["variants"][name] = result
        note(name, result)
    return found


def measure(step, shape, backends, compiled: bool, compile_backend: str, flops: int, peak) -> dict:
    step.net = torch.compile(step.model, backend=compile_backend) if compiled else step.model
    reset_peak()

    def steps(count: int):
        if backends:
            with sdpa_kernel(backends):
                for _ in range(count):
                    step()
        else:
            for _ in range(count):
                step()

    warm_up, _ = timed(lambda: steps(WARM_UP_STEPS))
    seconds, _ = timed(lambda: steps(shape.train_steps))
    rate = shape.train_steps / seconds
    step.net = step.model
    return {"steps_per_s": rate, "images_per_s": rate * shape.train_batch, "warm_up_s": warm_up,
            "peak_gib": peak_gib(), "mfu": flops * rate / peak if peak else None}
