"""The trainer's subcommands of `pixcap` (train, encode, convert-dit, sample).

Each handler turns its arguments into one typed call and returns the exit code; a bad command line
raises JobError (exit code 2). Heavy modules (torch, diffusers) are imported inside the handlers so
`pixcap --help` stays fast.
"""
import argparse
import logging

from pixcap.schemas import JobError
from pixcap.schemas.models import DEFAULT_MODELS_CACHE, DEFAULT_T5, DEFAULT_VAE
from pixcap.schemas.train_job import BUCKET_MODES, RESOLUTIONS, SAMPLERS


def train_command(args) -> int:
    """`pixcap train JOB.yaml [--shards ...] [--output RUN_DIR] [--set key=value ...]`."""
    from pixcap.schemas import load_train_job, read_job_yaml

    data = read_job_yaml(args.job, args.set)
    if args.shards:
        data["shards"] = args.shards
    if args.output:
        data["output"] = args.output
    job = load_train_job(data)
    if not job.shards:
        raise JobError("shards: no shards given; set shards in the job or pass --shards")
    if not job.output:
        raise JobError("output: no run folder given; set output in the job or pass --output")
    from .loop import train

    train(job)
    return 0


def encode_command(args) -> int:
    from .encode import encode_shards

    broken = encode_shards(args.shards, args.output, text_encoder=args.text_encoder, vae=args.vae,
                           models_cache=args.models_cache, resolution=args.resolution, buckets=args.buckets,
                           clean_captions=args.clean_captions, batch_size=args.batch_size)
    return 1 if broken else 0


def convert_dit_command(args) -> int:
    from .convert_dit import convert_dit

    out = convert_dit(args.dit_path, args.out_dir, args.caption_channels, args.t)
    print(f"wrote PixArt transformer to {out}")
    return 0


def sample_command(args) -> int:
    from .sampling import sample_run

    try:
        paths = sample_run(args.run_dir, args.prompt, out=args.out, steps=args.steps, seed=args.seed,
                           guidance_scale=args.guidance_scale, lora=args.lora, controlnet=args.controlnet,
                           controls=args.control, scheduler=args.scheduler)
    except FileNotFoundError as e:
        logging.getLogger(__name__).error(f"pixcap: failed: {e}")
        return 1
    for path in paths:
        print(path)
    return 0


def class_images_command(args) -> int:
    from .class_images import class_images
    from .export import read_train_job

    clean = read_train_job(args.pipeline).get("clean_captions", True)
    paths = class_images(args.pipeline, args.prompt, args.count, args.output, steps=args.steps, seed=args.seed,
                         guidance_scale=args.guidance_scale, batch_size=args.batch_size,
                         resolution=args.resolution, clean_captions=clean)
    print(f"{len(paths)} class images in {args.output}")
    return 0


def add_class_images_args(parser) -> None:
    """The arguments of `pixcap class-images` (DreamBooth's prior preservation)."""
    parser.add_argument("pipeline", help="the base model's pipeline folder (e.g. RUN_DIR/pipeline, or a hub id)")
    parser.add_argument("--prompt", required=True, help='the class prompt, e.g. "a photo of a dog"')
    parser.add_argument("--count", type=int, default=100, help="class images wanted; those already there are kept")
    parser.add_argument("--output", required=True, help="folder of PNGs with caption sidecars, for pixcap run")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--guidance-scale", type=float, default=4.5)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--resolution", type=int, default=None, help="square side (default: the model's)")


def add_encode_args(parser) -> None:
    """The arguments of `pixcap encode`; --resolution, --buckets and --clean-captions mean what the job keys do."""
    parser.add_argument("shards", nargs="+", metavar="SHARD", help="shard paths, globs or URLs")
    parser.add_argument("--output", required=True, help="folder for the new shards and null_caption.npz")
    parser.add_argument("--resolution", type=int, default=256, choices=RESOLUTIONS, help="square side, or bucket table")
    parser.add_argument("--buckets", default="square", choices=BUCKET_MODES,
                        help="square: resize and centre-crop (PixArt's 256 stages); aspect: nearest-ratio bucket")
    parser.add_argument("--no-clean-captions", dest="clean_captions", action="store_false",
                        help="encode captions as written (lowercased), for a job with clean_captions: false")
    parser.add_argument("--text-encoder", default=DEFAULT_T5,
                        help="T5 folder, hub id, or a PixArt pipeline (text_encoder/); the train job must name the same")
    parser.add_argument("--vae", default=DEFAULT_VAE,
                        help="AutoencoderKL folder, hub id, or a PixArt pipeline (vae/); the train job must name the same")
    parser.add_argument("--models-cache", default=DEFAULT_MODELS_CACHE, help="where tiny:* models are built")
    parser.add_argument("--batch-size", type=int, default=16)


def add_convert_dit_args(parser) -> None:
    """The arguments of `pixcap convert-dit`."""
    parser.add_argument("dit_path", help="diffusers DiT checkpoint: folder or hub id, e.g. facebook/DiT-XL-2-256")
    parser.add_argument("out_dir", help="where to write the PixArt transformer folder")
    parser.add_argument("--caption-channels", type=int, default=4096, help="text encoder width (T5-XXL: 4096)")
    parser.add_argument("--t", type=int, default=500, help="timestep at which modulations are made equal")


class _DeprecatedOut(argparse.Action):
    """`sample --out`, the old spelling of --output (every other command says --output): kept working, with a warning."""

    def __call__(self, parser, namespace, values, option_string=None):
        logging.getLogger(__name__).warning("pixcap sample: --out is deprecated; use --output")
        setattr(namespace, self.dest, values)


def add_sample_args(parser) -> None:
    """The arguments of `pixcap sample`."""
    parser.add_argument("run_dir", help="training run folder; its exported pipeline is RUN_DIR/pipeline")
    parser.add_argument("--prompt", action="append", required=True, help="a prompt; repeat for several")
    parser.add_argument("--scheduler", default="dpm-solver", choices=SAMPLERS,
                        help="dpm-solver (the pipeline's own) or sa-solver, as PixArt's inference.py offers them")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default 20 for dpm-solver, 25 for sa-solver)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--guidance-scale", type=float, default=4.5)
    parser.add_argument("--output", dest="out", default=None, help="output folder (default RUN_DIR/sampling)")
    parser.add_argument("--out", dest="out", action=_DeprecatedOut, help=argparse.SUPPRESS)
    parser.add_argument("--lora", default=None,
                        help="a LoRA adapter folder (peft's, e.g. RUN_DIR/lora of a LoRA run) put onto the pipeline; "
                             "a LoRA run's own is used without it")
    parser.add_argument("--controlnet", default=None, help="a ControlNet folder (default RUN_DIR/controlnet, if any)")
    parser.add_argument("--control", action="append", default=None, metavar="IMAGE",
                        help="a ControlNet's control image (e.g. a KEY.canny.png); one for all prompts, or one each")


def register(subparsers) -> None:
    """Add the trainer's subcommands; each sets func(args) -> exit code."""
    train = subparsers.add_parser("train", help="train PixArt-alpha on shards (resumes RUN_DIR's latest checkpoint)")
    train.add_argument("job", help="a train job YAML (jobs/train_*.yaml)")
    train.add_argument("--shards", nargs="+", metavar="URI", help="shard paths, globs or URLs (replace the job's)")
    train.add_argument("--output", help="run folder (replaces the job's)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a job key, e.g. max_steps=10")
    train.set_defaults(func=train_command)

    encode = subparsers.add_parser("encode", help="add VAE posteriors and T5 embeddings to shards, as new shards")
    add_encode_args(encode)
    encode.set_defaults(func=encode_command)

    convert = subparsers.add_parser("convert-dit", help="turn a DiT checkpoint into a PixArt transformer (stage 1 init)")
    add_convert_dit_args(convert)
    convert.set_defaults(func=convert_dit_command)

    class_parser = subparsers.add_parser("class-images", help="DreamBooth: the base model's images of a class, "
                                         "with caption sidecars, for pixcap run (resumable)")
    add_class_images_args(class_parser)
    class_parser.set_defaults(func=class_images_command)

    sample = subparsers.add_parser("sample", help="generate images from RUN_DIR/pipeline")
    add_sample_args(sample)
    sample.set_defaults(func=sample_command)
