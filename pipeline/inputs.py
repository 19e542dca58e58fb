"""List a job's inputs into parts: one part per tar, and folder images in chunks of shard_size.

Inputs are tars, folders (searched recursively, for images and for tars), single images, globs
of any of these, and any fsspec URL. The listing is sorted, so parts, shard names and keys come
out the same on every run.
"""
from __future__ import annotations

import posixpath
from collections import defaultdict

import fsspec
from fsspec.implementations.local import LocalFileSystem

from pixcap.schemas import batch as B
from pixcap.schemas.shards import shard_name
from pixcap.stages.keys import KeyMaker, SidecarTracker, is_image_name, sanitise, short_hash

TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
CAPTIONS_FOLDER = "captions"  # PixArt's layout: captions/sa_K.txt beside the images or tars


class InputError(ValueError):
    """An input that does not exist or matches nothing."""


def _is_tar(path: str) -> bool:
    return path.lower().endswith(TAR_SUFFIXES)


def _tar_stem(path: str) -> str:
    name = posixpath.basename(path)
    for suffix in TAR_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _url(fs, path: str) -> str:
    """Local paths stay plain paths; other filesystems keep their protocol."""
    return path if isinstance(fs, LocalFileSystem) else fs.unstrip_protocol(path)


def _captions_dir(fs, folder: str) -> str:
    candidate = posixpath.join(folder, CAPTIONS_FOLDER)
    return _url(fs, candidate) if fs.isdir(candidate) else ""


def _expand(uri: str):
    """(fs, [paths]) for one input: a glob's matches, or the path itself."""
    fs, path = fsspec.core.url_to_fs(uri)
    if any(c in path for c in "*?["):
        return fs, sorted(fs.glob(path))
    return fs, [path] if fs.exists(path) else []


def _accounted(paths: list, captions_dir: str = "") -> list:
    """The files of a folder that are inputs: every image, and every other file that no image
    claims as its sidecar (those become `no_image` rejects, so nothing is silently skipped).
    Tars are parts of their own; a captions/ folder holds captions, not inputs."""
    tracker = SidecarTracker()
    images = []
    for path in paths:
        if _is_tar(path) or (captions_dir and path.startswith(captions_dir + "/")):
            continue
        if is_image_name(path):
            tracker.add_image(path)
            images.append(path)
        else:
            tracker.add_other(path, path)
    return sorted(images + [path for _, path in tracker.orphans()])


def list_parts(inputs: list, shard_size: int) -> list:
    """The parts of all inputs, as rows for the read stage (without PART_SKIP)."""
    tars = []  # (fs, path)
    folders = []  # (fs, root, [image paths])
    loose = defaultdict(list)  # parent folder -> images named one by one, or a glob's files
    for uri in inputs:
        fs, paths = _expand(uri)
        if not paths:
            raise InputError(f"no inputs match {uri}")
        for path in paths:
            if fs.isdir(path):
                found = sorted(fs.find(path))
                tars += [(fs, p) for p in found if _is_tar(p)]
                files = _accounted(found, posixpath.join(path.rstrip("/"), CAPTIONS_FOLDER))
                if files:
                    folders.append((fs, path.rstrip("/"), files))
            elif _is_tar(path):
                tars.append((fs, path))
            elif is_image_name(path) or len(paths) > 1:  # a glob's other matches are accounted for
                loose[(fs, posixpath.dirname(path))].append(path)
            else:
                raise InputError(f"{uri} is neither a folder, a tar, nor an image")
    for (fs, root), files in sorted(loose.items(), key=lambda kv: kv[0][1]):
        folders.append((fs, root, _accounted(files)))

    parts = []
    prefixes = set()

    def unique_prefix(name: str, url: str) -> str:
        prefix = sanitise(name).replace("/", "_")
        if prefix in prefixes:
            prefix = f"{prefix}-{short_hash(url)}"
        prefixes.add(prefix)
        return prefix

    for fs, path in _dedupe(tars):
        url = _url(fs, path)
        prefix = unique_prefix(_tar_stem(path), url)
        parts.append(_part(prefix, "tar", url, prefix, 0, prefix, [], [], _captions_dir(fs, posixpath.dirname(path))))
    for fs, root, files in folders:
        url = _url(fs, root)
        prefix = unique_prefix(posixpath.basename(root) or "root", url)
        keys = KeyMaker(prefix)
        members = [(_url(fs, p), keys.make(p[len(root) + 1:])) for p in files]
        captions = _captions_dir(fs, root)
        for chunk, start in enumerate(range(0, len(members), shard_size)):
            urls, chunk_keys = zip(*members[start : start + shard_size])
            parts.append(_part(shard_name(prefix, chunk), "files", url, prefix, chunk, prefix, list(urls), list(chunk_keys), captions))
    return parts


def _dedupe(tars: list) -> list:
    """A tar named twice (a folder and a glob over it, say) is read once."""
    seen, out = set(), []
    for fs, path in sorted(tars, key=lambda t: t[1]):
        if path not in seen:
            seen.add(path)
            out.append((fs, path))
    return out


def _part(part_id, kind, uri, shard_prefix, first_shard, key_prefix, members, keys, captions) -> dict:
    return {
        B.PART_ID: part_id,
        B.PART_KIND: kind,
        B.PART_URI: uri,
        B.PART_SHARD_PREFIX: shard_prefix,
        B.PART_FIRST_SHARD: first_shard,
        B.PART_KEY_PREFIX: key_prefix,
        B.PART_MEMBERS: members,
        B.PART_KEYS: keys,
        B.PART_CAPTIONS: captions,
        B.PART_SKIP: [],
    }
