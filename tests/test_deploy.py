"""The deployment files, checked as far as this machine can: the RayJob is valid YAML of the
shape KubeRay's ray.io/v1 RayJob takes, the image recipe copies what exists, the Slurm script
parses. Neither Kubernetes, Docker nor Slurm runs here (see README)."""
import re
import shlex
import subprocess
from pathlib import Path

import yaml

from pixcap.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def test_rayjob_runs_the_sam_job_on_gpu_workers():
    job = yaml.safe_load((DEPLOY / "kuberay-rayjob.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:2] == ["pixcap", "run"]
    args = build_parser().parse_args(argv[1:])  # the entrypoint is a command line pixcap accepts
    assert args.job.endswith("jobs/sam_llava_7b.yaml") and args.address == "auto"
    assert (ROOT / "jobs" / "sam_llava_7b.yaml").exists()
    [gpu] = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    [container] = gpu["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["image"] == container["image"]


def test_the_image_recipe_copies_only_what_exists():
    recipe = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM rayproject/ray:\S+", recipe, flags=re.M)
    for source in re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", recipe, flags=re.M):
        for path in source.split():
            assert (ROOT / path).exists(), path
    ray_version = re.search(r"rayproject/ray:([\d.]+)", recipe).group(1)
    assert yaml.safe_load((DEPLOY / "kuberay-rayjob.yaml").read_text())["spec"]["rayClusterSpec"]["rayVersion"] == ray_version


def test_the_slurm_script_parses_and_runs_the_sam_job():
    script = DEPLOY / "slurm-sam-llava.sbatch"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "#SBATCH --nodes=" in text and "ray start --head" in text and "pixcap run jobs/sam_llava_7b.yaml" in text
