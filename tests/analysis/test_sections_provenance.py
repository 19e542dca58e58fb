"""The report's provenance section: the manifest's models, revisions and settings, escaped."""
import json
import types

from pixcap.analysis.sections_provenance import provenance_section


def test_it_shows_each_model_with_its_revision_and_the_fingerprint(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({
        "format": "pixcap-output",
        "models": {"caption": {"backend": "hf", "name": "llava-hf/llava-1.5-7b-hf", "revision": "hub:abc123"},
                   "clip": {"name": "ViT-L-14", "pretrained": "openai", "revision": "ViT-L-14 open_clip:openai"}},
        "fingerprint": {"caption.prompt": "Describe <b>this</b>", "shard_size": 1000, "revision.caption": "hub:abc123"},
        "versions": {"pixcap": "0.2.0"}, "runs": [{"status": "finished", "ended": "2026-12-04T10:00:00Z"}],
    }))
    html = provenance_section([types.SimpleNamespace(path=str(out), label="sam")])
    assert "hub:abc123" in html and "name=llava-hf/llava-1.5-7b-hf" in html and "pretrained=openai" in html
    assert "caption.prompt" in html and "&lt;b&gt;this&lt;/b&gt;" in html and "<b>this</b>" not in html
    assert "pixcap 0.2.0; 1 run(s), the last finished" in html


def test_an_output_without_a_manifest_says_so(tmp_path):
    html = provenance_section([types.SimpleNamespace(path=str(tmp_path), label="bare")])
    assert "bare: no manifest.json" in html
