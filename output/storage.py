"""The output folder on any fsspec filesystem: a local disk, a shared mount, S3, GCS.

Object stores cannot rename, so nothing here relies on a rename being atomic across files. A
file written through `write_bytes` or `writer` appears whole under its final name or not at
all: on a local disk it is written to a temporary name and renamed; on an object store it is
one put (or a multipart upload that the store publishes on completion). Temporary names end in
TMP_SUFFIX, so the clean-up removes only names pixcap made.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import shutil
import uuid
from typing import Iterator, Optional

import fsspec
from fsspec.implementations.local import LocalFileSystem

from pixcap.schemas import JobError
from pixcap.schemas.manifest import TMP_SUFFIX


class OutsideOutput(JobError):
    """A path that would leave the output (exit code 2)."""


def inside_root(relative: str, root: str) -> str:
    """relative, when it names something under the root. Every path pixcap builds is (layout.py),
    and a manifest is checked before its names are used (manifest_check.py); this refusal is the
    last line: whatever a name holds, nothing is read or written outside the output through it."""
    parts = posixpath.normpath(relative).split("/")
    if relative.startswith("/") or parts[0] == "..":
        raise OutsideOutput(f"{root}: the path {relative[:200]!r} leaves the output; pixcap never reads or writes there")
    return relative


class HashingWriter:
    """A write-only file wrapper that counts and hashes what passes through it."""

    def __init__(self, f):
        self.f, self.bytes, self.digest = f, 0, hashlib.sha256()

    def write(self, data) -> int:
        self.digest.update(data)
        self.bytes += len(data)
        return self.f.write(data)

    def tell(self) -> int:
        return self.bytes

    def flush(self) -> None:
        self.f.flush()


class Storage:
    """An output root on a filesystem; paths given to methods are relative to it (a/b/c)."""

    def __init__(self, url: str, storage_options: Optional[dict] = None):
        self.url_root = url.rstrip("/") or url
        self.options = dict(storage_options or {})
        self.fs, root = fsspec.core.url_to_fs(url, **self.options)
        self.local = isinstance(self.fs, LocalFileSystem)
        self.root = os.path.abspath(os.path.expanduser(root)) if self.local else root.rstrip("/")

    def __reduce__(self):  # workers rebuild it from the URL (credentials come from the environment)
        return (Storage, (self.url_root, self.options))

    def path(self, relative: str = "") -> str:
        return posixpath.join(self.root, inside_root(relative, self.url_root)) if relative else self.root

    def url(self, relative: str = "") -> str:
        """The URL a user would type for a path in the output."""
        base = self.root if self.local else self.fs.unstrip_protocol(self.root)
        return posixpath.join(base, inside_root(relative, self.url_root)) if relative else base

    # -- reading -------------------------------------------------------------------------
    def exists(self, relative: str) -> bool:
        self._fresh()
        return self.fs.exists(self.path(relative))

    def isdir(self, relative: str = "") -> bool:
        self._fresh()
        return self.fs.isdir(self.path(relative))

    def isfile(self, relative: str = "") -> bool:
        self._fresh()
        return self.fs.isfile(self.path(relative))

    def _fresh(self) -> None:
        """Forget cached listings: workers write to the same store from other processes."""
        if not self.local:
            self.fs.invalidate_cache()

    def listdir(self, relative: str = "") -> list:
        """Names of the files directly in a folder; [] when there is none."""
        return self._names(relative, "file")

    def folders(self, relative: str = "") -> list:
        """Names of the folders directly in a folder; [] when there is none."""
        return self._names(relative, "directory")

    def _names(self, relative: str, kind: str) -> list:
        self._fresh()
        try:
            entries = self.fs.ls(self.path(relative), detail=True)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(posixpath.basename(e["name"].rstrip("/")) for e in entries if e["type"] == kind)

    def entries(self) -> list:
        """Names directly under the root, files and folders."""
        self._fresh()
        try:
            return sorted(posixpath.basename(p.rstrip("/")) for p in self.fs.ls(self.root, detail=False))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def read_bytes(self, relative: str) -> bytes:
        return self.fs.cat_file(self.path(relative))

    def read_many(self, relatives: list) -> dict:
        """{relative: bytes} of several files; an object store fetches them concurrently."""
        if self.local or not relatives:
            return {relative: self.read_bytes(relative) for relative in relatives}
        found = self.fs.cat([self.path(relative) for relative in relatives], on_error="raise")
        return {relative: found[self.path(relative)] for relative in relatives}

    def open(self, relative: str, mode: str = "rb"):
        return self.fs.open(self.path(relative), mode)

    def size(self, relative: str) -> int:
        return self.fs.size(self.path(relative))

    def sha256(self, relative: str) -> str:
        digest = hashlib.sha256()
        with self.open(relative) as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    # -- writing -------------------------------------------------------------------------
    def makedirs(self, relative: str = "") -> None:
        if self.local:
            os.makedirs(self.path(relative), exist_ok=True)

    def write_bytes(self, relative: str, data: bytes) -> None:
        """Write a whole file that appears under its name complete, or not at all."""
        with self.writer(relative) as f:
            f.write(data)

    @contextlib.contextmanager
    def writer(self, relative: str) -> Iterator[HashingWriter]:
        """A file to stream into; published under its name only when the block ends without error.
        The yielded writer counts (.bytes) and hashes (.digest) what was written."""
        final = self.path(relative)
        self.makedirs(posixpath.dirname(relative))
        if self.local:
            temp = f"{final}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}"
            try:
                with open(temp, "wb") as f:
                    yield HashingWriter(f)
                os.replace(temp, final)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(temp)
            return
        f = self.fs.open(final, "wb")
        try:
            yield HashingWriter(f)
        except BaseException:
            with contextlib.suppress(Exception):
                f.discard()  # abort the upload: nothing appears under the name
            f.closed = True  # discarded: its finaliser must not try to publish what is left
            raise
        f.close()

    def create_exclusive(self, relative: str, data: bytes) -> bool:
        """Create a file only if none is there; False when one is. One step on every kind of
        storage: a hard link of a written temp file locally, a conditional put on S3."""
        final = self.path(relative)
        if self.local:
            self.makedirs(posixpath.dirname(relative))
            temp = f"{final}.{uuid.uuid4().hex[:8]}{TMP_SUFFIX}"
            try:
                with open(temp, "wb") as f:
                    f.write(data)
                os.link(temp, final)
                return True
            except FileExistsError:
                return False
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(temp)
        try:
            self.fs.pipe_file(final, data, mode="create")
            return True
        except (FileExistsError, OSError) as e:
            if isinstance(e, FileExistsError) or "PreconditionFailed" in str(e) or "412" in str(e):
                return False
            raise

    def write_many(self, files: dict) -> None:
        """Write several small files ({relative: bytes}), each whole under its name or not at all;
        an object store takes them as concurrent puts."""
        if self.local:
            for relative, data in files.items():
                self.write_bytes(relative, data)
        elif files:
            self.fs.pipe({self.path(relative): data for relative, data in files.items()})

    def remove(self, relative: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path(relative))

    def remove_tree(self, relative: str) -> None:
        """Remove a folder and what is in it; nothing when it is not there."""
        with contextlib.suppress(FileNotFoundError):
            if self.local:
                shutil.rmtree(self.path(relative))
            elif self.fs.exists(self.path(relative)):
                self.fs.rm(self.path(relative), recursive=True)
        self._fresh()
