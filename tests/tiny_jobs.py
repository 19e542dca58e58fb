"""The tiny offline models, named. No default names a tiny model (a job that forgets its captioner is
refused), so every test job that runs the models names the ones the session's models_cache holds."""

TINY_MODELS = {"caption": {"model": "tiny:llava"}, "clip": {"model": "tiny:clip", "pretrained": "tiny:clip"}}
_YAML = {"caption": "caption:\n  model: tiny:llava\n", "clip": "clip:\n  model: tiny:clip\n  pretrained: tiny:clip\n"}


def with_tiny_models(job: dict) -> dict:
    """A job dict with the tiny captioner and CLIP named; the keys a job sets itself win."""
    return {**job, **{section: {**keys, **job.get(section, {})} for section, keys in TINY_MODELS.items()}}


def with_tiny_models_yaml(text: str) -> str:
    """A job's YAML text with the tiny models' sections appended, for each section it does not hold
    (one that does names its own keys: a section written twice is refused)."""
    lines = text.splitlines()
    return text + "".join(block for section, block in _YAML.items()
                          if not any(line.startswith(f"{section}:") for line in lines))
