"""gpu_check's summary (the figures the issue's goals name) and the short table it prints last."""
from __future__ import annotations

GOAL_CAPTION_IMAGES_PER_S = 30.0  # hf captioning per H200, LLaVA-1.5-7B shape, 120 new tokens
GOAL_CAPTION_VS_EAGER = 2.5  # the best configuration over eager at batch 64, in the same run
GOAL_CLIP_IMAGES_PER_S = 2000.0  # ViT-L/14 in bf16
GOAL_TRAIN_MFU = 0.40  # XL-2 at 256 px


def measured(record: dict) -> dict:
    """A part's variants that produced figures, finished or not (a killed part keeps its progress lines)."""
    variants = dict(record.get("variants", {}))
    variants.update((record.get("result") or {}).get("variants", {}))
    return {name: v for name, v in variants.items() if isinstance(v, dict) and "images_per_s" in v}


def summary(results: dict) -> dict:
    parts = results["parts"]
    found = {}
    captions = measured(parts.get("caption", {}))
    eager = next((v for name, v in captions.items() if name.startswith("eager")), None)
    if captions:
        best_name, best = max(captions.items(), key=lambda item: item[1]["images_per_s"])
        found.update(caption_best=best_name, caption_images_per_s=best["images_per_s"],
                     caption_vs_eager=best["images_per_s"] / eager["images_per_s"] if eager else None,
                     caption_ms_per_step=best["ms_per_step"], caption_step_over_floor=best["step_over_floor"])
    clip = parts.get("clip", {}).get("result") or parts.get("clip", {}).get("variants", {}).get("ClipStage")
    if clip:
        found["clip_images_per_s"] = clip["images_per_s"]
    train = measured(parts.get("train", {}))
    if train:
        name, best = max(train.items(), key=lambda item: item[1]["images_per_s"])
        found.update(train_best=name, train_images_per_s=best["images_per_s"], train_mfu=best["mfu"])
    cpu = parts.get("cpu", {}).get("result")
    if cpu:
        found["cpu_images_per_s_per_core"] = cpu["images_per_s_per_core"]
        if "caption_images_per_s" in found:
            # Cores whose crops keep the fastest captioning configuration fed, with every core busy.
            found["cores_per_gpu_for_captioning"] = found["caption_images_per_s"] / cpu["images_per_s_per_core"]
    found["goals"] = goals(found)
    return found


def goals(found: dict) -> dict:
    checks = {"hf captioning images/s": ("caption_images_per_s", GOAL_CAPTION_IMAGES_PER_S),
              "hf best / eager": ("caption_vs_eager", GOAL_CAPTION_VS_EAGER),
              "CLIP ViT-L/14 images/s": ("clip_images_per_s", GOAL_CLIP_IMAGES_PER_S),
              "XL-2 256 px MFU": ("train_mfu", GOAL_TRAIN_MFU)}
    out = {}
    for label, (key, goal) in checks.items():
        value = found.get(key)
        out[label] = {"value": value, "goal": goal, "met": None if value is None else value >= goal}
    return out


def number(value, digits: int = 1) -> str:
    return "-" if value is None or value != value else f"{value:.{digits}f}"  # None, or NaN (no GPU memory)


def variant_rows(part: str, variants: dict, measured) -> list:
    """A row per variant of a part: measured(name, v) where it has figures, else why it has none."""
    rows = []
    for name, v in variants.items():
        if name == "build" or not isinstance(v, dict):
            continue
        rows.append(measured(name, v) if "images_per_s" in v else f"{part:<8} {name:<28} {first_words(v)}")
    return rows


def caption_rows(record: dict) -> list:
    variants = dict(record.get("variants", {}))
    variants.update((record.get("result") or {}).get("variants", {}))
    return variant_rows("caption", variants, lambda name, v: (
        f"caption  {name:<28} {v['images_per_s']:9.2f}  {v['ms_per_step']:7.1f} ms/step  "
        f"floor {v['floor_ms_per_step']:5.1f} ms ({number(v['step_over_floor'])}x)  "
        f"peak {number(v['peak_gib'])} GiB  {number(v.get('vs_eager'), 2)}x eager  warm-up {v['warm_up_s']:.0f} s"))


def first_words(v: dict) -> str:
    for key in ("error", "skipped", "not_run"):
        if key in v:
            return f"{key}: {v[key]}"[:160]
    return str(v)[:160]


def part_problem(name: str, record: dict) -> list:
    if record.get("status") in (None, "ok"):
        return []
    return [f"{name:<8} {record.get('status')}: {str(record.get('error', ''))[:200]}"]


def table(results: dict) -> str:
    parts, env = results["parts"], results["environment"]
    lines = [f"gpu_check --shape {results['shape']['name']}: {env.get('device')}, torch {env.get('torch')}, "
             f"transformers {env.get('transformers')}, {env.get('cores')} cores, {results['seconds']:.0f} s"]
    device = parts.get("device", {}).get("result")
    if device:
        lines.append(f"ceilings: matrix product {device['matmul_flops_per_s'] / 1e12:.3g} TFLOP/s "
                     f"({device['matmul_dtype']}), copy {device['copy_bytes_per_s'] / 1e12:.3g} TB/s")
    lines.append(f"{'part':<8} {'measurement':<28} {'images/s':>9}")
    lines += caption_rows(parts.get("caption", {}))
    clip = parts.get("clip", {})
    figures = clip.get("result") or clip.get("variants", {}).get("ClipStage")
    if figures:
        lines.append(f"clip     {'ClipStage b' + str(figures['batch_size']):<28} {figures['images_per_s']:9.1f}  "
                     f"{figures['model']}, weights {figures['weights_dtype']}, peak {number(figures['peak_gib'])} GiB; "
                     f"forward alone {number(figures.get('forward_stage_weights_images_per_s'), 0)} (as the stage "
                     f"keeps the weights), {number(figures.get('forward_bf16_weights_images_per_s'), 0)} (bf16 weights)")
    train = parts.get("train", {})
    info = (train.get("result") or train.get("variants", {}).get("build") or {})
    lines += variant_rows("train", {**train.get("variants", {}), **info.get("variants", {})}, lambda name, v: (
        f"train    {name:<28} {v['images_per_s']:9.1f}  {v['steps_per_s']:.2f} steps/s at batch "
        f"{info.get('batch_size')}  MFU {number(None if v['mfu'] is None else 100 * v['mfu'])}%  "
        f"peak {number(v['peak_gib'])} GiB  warm-up {v['warm_up_s']:.0f} s"))
    cpu = parts.get("cpu", {}).get("result")
    if cpu:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in cpu["stage_ms_per_image"].items())
        lines.append(f"cpu      {'read+decode+model inputs':<28} {cpu['images_per_s']:9.1f}  "
                     f"{cpu['images_per_s_per_core']:.1f} per core on {cpu['workers']} workers (ms/image: {stages})")
    for name in parts:
        lines += part_problem(name, parts[name])
    found = results["summary"]
    if "cores_per_gpu_for_captioning" in found:
        lines.append(f"cores per GPU so captioning ({found['caption_best']}) never waits: "
                     f"{found['cores_per_gpu_for_captioning']:.1f}")
    lines.append("goals: " + "; ".join(
        f"{label} {number(g['value'], 2)} (goal {g['goal']:g}: {'-' if g['met'] is None else 'met' if g['met'] else 'missed'})"
        for label, g in found["goals"].items()))
    return "\n".join(lines)
