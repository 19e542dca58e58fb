"""read: stream the image members of input parts (tars and folder chunks) without extracting them.

One output row per image-like member. Each row gets its key, its shard and its position in the
shard; the last row of a shard carries the shard's input count and the last row of a part says
so, which is how the writer knows a shard is complete. Inputs a previous run finished are
counted but not emitted. A member that cannot be read becomes a reject row, never an exception.
"""
from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import stat
import tarfile
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator, Optional

import fsspec
from fsspec.implementations.local import LocalFileSystem

from pixcap.schemas import rejects as R
from pixcap.schemas import batch as B
from pixcap.schemas.stages import DecodeConfig
from pixcap.schemas.shards import shard_name

from .keys import (
    CAPTION_EXTENSION, KeyMaker, SidecarTracker, is_image_name, is_unsafe_path, printable_name, quoted_name, split_extension,
)
from .caption_text import caption_text
from .plausible_size import read_checked
from .read_parquet import parquet_members

# A batch is yielded when it holds BATCH_BYTES of member bytes or ROWS_PER_BATCH rows, whichever
# comes first: a read task then holds one batch, one member of lookahead and the member being
# read, however big the members (a row count alone let 16 members of 64 MiB make a 5 GiB worker).
# 8 MiB is the graph's Ray Data block size, so a batch is about one block.
BATCH_BYTES = 8 << 20
ROWS_PER_BATCH = 16
CAPTION_BYTES = 64 << 10  # a caption file is read up to this: a caption is a few hundred bytes


@dataclass
class Member:
    """One image-like input of a part, before it is numbered."""

    name: str  # member path inside the tar, or the file's URL
    source: str
    key: Optional[str]
    data: bytes = b""
    caption: str = ""
    reason: str = ""  # a reject reason, when the member cannot be used
    error: str = ""


def _row(part: dict, member: Member, position: int, shard_size: int) -> dict:
    return {
        B.KEY: member.key or "",
        B.SHARD: shard_name(part[B.PART_SHARD_PREFIX], part[B.PART_FIRST_SHARD] + position // shard_size),
        B.INDEX: position % shard_size,
        B.SHARD_COUNT: -1,
        B.PART_END: False,
        B.PART_ID: part[B.PART_ID],
        B.SOURCE: printable_name(member.source),  # a name that is not UTF-8 is kept with \xNN escapes
        B.DATA: member.data,
        B.SIDECAR_CAPTION: member.caption,
        B.REJECT_STAGE: "read" if member.reason else "",
        B.REJECT_REASON: member.reason,
        B.REJECT_ERROR: printable_name(member.error),
    }


def _caption(data: bytes) -> str:
    """A caption file's first CAPTION_BYTES as clean text (stages/caption_text.py: encodings, controls)."""
    return caption_text(data, cut=len(data) >= CAPTION_BYTES)


def _read_text(fs, path: str, root_path: str) -> str:
    """A caption file's text, or "" when there is none or it may not be read (see local_file_problem)."""
    try:
        if local_file_problem(fs, path, root_path):
            return ""
        with open_regular(fs, path) as f:
            return _caption(f.read(CAPTION_BYTES))
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, NotRegularFile):
        return ""


class ReadStage:
    """Turns a batch of part rows into batches of member rows (a generator, for map_batches)."""

    def __init__(self, shard_size: int, read_captions: bool, max_file_bytes: int = DecodeConfig.max_file_bytes,
                 storage_options: Optional[dict] = None):
        self.shard_size = shard_size
        self.options = dict(storage_options or {})  # the job's storage_options, for every input URL
        self.read_captions = read_captions  # only the sidecar backend needs existing captions
        self.max_file_bytes = max_file_bytes  # a member is held in memory whole, so its size is capped

    def __call__(self, parts: dict) -> Iterator[dict]:
        rows, held = [], 0  # the batch being filled, and its member bytes
        for i in range(len(parts[B.PART_ID])):
            part = {column: values[i] for column, values in parts.items()}
            for row in self.read_part(part):
                rows.append(row)
                held += len(row[B.DATA])
                if held >= BATCH_BYTES or len(rows) >= ROWS_PER_BATCH:
                    yield _to_batch(rows)
                    rows, held = [], 0
        if rows:
            yield _to_batch(rows)

    def read_part(self, part: dict) -> Iterator[dict]:
        """Number the part's members, mark shard and part ends, and skip finished inputs."""
        skip = set(part[B.PART_SKIP])
        if part[B.PART_KIND] == "parquet":  # rows of a parquet file (read_parquet.py)
            members = parquet_members(part, skip, self.options, self.read_captions, self.max_file_bytes, Member)
        else:
            members = self._tar_members(part, skip) if part[B.PART_KIND] == "tar" else self._file_members(part, skip)
        held = None  # one row of lookahead: a row is its shard's last when the next is not in it
        for position, member in enumerate(members):
            if held is not None:
                yield from self._release(*held, shard_ends=held[1] // self.shard_size != position // self.shard_size, skip=skip)
            held = (None if member is None else _row(part, member, position, self.shard_size), position)
        if held is not None:
            yield from self._release(*held, shard_ends=True, skip=skip, part_ends=True)

    def _release(self, row, position: int, shard_ends: bool, skip: set, part_ends: bool = False) -> Iterator[dict]:
        # A finished input (None) was numbered, so later ones keep their positions, but is not
        # sent on: its shard's count and the part's end are already in the finished fragment.
        if row is None or position in skip:
            return
        if shard_ends:
            row[B.SHARD_COUNT] = position % self.shard_size + 1
        row[B.PART_END] = part_ends
        yield row

    def _tar_members(self, part: dict, skip: set) -> Iterator[Optional[Member]]:
        """Image members of a tar, streamed; a member's bytes are read only when not yet done.

        Yields None for a finished member. A `.txt` member right after an image with the same
        stem (webdataset's grouping) is its existing caption; other non-image members belong to
        the image they share a sample name with, and those that belong to none come last.
        """
        uri = part[B.PART_URI]
        try:
            problem = tar_problem(uri, part.get(B.PART_ROOT) or "", self.options)
        except OSError:
            problem = ""  # gone or unreadable: opening it below says so as a read_error row
        if problem:  # one row for the tar; nothing in it is read
            yield Member(name=uri, source=uri, key=None, reason=R.UNSAFE_MEMBER, error=problem)
            return
        keys = KeyMaker(part[B.PART_KEY_PREFIX])
        sidecars = SidecarTracker()
        captions_fs, captions_dir = _captions_location(part, self.options) if self.read_captions else (None, "")
        pending = None  # the last image member, waiting for a caption member that may follow
        broken = None  # a row for the archive itself, when it cannot be read to its end
        position = 0
        try:
            with open_regular(*fsspec.core.url_to_fs(uri, **self.options)) as f, tarfile.open(fileobj=decompressed(f), mode="r|") as tar:
                for info in tar:
                    if info.isdir():
                        continue
                    stem, ext = split_extension(info.name)
                    if pending is not None and ext == CAPTION_EXTENSION and stem == split_extension(pending.name)[0]:
                        if info.isfile() and not pending.reason and self.read_captions:
                            pending.caption = _caption(tar.extractfile(info).read(CAPTION_BYTES))
                        continue
                    if not is_image_name(info.name):
                        sidecars.add_other(info.name, info.isfile())
                        continue
                    sidecars.add_image(info.name)
                    if pending is not None:
                        yield pending
                    pending = None
                    member = Member(name=info.name, source=f"{uri}::{info.name}", key=keys.make(info.name))
                    position += 1
                    if position - 1 in skip:
                        yield None
                        continue
                    member.reason, member.error = _member_problem(uri, info.name, member.key, info.isfile())
                    if not member.reason and info.size > self.max_file_bytes:
                        member.reason, member.error = R.TOO_LARGE, self._too_large(info.name, info.size)
                    if not member.reason:
                        try:
                            # A member too big for its own header is rejected before it is held whole.
                            member.data, member.reason, member.error = read_checked(tar.extractfile(info), info.name, info.size)
                        except TAR_ERRORS as e:
                            # Cut inside this member: it is rejected and the part ends here.
                            member.reason, member.error = R.READ_ERROR, f"{info.name}: {e}"
                            pending = member
                            break
                        if captions_fs is not None and not member.reason:
                            member.caption = _read_text(captions_fs, f"{captions_dir}/{stem.rsplit('/', 1)[-1]}.{CAPTION_EXTENSION}", captions_dir)
                    pending = member
        except (*TAR_ERRORS, ValueError) as e:
            # The archive itself broke (unreadable, or truncated between members): one row for it.
            broken = Member(name=uri, source=uri, key=None, reason=R.READ_ERROR, error=f"{uri}: {e}")
        if pending is not None:
            yield pending
        for name, is_file in sidecars.orphans():
            position += 1
            if position - 1 in skip:
                yield None
            else:
                yield _orphan(uri, name, is_file, keys.make(name))
        if broken is not None:
            yield broken

    def _file_members(self, part: dict, skip: set) -> Iterator[Optional[Member]]:
        """The files of a folder chunk, in listing order, with `KEY.txt` or captions/ beside them.

        A file that is a link out of the input folder, or no regular file (a pipe would block
        the read forever), is rejected before it is opened; a non-image file is listed here only
        when no image claims it as a sidecar, and is rejected too.
        """
        captions_fs, captions_dir = _captions_location(part, self.options) if self.read_captions else (None, "")
        root = part[B.PART_URI].rstrip("/")
        root_path = fsspec.core.url_to_fs(root, **self.options)[1]
        listing_errors = part[B.PART_MEMBER_ERRORS]
        for position, (url, key, listing_error) in enumerate(zip(part[B.PART_MEMBERS], part[B.PART_KEYS], listing_errors)):
            if position in skip:
                yield None
                continue
            member = Member(name=url, source=url, key=key)
            if listing_error:  # a folder the listing could not enter: accounted for, never dropped
                member.reason, member.error = R.READ_ERROR, f"{url}: {listing_error}"
                yield member
                continue
            try:
                fs, path = fsspec.core.url_to_fs(url, **self.options)
                problem = local_file_problem(fs, path, root_path)
                if problem:
                    member.reason, member.error = R.UNSAFE_MEMBER, problem
                elif not is_image_name(path):
                    member.reason, member.error = R.NO_IMAGE, f"{url}: not an image, and no image in its folder has its name"
                elif (size := fs.size(path)) > self.max_file_bytes:
                    member.reason, member.error = R.TOO_LARGE, self._too_large(url, size)
                else:
                    with open_regular(fs, path) as f:
                        member.data, member.reason, member.error = read_checked(f, url, size)
                    if self.read_captions and not member.reason:
                        member.caption = self._folder_caption(fs, path, root_path, captions_fs, captions_dir)
            except (OSError, ValueError) as e:
                member.reason, member.error = R.READ_ERROR, f"{url}: {e}"
            yield member

    def _too_large(self, name: str, size: int) -> str:
        return f"{name}: {size} bytes is more than decode.max_file_bytes ({self.max_file_bytes}); not read"

    @staticmethod
    def _folder_caption(fs, path: str, root_path: str, captions_fs, captions_dir: str) -> str:
        stem = split_extension(path)[0]
        caption = _read_text(fs, f"{stem}.{CAPTION_EXTENSION}", root_path)
        if not caption and captions_fs is not None:
            relative = stem[len(root_path):].lstrip("/")
            caption = _read_text(captions_fs, f"{captions_dir}/{relative}.{CAPTION_EXTENSION}", captions_dir)
        return caption


def _member_problem(uri: str, name: str, key: Optional[str], is_file: bool) -> tuple:
    """(reason, error) for a tar member that may not be read, or ("", "")."""
    if key is None:
        return R.DUPLICATE, f"member {quoted_name(name)} appears again in {uri}"
    if is_unsafe_path(name):
        return R.UNSAFE_MEMBER, f"member path {quoted_name(name)} leaves the archive"
    if not is_file:
        return R.UNSAFE_MEMBER, f"member {quoted_name(name)} is a link or device, not a file"
    return "", ""


def _orphan(uri: str, name: str, is_file: bool, key: Optional[str]) -> Member:
    """The reject row of a tar member that belongs to no image."""
    member = Member(name=name, source=f"{uri}::{name}", key=key)
    member.reason, member.error = _member_problem(uri, name, key, is_file)
    if not member.reason:
        member.reason, member.error = R.NO_IMAGE, f"member {quoted_name(name)} is not an image, and no image in {uri} has its name"
    return member


@lru_cache(maxsize=64)
def _real_root(root_path: str) -> str:
    """An input folder's resolved path; asked once per file, resolved once per folder."""
    return os.path.realpath(root_path)


def local_file_problem(fs, path: str, root_path: str) -> str:
    """Why a local file may not be read as part of the input under root_path, or "".

    Other filesystems have no links to follow; their files are read as listed.
    """
    if not isinstance(fs, LocalFileSystem):
        return ""
    real, real_root = os.path.realpath(path), _real_root(root_path)
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        return f"{path} is a link to {real}, outside the input {root_path}"
    if not stat.S_ISREG(os.stat(real).st_mode):
        return f"{path} is not a regular file (a folder, pipe, socket or device)"
    return ""


# A tar's compression, from its first bytes. tarfile's own "r|*" decompresses through a buffer that
# it copies on every 10 KB read: skipping 1 GiB of compressed zeros took 45 s; these take 4 s.
COMPRESSED_TARS = ((b"\x1f\x8b", lambda f: gzip.GzipFile(fileobj=f, mode="rb")), (b"BZh", bz2.BZ2File),
                   (b"\xfd7zXZ\x00", lzma.LZMAFile))
TAR_ERRORS = (tarfile.TarError, EOFError, OSError, lzma.LZMAError)


class _Prefixed(io.RawIOBase):
    """A stream that cannot seek back, with the bytes already read from it put in front again."""

    def __init__(self, prefix: bytes, f):
        self.prefix, self.f = prefix, f

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.prefix:
            n = min(len(buffer), len(self.prefix))
            buffer[:n], self.prefix = self.prefix[:n], self.prefix[n:]
            return n
        data = self.f.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)


def decompressed(f):
    """The tar stream of an open file: f itself, or a decompressing reader over it."""
    magic = f.read(6)
    try:
        f.seek(0)
    except (OSError, ValueError):  # a stream (HTTP without ranges, say)
        f = io.BufferedReader(_Prefixed(magic, f))
    for signature, reader in COMPRESSED_TARS:
        if magic.startswith(signature):
            return reader(f)
    return f


class NotRegularFile(OSError):
    """A local path that turned out, once open, to be no regular file."""


def open_regular(fs, path: str):
    """Open a file for reading; a local one only if it is a regular file. It is opened without
    blocking and checked on its descriptor, so a FIFO put in its place after a check (or never
    checked) cannot hang the read, and a device is never read."""
    if not isinstance(fs, LocalFileSystem):
        return fs.open(path, "rb")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotRegularFile(f"{path} is not a regular file (a folder, pipe, socket or device)")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def tar_problem(uri: str, root: str, options: Optional[dict] = None) -> str:
    """Why a tar may not be read, or "". A tar found in an input folder (root) gets the checks an
    image there gets: no link out of the folder, nothing but a regular file. A tar named by
    itself may be a link anywhere (the user named it), but must be a regular file too."""
    fs, path = fsspec.core.url_to_fs(uri, **(options or {}))
    if not isinstance(fs, LocalFileSystem):
        return ""
    if root:
        return local_file_problem(fs, path, fsspec.core.url_to_fs(root)[1])
    if not stat.S_ISREG(os.stat(path).st_mode):
        return f"{path} is not a regular file (a folder, pipe, socket or device)"
    return ""


def _captions_location(part: dict, options: dict):
    if not part[B.PART_CAPTIONS]:
        return None, ""
    fs, path = fsspec.core.url_to_fs(part[B.PART_CAPTIONS], **options)
    return fs, path.rstrip("/")


def _to_batch(rows: list) -> dict:
    return {column: [row[column] for row in rows] for column in rows[0]}
