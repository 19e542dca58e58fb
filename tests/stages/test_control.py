"""The control stage (stages/control.py): Canny maps of the stored image, checked against where the edges of
known shapes are, at the stored image's size, and the same for a dim copy (thresholds are quantiles)."""
import io

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from pixcap.schemas import JobError, load_job
from pixcap.schemas import batch as B
from pixcap.schemas.records import control_column
from pixcap.schemas.stage_configs import ControlConfig
from pixcap.stages.control import ControlStage

CANNY = control_column("canny")


def shapes(height=120, width=200) -> np.ndarray:
    """A disc and a rectangle on black: bool [H, W], True inside a shape."""
    y, x = np.mgrid[0:height, 0:width]
    disc = (y - 60) ** 2 + (x - 55) ** 2 <= 35 ** 2
    rectangle = (y >= 30) & (y < 90) & (x >= 120) & (x < 180)
    return disc | rectangle


def stored(array: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buffer.getvalue()


def edges_of(data: bytes, **config) -> np.ndarray:
    batch = {B.STORED: [data], B.REJECT_STAGE: [""], B.REJECT_REASON: [""], B.REJECT_ERROR: [""]}
    out = ControlStage(ControlConfig(kinds=["canny"], **config))(batch)
    assert out[B.REJECT_REASON] == [""]
    image = Image.open(io.BytesIO(out[CANNY][0]))
    assert image.format == "PNG" and image.mode == "L"
    return np.asarray(image)


def test_canny_edges_lie_on_the_outlines_of_known_shapes_and_go_all_round_them():
    inside = shapes()
    # The outline, computed independently of any edge detector: the pixels on either side of the boundary.
    outline = inside & ~ndimage.binary_erosion(inside) | ~inside & ndimage.binary_dilation(inside)
    edges = edges_of(stored(np.where(inside, 230, 20).astype(np.uint8)))
    assert edges.shape == inside.shape and set(np.unique(edges)) == {0, 255}
    assert ndimage.distance_transform_edt(~outline)[edges > 0].max() <= 2  # nothing but the outlines
    assert ndimage.distance_transform_edt(edges == 0)[outline].max() <= 2  # and every part of them
    # A thin line: non-maximum suppression leaves about one pixel per pixel of outline, not a band.
    assert (edges > 0).sum() <= 1.5 * outline.sum() / 2


def test_the_map_is_the_stored_images_size_and_a_dim_copy_has_the_same_edges():
    """The trainer fits a map with its image's resize and crop, so it must be the stored image's size
    (trainer/control_maps.py skips one that is not); quantile thresholds make a dim photo's edges a bright one's."""
    rng = np.random.default_rng(0)
    photo = ndimage.gaussian_filter(rng.uniform(0, 255, (150, 230)), 3)
    photo = (255 * (photo - photo.min()) / np.ptp(photo)).astype(np.uint8)
    colour = np.stack([photo, photo[::-1], photo[:, ::-1]], axis=-1)
    bright = edges_of(stored(colour, "JPEG"))
    assert bright.shape == (150, 230) and 0 < (bright > 0).mean() < 0.2
    dim = edges_of(stored((colour // 4).astype(np.uint8), "JPEG"))
    assert (dim != bright).mean() < 0.02  # JPEG and the coarser grey levels move a few pixels at most
    assert np.array_equal(edges_of(stored(colour, "JPEG")), bright)  # deterministic: a rerun writes the same bytes


def test_a_row_it_cannot_map_is_a_reject_and_a_rejected_row_stays_as_it_was():
    good = stored(np.where(shapes(), 230, 20).astype(np.uint8))
    batch = {B.STORED: [good, b"not an image", b""], B.REJECT_STAGE: ["", "", "decode"],
             B.REJECT_REASON: ["", "", "decode_error"], B.REJECT_ERROR: ["", "", "broken"]}
    out = ControlStage(ControlConfig(kinds=["canny"]))(batch)
    assert out[B.REJECT_REASON] == ["", "control_error", "decode_error"]
    assert out[B.REJECT_STAGE] == ["", "control", "decode"] and out[B.REJECT_ERROR][1]
    assert out[CANNY][0] and out[CANNY][1:] == [b"", b""]


@pytest.mark.parametrize("control, line", [
    ({"kinds": ["hed"]}, "control.kinds: 'hed' is not a control map pixcap makes (canny)"),
    ({"kinds": ["canny", "canny"]}, "control.kinds: a kind is named twice"),
    ({"kinds": ["canny"], "canny_low": 0.95}, "control.canny_low and canny_high: quantiles"),
    ({"kinds": ["canny"], "canny_sigma": 0}, "control.canny_sigma: must be positive"),
])
def test_the_job_refuses_a_control_map_it_cannot_make(control, line):
    with pytest.raises(JobError, match=line.replace("(", r"\(").replace(")", r"\)")):
        load_job({"inputs": ["x.tar"], "output": "out", "caption": {"model": "tiny:llava"}, "control": control})
    if "canny_sigma" not in control:  # a caller without a job is told by the stage (positive keys are the job's)
        with pytest.raises(ValueError):
            ControlStage(ControlConfig(**control))
