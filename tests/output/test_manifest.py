"""manifest.json read back: checked against the rules pixcap writes it with before anything is
written, and written so that any input URI (one not valid UTF-8 too) reads back the same."""
import json

import pytest

from pixcap.cli.main import main
from pixcap.output.commit import commit_shard
from pixcap.output.fragments import FragmentWriter
from pixcap.output.manifest import new_manifest, read_manifest, shard_entries, write_manifest
from pixcap.output.manifest_check import ManifestTampered
from pixcap.output.session import existing_manifest
from pixcap.output.storage import Storage
from pixcap.schemas.manifest import MANIFEST_NAME
from tests.output.batches import finished_batch


@pytest.fixture
def output(tmp_path):
    """An output with one committed shard (p-00000) and its manifest, made without Ray."""
    storage = Storage(str(tmp_path / "out"))
    summary = FragmentWriter(storage)(finished_batch("p-00000", [0, 1], count=2, part_end=True))
    files = commit_shard(storage, "p-00000", [summary["fragment"][0]])["files"]
    manifest = new_manifest({"shard_size": 2})
    manifest["inputs"] = [{"uri": str(tmp_path / "in.tar"), "kind": "tar", "identity": {"size": 1}, "prefix": "p"}]
    manifest["shards"] = shard_entries(storage, {"p-00000"}, [], files)
    write_manifest(storage, manifest)
    return tmp_path, storage


def tamper(storage: Storage, edit) -> None:
    manifest = json.loads(storage.read_bytes(MANIFEST_NAME))
    edit(manifest)
    storage.write_bytes(MANIFEST_NAME, json.dumps(manifest).encode())


TAMPERED = {
    "prefix": (lambda m: m["inputs"][0].update(prefix="../../evil"), "inputs[0].prefix is '../../evil'"),
    "shard name": (lambda m: m["shards"][0].update(name="../x-00000"), "shards[0].name is '../x-00000'"),
    "shard path": (lambda m: m["shards"][0]["tar"].update(path="../../evil.tar"), "shards[0].tar.path is '../../evil.tar'"),
    "absolute path": (lambda m: m["shards"][0]["stats"].update(path="/etc/passwd"), "shards[0].stats.path is '/etc/passwd'"),
    "inputs not a list": (lambda m: m.update(inputs="x"), "inputs is 'x'"),
}


@pytest.mark.parametrize("case", sorted(TAMPERED))
def test_a_tampered_manifest_is_refused_naming_the_file_and_the_value(output, case):
    tmp_path, storage = output
    edit, named = TAMPERED[case]
    tamper(storage, edit)
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(ManifestTampered) as refused:
        existing_manifest(storage)
    message = str(refused.value)
    assert message.startswith(f"{storage.url(MANIFEST_NAME)}: {named}") and "\n" not in message
    assert sorted(tmp_path.rglob("*")) == before


def test_commands_refuse_a_tampered_manifest_with_exit_code_2_and_one_line(output, capsys):
    tmp_path, storage = output
    tamper(storage, TAMPERED["prefix"][0])
    assert main(["verify", storage.url()]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "manifest.json" in err and "'../../evil'" in err
    assert not list(tmp_path.parent.glob("evil*")) and not list(tmp_path.glob("evil*"))


def test_an_untampered_manifest_reads_back(output):
    _, storage = output
    assert read_manifest(storage)["inputs"][0]["prefix"] == "p"


def test_an_input_uri_that_is_not_utf8_reads_back_the_same(tmp_path):
    storage = Storage(str(tmp_path / "out"))
    uri = f"{tmp_path}/caf\udce9"  # a latin-1 folder name, as Python lists it
    manifest = new_manifest({})
    manifest["inputs"] = [{"uri": uri, "kind": "folder", "identity": {}, "prefix": "caf_"}]
    write_manifest(storage, manifest)
    assert read_manifest(storage)["inputs"][0]["uri"] == uri
    json.loads(storage.read_bytes(MANIFEST_NAME).decode("utf-8"))  # valid UTF-8 JSON for every reader
