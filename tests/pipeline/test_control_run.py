"""`pixcap run` with the control stage (jobs/local_control.yaml) on a small tar: every written sample has
KEY.canny.png, the stored image's size; a reject has nothing; verify passes; the ControlNet trainer reads the
shards as written; and a run killed inside a commit resumes to the very same tars."""
import glob
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from pixcap.output import failpoints
from pixcap.output.verify import verify_output
from pixcap.pipeline.run import run_job
from pixcap.schemas import load_job, load_train_job, read_job_yaml
from pixcap.schemas.stage_configs import ControlConfig
from pixcap.stages.control import ControlStage

from .tarfiles import jpeg_bytes, shard_members, write_tar

pytestmark = pytest.mark.slow
JOB = Path(__file__).resolve().parents[2] / "jobs" / "local_control.yaml"
SIZE = (320, 256)  # width, height: not square, and big enough for the trainer's 256 px


def control_job(root, out, models_cache):
    data = read_job_yaml(str(JOB))
    data.update(inputs=[str(root / "sa_*.tar")], output=str(out), models_cache=models_cache, shard_size=2,
                progress_seconds=1.0)
    data["caption"]["max_new_tokens"] = 4
    return load_job(data)


@pytest.fixture(scope="module")
def control_run(tmp_path_factory, ray_session, models_cache):
    root = tmp_path_factory.mktemp("control-run")
    members = [(f"sa_{k}.jpg", jpeg_bytes(k, size=SIZE)) for k in range(3)] + [("sa_3.jpg", b"not an image")]
    write_tar(root / "sa_000000.tar", members)
    manifest = run_job(control_job(root, root / "out", models_cache))
    return root, root / "out", manifest


def tar_samples(out) -> dict:
    """{key: {member suffix: bytes}} of every shard."""
    samples = {}
    for name, data in shard_members(out).items():
        key, _, suffix = name.partition(".")
        samples.setdefault(key, {})[suffix] = data
    return samples


def test_every_written_sample_has_its_canny_map_and_a_reject_has_none(control_run):
    _, out, manifest = control_run
    assert (manifest["totals"]["written"], manifest["totals"]["rejected"]) == (3, 1)
    samples = tar_samples(out)
    assert sorted(samples) == [f"sa_000000/sa_{k}" for k in range(3)]  # sa_3, rejected, has no member at all
    stage = ControlStage(ControlConfig(kinds=["canny"]))
    for members in samples.values():
        assert set(members) == {"jpg", "txt", "json", "canny.png"}
        record = json.loads(members["json"])
        edges = Image.open(io.BytesIO(members["canny.png"]))
        assert (edges.format, edges.mode) == ("PNG", "L")
        # The stored image's size, which trainer/control_maps.py checks against the record's.
        assert edges.size == Image.open(io.BytesIO(members["jpg"])).size == (record["width"], record["height"]) == SIZE
        assert members["canny.png"] == stage.maps(members["jpg"])["canny"]  # the map of the stored image itself
    assert verify_output(str(out)) == []
    assert not glob.glob(f"{out}/_work/blobs/*/*")  # the maps left with their shard's commit


def test_the_controlnet_trainer_reads_the_shards_the_run_wrote(control_run):
    from pixcap.trainer.data import build_loader

    _, out, _ = control_run
    urls = sorted(glob.glob(f"{out}/shards/*.tar"))
    job = load_train_job({"shards": urls, "model": "tiny", "resolution": 256, "buckets": "square", "batch_size": 2,
                          "num_workers": 0, "shuffle_buffer": 1, "adapter": "controlnet", "sampling_prompts": [],
                          "controlnet": {"blocks": 1, "control": "canny"}})
    batches = list(build_loader(job, urls, segment=0, resampled=False))
    assert sorted(k for b in batches for k in b["key"]) == [f"sa_000000/sa_{k}" for k in range(3)]
    assert all(sum(b["skipped"].values()) == 0 for b in batches)  # no no_control, no control_size
    for batch in batches:
        assert batch["control"].shape == batch["pixels"].shape == (len(batch["key"]), 3, 256, 256)
        assert batch["control"].min() >= -1 and batch["control"].max() <= 1 and batch["control"].max() > 0


def test_a_run_killed_in_a_commit_resumes_to_the_same_tars(control_run, tmp_path, models_cache, ray_session):
    """SIGKILLed between a shard's tar and its stats, driver and commit task both: the rerun commits the shard
    again from the blobs it left, its maps included, byte for byte as the uninterrupted run did."""
    root, reference, manifest = control_run
    out = tmp_path / "killed"
    job_file = tmp_path / "killed.yaml"
    job_file.write_text(yaml.safe_dump(control_job(root, out, models_cache).to_dict()))
    env = {**os.environ, failpoints.ENV: "shard_commit:1:both", failpoints.ONCE_ENV: str(tmp_path / "fired")}
    address = ray_session.get_runtime_context().gcs_address
    driver = subprocess.run([sys.executable, "-m", "pixcap.cli.main", "run", str(job_file), "--address", address],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=300)
    assert driver.returncode == -signal.SIGKILL, driver.stderr[-2000:]
    assert glob.glob(f"{out}/_work/blobs/*/*.canny.png")  # the uncommitted shards' maps wait as blobs
    resumed = run_job(control_job(root, out, models_cache), stream=io.StringIO())
    assert resumed["totals"] == manifest["totals"]

    def digests(folder):
        return {os.path.basename(p): hashlib.sha256(Path(p).read_bytes()).hexdigest()
                for p in glob.glob(f"{folder}/shards/*.tar")}

    assert digests(out) == digests(reference) and len(digests(out)) == 2
    assert verify_output(str(out)) == []
