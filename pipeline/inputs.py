"""List a job's inputs: what each one is, what identifies its content, and which files it holds.

Inputs are tars, folders (searched recursively, for images and for tars), single images, globs
of any of these, and any fsspec URL. The same input named twice (a folder and its trailing-slash
form, a file inside a named folder, one tar reached by two globs) is listed once. Each input
comes with its identity: its full URL and what the filesystem says of its content (size and
mtime, or the object store's ETag; for a folder, a digest of its listing), or, with the job's
`input_identity: sha256`, the digest of its bytes: a tar rewritten with its size and mtime kept
is the same input by stat, another one by sha256. The listing is sorted,
so parts, shard names and keys come out the same on every run.
"""
from __future__ import annotations

import hashlib
import os
import posixpath
from dataclasses import dataclass, field
from typing import Optional

import fsspec
from fsspec.implementations.local import LocalFileSystem

from pixcap.schemas.job import INPUT_IDENTITIES
from pixcap.stages.keys import SidecarTracker, is_image_name, name_bytes
from pixcap.stages.read import open_regular
from pixcap.stages.read_parquet import is_parquet

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
STAT, SHA256 = INPUT_IDENTITIES  # input_identity: what the filesystem says of a file, or its bytes' digest
CAPTIONS_FOLDER = "captions"  # PixArt's layout: captions/sa_K.txt beside the images or tars


class InputError(ValueError):
    """An input that does not exist or matches nothing."""


@dataclass
class Source:
    """One input as the job names it, after expansion: a tar, a folder, or loose files of one folder."""

    kind: str  # "tar", "folder" or "files"
    uri: str  # what identifies it across runs: the tar's or folder's URL; loose files: folder URL#names
    url: str  # the tar's URL, or the folder the files are in
    name: str  # readable base of its shard prefix and keys
    identity: dict  # what the filesystem says of its content; a change means other data
    root: str = ""  # a tar found in a folder: that folder's URL (links may not leave it)
    files: list = field(default_factory=list)  # folder and files: (URL, path relative to url, bytes)
    listing_errors: list = field(default_factory=list)  # (URL, error) of what could not be listed
    captions: str = ""  # URL of a captions/ folder beside the input, or ""


def is_tar(path: str) -> bool:
    return path.lower().endswith(TAR_SUFFIXES)


def tar_stem(path: str) -> str:
    name = posixpath.basename(path)
    for suffix in TAR_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _url(fs, path: str) -> str:
    """Local paths stay plain absolute paths; other filesystems keep their protocol."""
    return path if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(path)


def _content(info: dict, fs=None, by: str = STAT) -> dict:
    """What identifies a file's content: size plus ETag or mtime (stat), or size and the sha256 of
    its bytes (sha256, which reads them)."""
    identity = {"size": int(info.get("size") or 0)}
    if by == SHA256:
        identity["sha256"] = file_sha256(fs, info["name"])
        return identity
    etag = info.get("ETag") or info.get("etag") or info.get("md5Hash") or info.get("generation")
    if etag:
        identity["etag"] = str(etag).strip('"')
    else:
        mtime = info.get("mtime") or info.get("LastModified") or info.get("last_modified") or info.get("updated")
        identity["mtime"] = mtime.isoformat() if hasattr(mtime, "isoformat") else mtime
    return identity


def file_sha256(fs, path: str) -> str:
    """The sha256 of a file's bytes; "" for one that is no regular file or cannot be read (the read
    stage rejects it, and says why, on every run alike)."""
    digest = hashlib.sha256()
    try:
        with open_regular(fs, path) as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return ""
    return digest.hexdigest()


def _identity(source_identity: dict, by: str) -> dict:
    """An identity made by sha256 says so, so that a run asked to identify inputs otherwise than the
    output recorded them is told (pipeline/parts.py); a stat one is as outputs have always held it."""
    return {**source_identity, "by": SHA256} if by == SHA256 else source_identity


def _listing_identity(files: list, fs=None, by: str = STAT) -> dict:
    """A folder's identity: a digest of every file's path and content identity, in order."""
    digest = hashlib.sha256()
    total = 0
    for relative, info in files:
        content = _content(info, fs, by)
        total += content["size"]
        digest.update(repr((relative, sorted(content.items()))).encode())
    return _identity({"files": len(files), "bytes": total, "listing_sha256": digest.hexdigest()}, by)


def _captions_dir(fs, folder: str) -> str:
    candidate = posixpath.join(folder, CAPTIONS_FOLDER)
    return _url(fs, candidate) if fs.isdir(candidate) else ""


def _walk(fs, root: str) -> tuple:
    """({path: info} of every file under root, [(path, error)] of what could not be listed).

    Written here because fsspec's own find and walk drop a folder they cannot list (walk passes
    its on_error only to the top level): every entry of an input must be accounted for."""
    found, errors, seen = {}, [], set()
    pending = [root]
    while pending:
        folder = pending.pop()
        if isinstance(fs, LocalFileSystem):  # a link back up the tree must not loop forever
            real = os.path.realpath(folder)
            if real in seen:
                continue
            seen.add(real)
        try:
            listing = fs.ls(folder, detail=True)
        except OSError as e:
            errors.append((folder, f"cannot list: {e.strerror or e}"))
            continue
        for info in listing:
            path = info["name"].rstrip("/")
            if info["type"] == "directory" and path != folder:
                pending.append(path)
            elif path != folder:
                found[path] = info
    return found, sorted(errors)


def _accounted(paths: list, captions_dir: str = "") -> list:
    """The files of a folder that are inputs: every image, and every other file that no image
    claims as its sidecar (those become `no_image` rejects, so nothing is silently skipped).
    Tars are parts of their own; a captions/ folder holds captions, not inputs."""
    tracker = SidecarTracker()
    images = []
    for path in paths:
        if is_tar(path) or (captions_dir and path.startswith(captions_dir + "/")):
            continue
        if is_image_name(path):
            tracker.add_image(path)
            images.append(path)
        else:
            tracker.add_other(path, path)
    return sorted(images + [path for _, path in tracker.orphans()])


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _normal(fs, path: str) -> str:
    """A local path in one spelling (`d/./photos`, `d//photos` -> `d/photos`); other filesystems'
    keys are kept as they are (an object key may hold `//`)."""
    return os.path.normpath(path) if isinstance(fs, LocalFileSystem) else path


def _place(fs, path: str) -> str:
    """Where a path leads: a local one with its links resolved, so a link to a folder or a tar
    already named is known as the same input."""
    return os.path.realpath(path) if isinstance(fs, LocalFileSystem) else path


def list_sources(inputs: list, storage_options: Optional[dict] = None, by: str = STAT) -> list:
    """The inputs of a job as Sources, each input once, in a stable order; storage_options go to
    fsspec with every URL (the job's key: an endpoint, credentials). An input named several ways
    (`d/photos`, `d/./photos`, a link to it) is listed once, under its first name in sorted order.
    by: the job's input_identity, how each input's content is identified (stat or sha256)."""
    named = []  # (fs, path, is_glob_match)
    for uri in inputs:
        fs, path = fsspec.core.url_to_fs(uri, **(storage_options or {}))
        path = _normal(fs, path.rstrip("/") or path)
        if any(c in path for c in "*?["):
            matches = sorted(fs.glob(path))
            if not matches:
                raise InputError(f"no inputs match {uri}")
            named += [(fs, _normal(fs, match.rstrip("/")), len(matches) > 1) for match in matches]
        elif fs.exists(path):
            named.append((fs, path, False))
        else:
            raise InputError(f"no inputs match {uri}")
    named.sort(key=lambda entry: (entry[1], not entry[2]))

    folders = {}  # (protocol, place) -> (fs, path): a folder reached by several names, once
    for fs, path, _ in named:
        if fs.isdir(path):
            folders.setdefault((fs.protocol, _place(fs, path)), (fs, path))
    # A folder inside another named folder is listed with it, once.
    roots = {k: v for k, v in folders.items()
             if not any(other != k and other[0] == k[0] and _inside(k[1], other[1]) for other in folders)}

    def covered(fs, path: str) -> bool:
        return any(proto == fs.protocol and _inside(_place(fs, path), place) for proto, place in roots)

    sources, tars, loose, seen, parquets = [], {}, {}, set(), {}
    for fs, root in sorted(roots.values(), key=lambda v: v[1]):
        sources += _folder_sources(fs, root, tars, by)
    for fs, path, from_glob in named:
        place = (fs.protocol, _place(fs, path))
        if covered(fs, path) or place in seen:
            continue
        seen.add(place)
        if is_parquet(path):  # rows of images (stages/read_parquet.py)
            parquets.setdefault(path, fs)
        elif is_tar(path):
            if path not in tars:
                tars[path] = (fs, "")
        elif is_image_name(path) or from_glob:  # a glob's other matches are accounted for
            loose.setdefault((fs.protocol, posixpath.dirname(path)), (fs, set()))[1].add(path)
        else:
            raise InputError(f"{_url(fs, path)} is neither a folder, a tar, a parquet file, nor an image")
    for path, (fs, root) in sorted(tars.items()):
        info = fs.info(path)
        sources.append(Source(kind="tar", uri=_url(fs, path), url=_url(fs, path), name=tar_stem(path),
                              identity=_identity(_content(info, fs, by), by), root=root, captions=_captions_dir(fs, posixpath.dirname(path))))
    for path, fs in sorted(parquets.items()):
        sources.append(Source(kind="parquet", uri=_url(fs, path), url=_url(fs, path),
                              name=posixpath.basename(path)[:-len(".parquet")],
                              identity=_identity(_content(fs.info(path), fs, by), by)))
    for (_, parent), (fs, paths) in sorted(loose.items(), key=lambda kv: kv[0][1]):
        infos = {path: fs.info(path) for path in sorted(paths)}
        files = [(path, posixpath.basename(path)) for path in _accounted(sorted(paths))]
        names = hashlib.sha256(name_bytes("\n".join(relative for _, relative in files))).hexdigest()[:16]
        sizes = {path: int(infos[path].get("size") or 0) for path in infos}
        sources.append(Source(
            kind="files", uri=f"{_url(fs, parent)}#{names}", url=_url(fs, parent),
            name=posixpath.basename(parent) or "root",
            identity=_listing_identity([(relative, infos[path]) for path, relative in files], fs, by),
            files=[(_url(fs, path), relative, sizes[path]) for path, relative in files],
        ))
    return sources


def _folder_sources(fs, root: str, tars: dict, by: str = STAT) -> list:
    """A folder's images (one Source), and its tars (added to `tars`, found in this folder)."""
    found, errors = _walk(fs, root)
    for path in sorted(found):
        if is_tar(path):
            tars.setdefault(path, (fs, _url(fs, root)))
    paths = _accounted(sorted(found), posixpath.join(root, CAPTIONS_FOLDER))
    if not paths and not errors:
        return []
    files = [(path, path[len(root) + 1:]) for path in paths]
    return [Source(
        kind="folder", uri=_url(fs, root), url=_url(fs, root), name=posixpath.basename(root) or "root",
        identity=_listing_identity([(relative, found[path]) for path, relative in files], fs, by),
        files=[(_url(fs, path), relative, int(found[path].get("size") or 0)) for path, relative in files],
        listing_errors=[(_url(fs, path), error) for path, error in errors],
        captions=_captions_dir(fs, root),
    )]
