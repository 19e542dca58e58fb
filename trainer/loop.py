"""The PixArt-alpha training loop, nanoGPT style: set up, then one explicit loop over steps.

Run alone or under torchrun (DDP; gloo on CPU, nccl on CUDA). Writes RUN_DIR/log.jsonl,
checkpoints/ (resumed automatically when the same command runs again), sampling/ and, at the end,
pipeline/ (the EMA weights as a diffusers PixArtAlphaPipeline, the raw weights beside them).

Exact resume: every random draw of a step comes from state in the checkpoint (a training generator
for timesteps, noise, caption dropout and the VAE posterior draw, from images or from stored posteriors;
the global RNGs too), and the data stream is a
pure function of (seed, rank, step): it restarts, reseeded, at every checkpoint_every steps, so a
resumed run reads the very batches the uninterrupted run would have.
"""
from __future__ import annotations

import copy
import logging
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from pixcap.schemas import JobError
from pixcap.schemas.records import CAPTION
from pixcap.schemas.train_job import TrainJob

from .adapters import (
    adapt, export_trained, exported_pipeline, sampling_controlnet, sampling_transformer, trainable_parameters,
)
from .checkpoint import barrier, latest_checkpoint, load_checkpoint, load_data_state, save_checkpoint
from .components import load_component
from .data import expand_shards, step_batches
from .controlnet import conditioned
from .diffusion import GaussianDiffusion
from .dreambooth import prior_weighted_loss, with_class_batches
from .export import assemble_pipeline
from .features import check_revisions, check_settings, model_revisions, null_caption_path, stored_null_caption
from .latents import sample_posterior
from .model import build_transformer, model_forward
from .resolve import resolve_models
from .run_folder import SAMPLING_DIR, step_name
from .sampling import sample_images
from .training_log import TrainingLog, check_wandb, quiet_libraries

logger = logging.getLogger(__name__)


def setup_distributed():
    """(rank, world_size, device) from torchrun's environment; one process without it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return rank, world, device


class Conditioning:
    """The VAE, T5 and null caption, each loaded only when a batch first needs it."""

    def __init__(self, job: TrainJob, urls, device):
        self.job, self.urls, self.device = job, urls, device
        self.vae = self.text = self.text_null = self.stored_null = None

    def latents(self, batch, generator):
        """Scaled latents [B, 4, h, w]: a fresh posterior draw from the trainer's generator, stored or encoded."""
        if "posterior" in batch:
            return sample_posterior(batch["posterior"].to(self.device), generator)
        if self.vae is None:
            from .latents import LatentEncoder

            self.vae = LatentEncoder(self.job.vae, self.device)
        return self.vae.encode(batch["pixels"].to(self.device), generator)

    def captions(self, batch):
        """(emb, mask, null_emb, null_mask) for the batch's captions."""
        if "t5" in batch:
            return (batch["t5"].to(self.device), batch["t5_mask"].to(self.device), *self.precomputed_null())
        if self.text is None:
            from .text import TextEncoder

            self.text = TextEncoder(self.job.text_encoder, self.device, clean_captions=self.job.clean_captions)
            self.text_null = self.text.null()  # once: it is the same every step
        return (*self.text.encode(batch[CAPTION]), *self.text_null)

    def precomputed_null(self):
        """The null caption `pixcap encode` stored: job.null_caption, or null_caption.npz beside the first shard."""
        if self.stored_null is None:
            path = null_caption_path(self.job.null_caption, self.urls)
            stored = stored_null_caption(path)
            if stored is None:
                raise JobError(f"null_caption: {path} not found; the shards hold T5 features, so give the "
                               f"null_caption.npz that pixcap encode wrote")
            emb, mask, _ = stored
            self.stored_null = (emb[None].to(self.device), mask[None].to(self.device))
        return self.stored_null


def check_features(job: TrainJob, urls) -> None:
    """Refuse, before any step, shards whose features were encoded with settings other than the job's."""
    path = null_caption_path(job.null_caption, urls)
    stored = stored_null_caption(path)
    if stored is not None:
        check_settings(stored[2], job.clean_captions, job.buckets, job.resolutions, path)
        check_revisions(stored[2], model_revisions(job.text_encoder, job.vae, job.models_cache), path)


def caption_channels(job: TrainJob) -> int:
    """T5's hidden size, from its config alone, so runs on precomputed features never load T5."""
    from transformers import T5Config

    return load_component(T5Config, job.text_encoder, "text_encoder").d_model


@torch.no_grad()
def update_ema(ema, model, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        if p.requires_grad:  # a frozen base (LoRA, ControlNet) stays as it is
            e.lerp_(p, 1.0 - decay)


def sampling_pipeline(job: TrainJob, transformer, device):
    """An in-memory PixArtAlphaPipeline around the EMA transformer, for sampling during training."""
    pipe = assemble_pipeline(transformer, job.text_encoder, job.vae)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def sample_at(job: TrainJob, pipe, run_dir: Path, step: int, controlnet=None) -> None:
    """The job's sampling prompts through `pipe` (a pipeline or its folder) into RUN_DIR/sampling/step-N."""
    sample_images(pipe, job.sampling_prompts, run_dir / SAMPLING_DIR / step_name(step), steps=job.sampling_steps,
                  seed=job.seed, height=job.resolution, width=job.resolution, clean_captions=job.clean_captions,
                  controlnet=controlnet, controls=job.controlnet.sampling_controls, scheduler=job.sampling_scheduler)


def train(job: TrainJob) -> dict:
    """Train to job.max_steps (resuming from RUN_DIR's latest checkpoint); return the model and its EMA."""
    rank, world, device = setup_distributed()
    run_dir = Path(job.output)
    if rank == 0:  # builds tiny models once, before the other ranks look for them
        job = resolve_models(job)
        run_dir.mkdir(parents=True, exist_ok=True)
    barrier()
    if rank != 0:
        job = resolve_models(job)
    urls = expand_shards(job.shards)
    check_features(job, urls)
    check_wandb(job)
    quiet_libraries()

    # The model, its EMA, the optimiser and the schedule
    model = build_transformer(job.model, job.resolution, caption_channels(job), job.load_from, job.load_ema,
                              seed=job.seed).to(device)
    if job.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    model = adapt(job, model)  # LoRA or ControlNet: the base frozen, only the adapter trained
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    # PixArt's auto_lr: the configured lr is for a global batch of 256 (see TrainJob.lr_scale).
    lr = job.lr * job.lr_scale(world)
    if rank == 0:
        logger.info(f"lr {lr:.4g}: {job.lr:g} scaled by {job.lr_scaling} for a global batch of {job.batch_size * world}")
    optimizer = torch.optim.AdamW(trainable_parameters(model), lr=lr, weight_decay=job.weight_decay, eps=job.eps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: job.warmup_factor(s, world))
    generator = torch.Generator(device).manual_seed(job.seed * 1000 + rank)
    step, data_state = 0, {}  # data_state: what the data stream carries over segments (data.step_batches)
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is not None:
        step = load_checkpoint(checkpoint, model, ema, optimizer, scheduler, generator, rank)
        data_state = load_data_state(checkpoint, rank)
        if rank == 0:
            logger.info(f"resuming from {checkpoint} at step {step}")
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        net.config = model.config  # model_forward reads .config; DDP does not pass attribute lookups through
    diffusion = GaussianDiffusion()
    conditioning = Conditioning(job, urls, device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda" and job.mixed_precision == "bf16")
    micro_conditions = job.resolution == 1024  # only PixArt's 1024 model takes image size and ratio
    pipe = None
    training_log = TrainingLog(job, run_dir, step) if rank == 0 else None

    # The loop
    skipped, window, t0 = Counter(), [], time.time()
    captioners = Counter()  # caption_choice: the samples trained on each captioner's caption (rank 0's)
    batches = step_batches(job, urls, step, data_state) if step < job.max_steps else iter(())
    batches = with_class_batches(job, batches, step, data_state)  # DreamBooth's class images, if prior preservation
    for step, batch in batches:
        skipped.update(batch["skipped"])
        captioners.update(batch.get("captioners", {}))
        x0 = conditioning.latents(batch, generator)
        emb, mask, null_emb, null_mask = conditioning.captions(batch)
        batch_size = x0.shape[0]
        drop = torch.rand(batch_size, generator=generator, device=device) < job.caption_dropout
        emb = torch.where(drop[:, None, None], null_emb.to(emb.dtype), emb)
        mask = torch.where(drop[:, None], null_mask, mask)
        t = torch.randint(0, diffusion.num_timesteps, (batch_size,), generator=generator, device=device)
        noise = torch.randn(x0.shape, generator=generator, device=device, dtype=x0.dtype)
        x_t = diffusion.q_sample(x0, t, noise)
        extra = {}
        if micro_conditions:
            extra = {"resolution": batch["resolution"].to(device), "aspect_ratio": batch["aspect_ratio"].to(device)}
        control = conditioning.latents({"pixels": batch["control"]}, generator) if "control" in batch else None
        with autocast, conditioned(model, control):
            output = model_forward(net, x_t, t, emb, mask, **extra)
        losses = diffusion.training_losses(output, x0, x_t, t, noise)
        loss = prior_weighted_loss(losses["loss"], batch, job.prior.loss_weight)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), job.grad_clip) if job.grad_clip > 0 else None
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        update_ema(ema, model, job.ema_decay)
        step += 1
        window.append({k: v.mean().item() for k, v in losses.items()})

        if rank == 0 and (step % job.log_every == 0 or step == job.max_steps):
            elapsed, t0 = time.time() - t0, time.time()
            entry = {"step": step, **{k: float(np.mean([w[k] for w in window])) for k in window[0]},
                     "lr": scheduler.get_last_lr()[0], "steps_per_s": len(window) / elapsed,
                     "skipped": dict(skipped)}  # rank 0's own data: samples its workers skipped, by reason
            if captioners:
                entry["captioners"] = dict(captioners)
            if grad_norm is not None:
                entry["grad_norm"] = grad_norm.item()
            training_log.write(entry)
            window = []
        if step % job.checkpoint_every == 0 or step == job.max_steps:
            save_checkpoint(run_dir, step, model, ema, optimizer, scheduler, generator, job.to_dict(), rank,
                            data_state=data_state)
        if rank == 0 and job.sampling_every and step % job.sampling_every == 0 and step < job.max_steps:
            pipe = pipe or sampling_pipeline(job, sampling_transformer(ema), device)
            sample_at(job, pipe, run_dir, step, sampling_controlnet(ema))
        if step >= job.max_steps:
            break

    if rank == 0:
        training_log.close()
        export_trained(job, model, ema, run_dir)
        if job.sampling_prompts:
            final, controlnet = exported_pipeline(job, run_dir)  # read back from what was written
            sample_at(job, final, run_dir, step, controlnet)
    barrier()
    return {"model": model, "ema": ema, "step": step}
