"""The vllm caption backend on the CPU: vLLM's engine (the one part that needs a GPU) is replaced;
the chat prompt, requests, chunking, ordering and reject handling are the stage's own."""
import numpy as np
import pytest

from pixcap.schemas import batch as B
from pixcap.schemas.stages import CaptionConfig
from pixcap.stages.caption import CaptionStage, generate_captions
from pixcap.stages.caption_vllm import VllmCaptionStage, captioning_request, one_per_request, output_texts


@pytest.fixture(scope="module")
def config(tiny_models):
    return CaptionConfig(backend="hf", model=str(tiny_models["llava"]), max_new_tokens=8, batch_size=3)


@pytest.fixture(scope="module")
def hf_stage(config):
    return CaptionStage(config)


def stage_with(config, engine):
    """The stage with `engine` standing in for vLLM's; returns (stage, engine)."""
    stage = VllmCaptionStage(config, engine_class=lambda _config: engine)
    return stage, engine


class TransformersEngine:
    """Answers each request as vLLM would, but with the tiny LLaVA through transformers on the
    CPU: the request's own prompt text and image go in, so what the stage sends is what counts."""

    def __init__(self, hf_stage):
        self.hf = hf_stage
        self.calls = []

    def captions(self, requests):
        self.calls.append(len(requests))
        return generate_captions(self.hf.model, self.hf.processor,
                                 [np.array(r["multi_modal_data"]["image"]) for r in requests],
                                 [r["prompt"] for r in requests], self.hf.config.max_new_tokens)


class EchoEngine:
    """Captions each request with the number painted into its image's first pixel."""

    def __init__(self, fail_on=(), drop_last=False):
        self.fail_on, self.drop_last = set(fail_on), drop_last
        self.calls = []

    def captions(self, requests):
        numbers = [int(np.asarray(r["multi_modal_data"]["image"])[0, 0, 0]) for r in requests]
        self.calls.append(numbers)
        if self.fail_on & set(numbers):
            raise ValueError(f"request for image {sorted(self.fail_on & set(numbers))[0]} is too long")
        texts = [f"image {n}" for n in numbers]
        return texts[:-1] if self.drop_last and len(texts) > 1 else texts


def numbered_images(count):
    images = []
    for n in range(count):
        image = np.full((40, 56, 3), 128, np.uint8)
        image[0, 0, 0] = n
        images.append(image)
    return images


def test_captions_equal_the_hf_backends(config, hf_stage, model_images, stage_batch):
    images = model_images(5, seed=3)
    stage, engine = stage_with(config, TransformersEngine(hf_stage))
    assert stage.prompt == hf_stage.prompt and "<image>" in stage.prompt
    out = stage(stage_batch(images))
    assert out[B.CAPTION] == hf_stage(stage_batch(images))[B.CAPTION]
    assert all(out[B.CAPTION]) and out[B.CAPTION_MODEL] == [config.model] * 5
    assert engine.calls == [3, 2]


def test_a_request_is_the_chat_prompt_and_the_rows_pixels():
    image = np.arange(24 * 32 * 3, dtype=np.uint8).reshape(24, 32, 3)
    request = captioning_request("USER: <image>\nDescribe ASSISTANT:", image)
    assert request["prompt"] == "USER: <image>\nDescribe ASSISTANT:"
    sent = request["multi_modal_data"]["image"]
    assert sent.mode == "RGB" and np.array_equal(np.asarray(sent), image)


def test_rejected_rows_send_no_request_and_captions_land_on_their_own_rows(config, stage_batch):
    stage, engine = stage_with(config, EchoEngine())
    batch = stage_batch(numbered_images(8), extra=list("abcdefgh"))
    batch[B.REJECT_STAGE] = ["", "decode", "", "", "decode", "", "", ""]
    batch[B.REJECT_REASON] = ["", "too_small", "", "", "decode_error", "", "", ""]
    out = stage(batch)
    assert engine.calls == [[0, 2, 3], [5, 6, 7]]  # batch_size 3, live rows only, in row order
    assert out[B.CAPTION] == ["image 0", "", "image 2", "image 3", "", "image 5", "image 6", "image 7"]
    assert out[B.CAPTION_MODEL][1] == out[B.CAPTION_MODEL][4] == ""
    assert out[B.REJECT_REASON] == batch[B.REJECT_REASON] and out["extra"] == list("abcdefgh")


def test_a_request_the_engine_fails_on_costs_only_its_row(config, stage_batch):
    stage, engine = stage_with(config, EchoEngine(fail_on={4}))
    out = stage(stage_batch(numbered_images(6)))
    assert out[B.REJECT_REASON] == ["", "", "", "", "caption_error", ""]
    assert out[B.REJECT_STAGE][4] == "caption" and out[B.REJECT_ERROR][4] == "ValueError: request for image 4 is too long"
    assert out[B.CAPTION] == ["image 0", "image 1", "image 2", "image 3", "", "image 5"]
    assert engine.calls == [[0, 1, 2], [3, 4, 5], [3], [4], [5]]  # the failed chunk, then its rows alone


def test_a_lost_output_never_shifts_captions_between_rows(config, stage_batch):
    stage, _ = stage_with(config, EchoEngine(drop_last=True))
    out = stage(stage_batch(numbered_images(3)))
    assert out[B.CAPTION] == ["image 0", "image 1", "image 2"]  # re-asked one by one
    assert out[B.REJECT_REASON] == ["", "", ""]
    with pytest.raises(RuntimeError, match="2 outputs for 3 requests"):
        one_per_request(["a", "b"], 3)


def test_vllms_own_outputs_and_sampling_parameters():
    vllm = pytest.importorskip("vllm", reason="the vllm extra is not installed")
    from vllm.outputs import CompletionOutput, RequestOutput

    from pixcap.stages.caption_vllm import greedy_sampling

    def output(request_id, text):
        completion = CompletionOutput(index=0, text=text, token_ids=[1, 2], cumulative_logprob=None, logprobs=None,
                                      finish_reason="length")
        return RequestOutput(request_id=str(request_id), prompt=None, prompt_token_ids=[1], prompt_logprobs=None,
                             outputs=[completion], finished=True)

    assert output_texts([output(0, " a dog "), output(1, "a cat")]) == ["a dog", "a cat"]
    sampling = greedy_sampling(120)
    assert isinstance(sampling, vllm.SamplingParams)
    assert sampling.temperature == 0.0 and sampling.max_tokens == 120 and sampling.n == 1


def test_vllm_takes_the_engine_arguments_and_knows_the_model(config):
    pytest.importorskip("vllm", reason="the vllm extra is not installed")
    from vllm.engine.arg_utils import EngineArgs

    from pixcap.stages.caption_vllm import engine_arguments

    model_config = EngineArgs(**engine_arguments(config)).create_model_config()  # reads the folder; no GPU
    assert model_config.architectures == ["LlavaForConditionalGeneration"] and model_config.is_multimodal_model


def test_the_cpus_crop_is_the_image_sent_and_gives_the_same_captions(config, hf_stage, tiny_models, model_images,
                                                                    stage_batch):
    from pixcap.schemas.stages import ClipConfig
    from pixcap.stages.model_inputs import ModelInputsStage

    images = model_images(4, seed=7)
    clip = ClipConfig(model=str(tiny_models["clip_config"]), pretrained=str(tiny_models["clip_checkpoint"]))
    batch = ModelInputsStage(config, clip)(stage_batch(images))
    sent = []

    class Recording(TransformersEngine):
        def captions(self, requests):
            sent.extend(np.array(r["multi_modal_data"]["image"]) for r in requests)
            return super().captions(requests)

    stage, _ = stage_with(config, Recording(hf_stage))
    out = stage(batch)
    assert all(np.array_equal(a, b) for a, b in zip(sent, batch[B.CAPTION_PIXELS])) and len(sent) == 4
    assert out[B.CAPTION] == hf_stage(stage_batch(images))[B.CAPTION]
    assert B.CAPTION_PIXELS not in out
