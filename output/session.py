"""Taking an output: what `pixcap run` and `pixcap select` both do before and after their work.

An output is only ever written under its lock, and only once its manifest was read again under
that lock (another run may have finished in between). A run that ends early notes how in the
history; the shards it committed are listed by the next run.
"""
from __future__ import annotations

import contextlib
import typing

from pixcap.schemas import JobError
from pixcap.schemas.manifest import LOCK_NAME, LOGS_DIR

from .lock import take_lock
from .manifest import is_pixcap_manifest, read_manifest, write_manifest
from .provenance import utc_now
from .storage import Storage


def existing_manifest(storage: Storage):
    """The manifest of a pixcap output; None for a folder that does not exist or is empty.
    A folder holding anything else is refused: pixcap never writes into a folder not its own."""
    if storage.isfile():
        raise JobError(f"output: {storage.url()} is a file; an output is a folder (new, empty, or made by pixcap)")
    manifest = read_manifest(storage)
    if manifest is None:
        others = [name for name in storage.entries() if name not in (LOCK_NAME, LOGS_DIR)]
        if others:
            raise JobError(f"output: {storage.url()} is not empty and not a pixcap output (no manifest.json; "
                           f"it holds {', '.join(others[:3])}{', ...' if len(others) > 3 else ''}); "
                           "choose a new or empty folder")
        return None
    if isinstance(manifest, dict) and manifest.get("version") == 1 and "shards" in manifest:
        raise JobError(f"output: {storage.url()} was made by an earlier pixcap (manifest version 1, without input "
                       "identities or a fingerprint); write to a new output")
    if not is_pixcap_manifest(manifest):
        raise JobError(f"output: {storage.url()} holds a manifest.json that pixcap did not write; choose a new or empty folder")
    return manifest


@contextlib.contextmanager
def taken_output(storage: Storage, stream, what: str,
                 check: typing.Callable[[typing.Optional[dict]], None]) -> typing.Iterator[tuple]:
    """(manifest or None, lock) of an output taken for writing: `check` refuses a manifest this
    work may not continue; it runs again under the lock, on the manifest as it is then."""
    storage.makedirs()
    lock = take_lock(storage, stream, what)
    try:
        manifest = existing_manifest(storage)
        check(manifest)
        yield manifest, lock
    finally:
        lock.release()


def record_end(storage: Storage, manifest: dict, run: dict, status: str, **counts) -> None:
    """Note in the history how a run ended early (stopped, failed)."""
    run.update(ended=utc_now(), status=status, **counts)
    try:
        write_manifest(storage, manifest)
    except Exception:  # a full disk: the history misses this run's end; the data is still consistent
        pass


def ended_status(error: BaseException) -> str:
    """An interrupt (Ctrl-C, SIGTERM) stops a run; anything else fails it."""
    return "stopped" if isinstance(error, KeyboardInterrupt) else "failed"

