"""`pixcap verify OUT`: check every committed file of an output against its manifest."""
from __future__ import annotations

import posixpath

from pixcap.schemas import JobError

from . import layout
from .manifest import is_pixcap_manifest, manifest_files, read_manifest
from .storage import Storage


def verify_output(url: str, storage_options=None) -> list:
    """Problems found, one line each: files missing, of another size or hash, or not in the
    manifest, and a last run that did not finish. [] when the output is what its manifest says."""
    storage = Storage(url, storage_options)
    manifest = read_manifest(storage)
    if not is_pixcap_manifest(manifest):
        raise JobError(f"{storage.url()}: no pixcap manifest.json there; nothing to verify against")
    problems = []
    last = (manifest.get("runs") or [{}])[-1]
    if last.get("status") != "finished":
        problems.append(f"the last run ({last.get('started')}) did not finish ({last.get('status')}); "
                        "run the same command again to complete the output")
    listed = set()
    for entry in manifest_files(manifest):
        path = entry["path"]
        listed.add(path)
        if not storage.exists(path):
            problems.append(f"{path}: missing")
        elif storage.size(path) != entry["bytes"]:
            problems.append(f"{path}: {storage.size(path)} bytes, the manifest says {entry['bytes']}")
        elif storage.sha256(path) != entry["sha256"]:
            problems.append(f"{path}: sha256 differs from the manifest's")
    for directory in layout.COMMITTED_FOLDERS:
        for name in storage.listdir(directory):
            if posixpath.join(directory, name) not in listed:
                problems.append(f"{posixpath.join(directory, name)}: not in the manifest")
    return problems
