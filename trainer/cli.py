"""The trainer's subcommands of `pixcap` (train, encode, convert-dit, sample).

Heavy modules (torch, diffusers) are imported inside the handlers so `pixcap --help` stays fast.
"""
from pixcap.schemas import JobError
from pixcap.schemas.models import DEFAULT_MODELS_CACHE, TINY_T5, TINY_VAE


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
    from .encode import encode_command as run

    return run(args)


def convert_dit_command(args) -> int:
    from .convert_dit import convert_dit_command as run

    return run(args)


def sample_command(args) -> int:
    from .sampling import sample_command as run

    return run(args)


def add_convert_dit_args(parser) -> None:
    """The arguments of `pixcap convert-dit`."""
    parser.add_argument("dit_path", help="diffusers DiT checkpoint: folder or hub id, e.g. facebook/DiT-XL-2-256")
    parser.add_argument("out_dir", help="where to write the PixArt transformer folder")
    parser.add_argument("--caption-channels", type=int, default=4096, help="text encoder width (T5-XXL: 4096)")
    parser.add_argument("--t", type=int, default=500, help="timestep at which modulations are made equal")


def add_sample_args(parser) -> None:
    """The arguments of `pixcap sample`."""
    parser.add_argument("run_dir", help="training run folder; its exported pipeline is RUN_DIR/pipeline")
    parser.add_argument("--prompt", action="append", required=True, help="a prompt; repeat for several")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--guidance-scale", type=float, default=4.5)
    parser.add_argument("--out", default=None, help="output folder (default RUN_DIR/samples)")


def register(subparsers) -> None:
    """Add the trainer's subcommands; each sets func(args) -> exit code."""
    train = subparsers.add_parser("train", help="train PixArt-alpha on shards (resumes RUN_DIR's latest checkpoint)")
    train.add_argument("job", help="a train job YAML (jobs/train_*.yaml)")
    train.add_argument("--shards", nargs="+", metavar="URI", help="shard paths, globs or URLs (replace the job's)")
    train.add_argument("--output", help="run folder (replaces the job's)")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a job key, e.g. max_steps=10")
    train.set_defaults(func=train_command)

    encode = subparsers.add_parser("encode", help="add VAE latents and T5 embeddings to shards, as new shards")
    encode.add_argument("shards", nargs="+", metavar="SHARD", help="shard paths, globs or URLs")
    encode.add_argument("--output", required=True, help="folder for the new shards and null_caption.npz")
    encode.add_argument("--resolution", type=int, default=256, choices=(256, 512, 1024), help="bucket table for the latents")
    encode.add_argument("--text-encoder", default=TINY_T5, help=f"T5 folder, hub id, or {TINY_T5}")
    encode.add_argument("--vae", default=TINY_VAE, help=f"AutoencoderKL folder, hub id, or {TINY_VAE}")
    encode.add_argument("--models-cache", default=DEFAULT_MODELS_CACHE, help="where tiny:* models are built")
    encode.add_argument("--batch-size", type=int, default=16)
    encode.add_argument("--seed", type=int, default=0, help="seeds the VAE posterior samples")
    encode.set_defaults(func=encode_command)

    convert = subparsers.add_parser("convert-dit", help="turn a DiT checkpoint into a PixArt transformer (stage 1 init)")
    add_convert_dit_args(convert)
    convert.set_defaults(func=convert_dit_command)

    sample = subparsers.add_parser("sample", help="sample images from RUN_DIR/pipeline")
    add_sample_args(sample)
    sample.set_defaults(func=sample_command)
