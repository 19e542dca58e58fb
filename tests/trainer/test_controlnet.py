"""ControlNet (adapter: controlnet): PixArt-alpha's ControlNet-Transformer starts as exactly the base, computes
what the paper's wiring computes, trains from shards that carry Canny maps (the control stage's), resumes bit
for bit, and samples from a control image."""
import io
import json
import tarfile

import numpy as np
import pytest
import torch
from diffusers import PixArtTransformer2DModel
from PIL import Image
from scipy import ndimage

from pixcap.cli.main import main
from pixcap.schemas import batch as B
from pixcap.schemas.records import CONTROL_EXT, HEIGHT, RECORD_EXT, WIDTH, control_column
from pixcap.schemas.stages import ControlConfig
from pixcap.stages.control import ControlStage
from pixcap.trainer.checkpoint import latest_checkpoint
from pixcap.trainer.controlnet import add_controlnet, conditioned
from pixcap.trainer.export import export_pipeline
from pixcap.trainer.loop import train
from pixcap.trainer.model import build_transformer, model_forward

from .shards_fixture import tiny_train_job, write_shards
from .test_resume import assert_stopped_run_ends_the_same

CONTROLNET = {"adapter": "controlnet", "controlnet": {"blocks": 1}, "lr": 1e-2}


def base_transformer(seed=3):
    """A seeded tiny transformer whose blocks and output all say something (PixArt zeroes some at init)."""
    transformer = build_transformer("tiny", 256, caption_channels=32, seed=seed)
    torch.manual_seed(seed)
    torch.nn.init.normal_(transformer.proj_out.weight, std=0.05)
    for block in transformer.transformer_blocks:
        torch.nn.init.normal_(block.attn2.to_out[0].weight, std=0.05)
    return transformer


def inputs(seed=0, batch=2):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 4, 32, 32, generator=g), torch.tensor([10, 600][:batch]),
            torch.randn(batch, 7, 32, generator=g), torch.ones(batch, 7), torch.randn(batch, 4, 32, 32, generator=g))


@torch.no_grad()
def test_at_initialisation_it_is_the_base():
    base = base_transformer()
    model = add_controlnet(base, 1)
    x, t, emb, mask, control = inputs()
    expected = model_forward(base, x, t, emb, mask)
    with conditioned(model, control):
        got = model_forward(model, x, t, emb, mask)
    assert (got - expected).abs().max() <= 1e-6
    assert expected.abs().max() > 0.01  # the base says something, so agreeing means something


@torch.no_grad()
def test_it_computes_the_papers_wiring():
    """A reference written from ControlPixArtHalf.forward, with every zero layer made non-zero."""
    import copy

    base = base_transformer()
    model = add_controlnet(base, 1)
    block = model.controlnet.controlnet_blocks[0]
    for linear in (block.before_proj, block.after_proj):
        torch.nn.init.normal_(linear.weight, std=0.2)
        torch.nn.init.normal_(linear.bias, std=0.2)
    # The copy is the base's block 0, weights and all.
    assert all(torch.equal(a, b) for a, b in zip(block.transformer_block.state_dict().values(),
                                                  base.transformer_blocks[0].state_dict().values()))
    x, t, emb, mask, control = inputs()

    reference = copy.deepcopy(base)  # the base's own forward, with block 1's input replaced by hand
    blocks = reference.transformer_blocks
    seen = {}

    def capture_block0(module, args, kwargs, output):
        seen["x0"], seen["kwargs"] = output, kwargs
    blocks[0].register_forward_hook(capture_block0, with_kwargs=True)

    def add_control(module, args, kwargs):
        c = block.before_proj(reference.pos_embed(control))  # the control latent, patch-embedded like x
        c = block.transformer_block(seen["x0"] + c, **{k: v for k, v in seen["kwargs"].items()})
        return (args[0] + block.after_proj(c), *args[1:]), kwargs
    blocks[1].register_forward_pre_hook(add_control, with_kwargs=True)
    expected = model_forward(reference, x, t, emb, mask)

    with conditioned(model, control):
        got = model_forward(model, x, t, emb, mask)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    plain = model_forward(base, x, t, emb, mask)
    assert (got - plain).abs().max() > 1e-3  # the control changed the output


def test_control_stage_marks_the_edges_of_a_square():
    """A white square on black: edges only on its outline, all round it; the map is the stored image's size."""
    array = np.zeros((96, 128, 3), np.uint8)
    array[24:72, 40:88] = 255
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    batch = {B.STORED: [buffer.getvalue(), b"not an image", b""], B.REJECT_STAGE: ["", "", "decode"],
             B.REJECT_REASON: ["", "", "decode_error"], B.REJECT_ERROR: ["", "", "x"]}
    out = ControlStage(ControlConfig(kinds=["canny"]))(batch)
    column = out[control_column("canny")]
    edges = np.asarray(Image.open(io.BytesIO(column[0])))
    assert edges.shape == (96, 128) and set(np.unique(edges)) <= {0, 255}
    square = np.zeros((96, 128), bool)
    square[24:72, 40:88] = True
    outline = square & ~ndimage.binary_erosion(square) | ~square & ndimage.binary_dilation(square)
    assert ndimage.distance_transform_edt(~outline)[edges > 0].max() <= 2  # edges only on the outline
    assert ndimage.distance_transform_edt(edges == 0)[outline].max() <= 2  # and all round it
    assert out[B.REJECT_REASON] == ["", "control_error", "decode_error"] and column[1:] == [b"", b""]
    assert out[B.REJECT_STAGE][1] == "control" and out[B.REJECT_ERROR][1]


def with_control_maps(shards, directory) -> list:
    """Copies of the fixture's shards with each sample's KEY.canny.png, made by the control stage."""
    stage = ControlStage(ControlConfig(kinds=["canny"]))
    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for shard in shards:
        path = directory / shard.rsplit("/", 1)[-1]
        with tarfile.open(shard) as source, tarfile.open(path, "w") as sink:
            for member in source.getmembers():
                data = source.extractfile(member).read()
                sink.addfile(member, io.BytesIO(data))
                if member.name.endswith(".jpg"):
                    edges = stage.maps(data)["canny"]
                    extra = tarfile.TarInfo(member.name[: -len("jpg")] + CONTROL_EXT)
                    extra.size, extra.mtime = len(edges), member.mtime
                    sink.addfile(extra, io.BytesIO(edges))
        out.append(str(path))
    return out


@pytest.fixture(scope="module")
def base(tiny_trainer_models, tmp_path_factory):
    folder = tmp_path_factory.mktemp("base") / "pipeline"
    export_pipeline(base_transformer(), str(tiny_trainer_models["t5"]), str(tiny_trainer_models["vae"]), folder,
                    train_job={"clean_captions": False})
    return folder


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    return with_control_maps(write_shards(root / "raw", n_shards=2, per_shard=4), root / "control")


@pytest.fixture(scope="module")
def control_run(base, shards, tiny_trainer_models, tmp_path_factory):
    """A trained tiny ControlNet; its last samples are drawn from a control map of the shards."""
    run = tmp_path_factory.mktemp("controlnet") / "run"
    with tarfile.open(shards[0]) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(CONTROL_EXT))
        (run.parent / "sample.canny.png").write_bytes(tar.extractfile(member).read())
    result = train(tiny_train_job(shards, run, tiny_trainer_models, load_from=str(base), max_steps=4,
                                  checkpoint_every=2, clean_captions=False, sampling_prompts=["a red house"],
                                  sampling_steps=2, **{**CONTROLNET, "controlnet": {
                                      "blocks": 1, "sampling_controls": [str(run.parent / "sample.canny.png")]}}))
    return run, result


def test_trains_the_controlnet_alone(base, control_run):
    run, result = control_run
    weights = "transformer/diffusion_pytorch_model.safetensors"
    assert (run / "pipeline" / weights).read_bytes() == (base / weights).read_bytes()  # the base, unchanged
    loaded = PixArtTransformer2DModel.from_pretrained(base / "transformer").state_dict()
    assert all(torch.equal(v, loaded[k]) for k, v in result["model"].transformer.state_dict().items())
    state = torch.load(latest_checkpoint(run) / "state.pt", weights_only=True)
    assert set(state["model"]) == {n for n, p in result["model"].named_parameters() if p.requires_grad}
    assert all(k.startswith("controlnet.") for k in state["model"])
    assert state["model"]["controlnet.controlnet_blocks.0.after_proj.weight"].abs().max() > 0  # it learned
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert all(not entry["skipped"].get("no_control") for entry in log)
    assert len(list((run / "sampling").glob("step-0000004/*.png"))) == 1  # drawn from sampling_controls


@pytest.mark.slow
def test_resume_equals_one_run(base, shards, control_run, tiny_trainer_models, tmp_path):
    once, _ = control_run
    assert_stopped_run_ends_the_same(once, tmp_path / "twice", shards, tiny_trainer_models, stop_at=3,
                                     load_from=str(base), checkpoint_every=2, clean_captions=False, **CONTROLNET)


def test_samples_follow_the_control_image(control_run, tmp_path, capsys):
    run, _ = control_run
    square, stripes = np.zeros((256, 256), np.uint8), np.zeros((256, 256), np.uint8)
    square[64:192, 64:192] = 255
    stripes[:, ::16] = 255
    for name, array in (("square", square), ("stripes", stripes)):
        Image.fromarray(array).save(tmp_path / f"{name}.canny.png")
    images = {}
    for name in ("square", "stripes"):
        assert main(["sample", str(run), "--prompt", "a red house", "--steps", "2",
                     "--control", str(tmp_path / f"{name}.canny.png"), "--output", str(tmp_path / name)]) == 0
        images[name] = np.asarray(Image.open(next((tmp_path / name).glob("*.png"))))
    assert images["square"].shape == (256, 256, 3)
    assert np.abs(images["square"].astype(int) - images["stripes"].astype(int)).max() > 0
    capsys.readouterr()
    assert main(["sample", str(run), "--prompt", "a red house"]) == 2  # a ControlNet needs its control image
    err = capsys.readouterr().err.strip()
    assert "--control" in err and "\n" not in err


@pytest.mark.parametrize("settings, message", [
    (["adapter=controlnet", "controlnet.blocks=2"], "controlnet.blocks: must be below the tiny transformer's 2 blocks"),
    (["adapter=controlnet", "controlnet.blocks=0"], "controlnet.blocks: must be positive"),
    (["adapter=controlnet", "controlnet.control=Canny!"], "controlnet.control: a member name"),
    (["adapter=controlnet", "gradient_checkpointing=true"], "gradient_checkpointing: not supported with adapter"),
    (["adapter=controlnet", "sampling_prompts=[a cat]"], "controlnet.sampling_controls: give one control image"),
    (["adapter=none", "controlnet.sampling_controls=[x.png]"], "controlnet.sampling_controls: only for adapter"),
])
def test_bad_controlnet_keys_are_one_line_and_exit_2(settings, message, tmp_path, capsys):
    argv = ["train", "jobs/train_tiny_controlnet.yaml", "--shards", str(tmp_path), "--output", str(tmp_path / "r")]
    for setting in settings:
        argv += ["--set", setting]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_a_sample_without_its_control_map_is_skipped_and_counted(base, tiny_trainer_models, tmp_path):
    """Shards without KEY.canny.png feed no ControlNet: the run stops with one line once they are read through."""
    from pixcap.schemas import JobError

    shards = write_shards(tmp_path / "raw", n_shards=2, per_shard=2)
    job = tiny_train_job(shards, tmp_path / "run", tiny_trainer_models, load_from=str(base), max_steps=2,
                         clean_captions=False, **CONTROLNET)
    with pytest.raises(JobError, match="no_control"):
        train(job)


@pytest.mark.parametrize("mode", ["square", "aspect"])
def test_a_control_map_is_fitted_where_its_image_is(mode):
    """A map drawn from the image itself (its grey) lands pixel on pixel on the fitted image, in both modes."""
    from pixcap.schemas.train_job import FilterConfig
    from pixcap.trainer.data import PrepareSamples

    rng = np.random.default_rng(0)
    height, width = 256, 480  # wide: the square crop and the bucket both cut and scale it
    blocks = rng.integers(0, 256, size=(height // 16, width // 16, 3), dtype=np.uint8)
    array = blocks.repeat(16, axis=0).repeat(16, axis=1)  # sharp edges: a pixel's shift shows
    jpeg, grey = io.BytesIO(), io.BytesIO()
    Image.fromarray(array).save(jpeg, format="JPEG", quality=98)
    decoded = Image.open(io.BytesIO(jpeg.getvalue())).convert("RGB")
    decoded.convert("L").save(grey, format="PNG")
    record = {WIDTH: width, HEIGHT: height}
    sample = {"__key__": "k", "__url__": "u", RECORD_EXT: json.dumps(record).encode(), "jpg": jpeg.getvalue(),
              CONTROL_EXT: grey.getvalue()}
    prepared = PrepareSamples(mode, [256], FilterConfig(), control="canny").prepare(sample)
    pixels, control = prepared["pixels"].numpy(), prepared["control"].numpy()
    assert pixels.shape == control.shape and control.shape[0] == 3
    luma = 0.299 * pixels[0] + 0.587 * pixels[1] + 0.114 * pixels[2]  # PIL's L, on the fitted image
    assert np.abs(luma - control[0]).max() < 0.08  # rounding, and bicubic's overshoot clipped per channel
    assert np.abs(luma[:, 1:] - control[0][:, :-1]).max() > 0.3  # one pixel off is far off
    small = io.BytesIO()
    decoded.convert("L").resize((width // 2, height // 2)).save(small, format="PNG")
    assert PrepareSamples(mode, [256], FilterConfig(), control="canny").prepare(
        {**sample, CONTROL_EXT: small.getvalue()}) == "control_size"
