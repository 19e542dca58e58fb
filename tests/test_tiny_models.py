import open_clip
import torch
from transformers import AutoProcessor, LlavaForConditionalGeneration

from pixcap.models.tiny import DONE_MARKER, build_tiny_models
from pixcap.models.tiny_captioning import build_tiny_clip, build_tiny_llava


def test_same_seed_same_weights_other_seed_other_weights(tmp_path):
    weights = [
        (build_tiny_llava(tmp_path / name, seed=seed) / "model.safetensors").read_bytes()
        for name, seed in (("a", 0), ("b", 0), ("c", 1))
    ]
    assert weights[0] == weights[1] != weights[2]


def test_llava_loads_like_llava_hf(tmp_path):
    folder = build_tiny_llava(tmp_path / "llava")
    processor = AutoProcessor.from_pretrained(folder)
    model = LlavaForConditionalGeneration.from_pretrained(folder)
    assert type(processor).__name__ == "LlavaProcessor"
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe this image"}]}]
    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)
    assert prompt == "USER: <image>\nDescribe this image ASSISTANT:"
    ids = processor.tokenizer("a dog near the river", add_special_tokens=False)["input_ids"]
    assert processor.tokenizer.unk_token_id not in ids
    assert processor.tokenizer.decode(ids) == "a dog near the river"
    image = torch.randint(0, 256, (40, 48, 3), dtype=torch.uint8).numpy()
    inputs = processor(images=[image], text=[prompt], return_tensors="pt")
    image_tokens = (inputs["input_ids"] == model.config.image_token_id).sum().item()
    assert image_tokens == (32 // 8) ** 2  # 4x4 patches, CLS dropped as in llava-1.5
    output = model.generate(**inputs, do_sample=False, max_new_tokens=6)
    assert output.shape[1] > inputs["input_ids"].shape[1]


def test_clip_loads_through_open_clip(tmp_path):
    config_path, checkpoint_path = build_tiny_clip(tmp_path / "clip")
    open_clip.add_model_config(config_path)
    model, _, preprocess = open_clip.create_model_and_transforms(config_path.stem, pretrained=str(checkpoint_path))
    saved = torch.load(checkpoint_path, weights_only=True)
    assert all(torch.equal(value, saved[key]) for key, value in model.state_dict().items())
    assert open_clip.get_tokenizer(config_path.stem)(["a dog"]).shape == (1, 77)


def test_complete_models_are_reused_and_half_built_ones_rebuilt(tmp_path):
    paths = build_tiny_models(tmp_path)
    weights = paths["llava"] / "model.safetensors"
    weights.write_bytes(b"kept because the folder is complete")
    paths["clip_checkpoint"].write_bytes(b"half written")
    (paths["clip_checkpoint"].parent / DONE_MARKER).unlink()  # as if interrupted before the marker
    assert build_tiny_models(tmp_path) == paths
    assert weights.read_bytes() == b"kept because the folder is complete"
    assert (paths["clip_checkpoint"].parent / DONE_MARKER).is_file()
    assert "visual.conv1.weight" in torch.load(paths["clip_checkpoint"], weights_only=True)
