"""Reading WebDataset shards: URLs from globs, each shard's samples with where their members lie,
and chosen samples read again from those places.

Where a member lies ([name, byte offset, size] in the shard object) is what lets a sample held in a
partly filled bucket cross a data-segment boundary as a few words in the checkpoint instead of its
bytes (see data.py): it is read again with one ranged read per member. A compressed tar, or a
`pipe:` stream, has no byte offsets to read at; such a sample is found again by reading its shard
from the start.
"""
from __future__ import annotations

import re
import tarfile
from collections import defaultdict

import fsspec
import webdataset as wds

from pixcap.schemas import JobError

# webdataset's meta files (__key__ and the like), which are never sample members
META = re.compile(r"__[^/]*__($|/)")
MEMBERS = "__members__"  # a sample's [name, offset, size] per member, or None where offsets cannot be read at


def expand_shards(uris) -> list:
    """Shard URLs from paths, globs, braces ({000..009}), file:// and other fsspec URLs; pipe: kept as is."""
    urls = []
    for uri in uris:
        for url in wds.shardlists.expand_urls(uri):
            if url.startswith("pipe:") or not any(c in url for c in "*?["):
                urls.append(url)
                continue
            fs, path = fsspec.core.url_to_fs(url)
            local = "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))
            urls += sorted(p if local else fs.unstrip_protocol(p) for p in fs.glob(path))
    if not urls:
        raise JobError(f"shards: nothing matches {', '.join(uris) or '(none given)'}")
    return urls


def open_shard(url: str):
    """A shard's byte stream: pipe: through webdataset's gopen, everything else through fsspec."""
    return wds.gopen(url) if url.startswith("pipe:") else fsspec.open(url, "rb").open()


def one_line(error: Exception) -> str:
    text = str(error).split(" @ <", 1)[0]  # webdataset appends the stream object's repr
    return f"{type(error).__name__}: {' '.join(text.split())}"


def tar_members(stream, url: str):
    """The regular files of a tar stream, as webdataset's tar_file_iterator selects them, each as
    {fname, data, __url__, where}: where is [offset, size] of its bytes, or None if they cannot be read at an offset."""
    tar = tarfile.open(fileobj=stream, mode="r|*")
    # Offsets count bytes of the tar itself: they are the object's own only when it is not compressed.
    seekable = not url.startswith("pipe:") and getattr(tar.fileobj, "comptype", None) == "tar"
    for info in tar:
        name = info.name
        if not info.isreg() or name is None or META.match(name):
            continue
        data = tar.extractfile(info).read()
        yield {"fname": name, "data": data, "__url__": url, "where": [info.offset_data, info.size] if seekable else None}
        tar.members = []  # a streamed tar would otherwise keep every member's header


def shard_files(src, on_broken_shard=None):
    """{url} -> the files of each shard (see tar_members), then {} to end the shard.

    A shard that cannot be opened or read to its end (truncated, unreachable) keeps the files
    read before the break; on_broken_shard(url, error) is told once and the stream goes on.
    Without it, the error is raised.
    """
    for source in src:
        url, error = source["url"], None
        stream = None
        try:
            stream = open_shard(url)
            yield from tar_members(stream, url)
        except Exception as e:
            error = e
        finally:
            if stream is not None:
                stream.close()
        if error is not None:
            if on_broken_shard is None:
                raise error
            on_broken_shard(url, error)
        yield {}  # the end of a shard: its last sample is never merged with the next shard's first


def group_members(files):
    """Files -> samples {__key__, __url__, __members__, ext: bytes}, grouped as webdataset's group_by_keys
    groups them (key and extension by base_plus_ext, extensions lowercased, a sample ends where its key changes)."""
    sample = None
    for file in files:
        if not file:  # the end of a shard
            if sample:
                yield sample
            sample = None
            continue
        key, ext = wds.tariterators.base_plus_ext(file["fname"])
        if key is None:
            continue
        ext = ext.lower()
        if sample is None or key != sample["__key__"]:
            if sample:
                yield sample
            sample = {"__key__": key, "__url__": file["__url__"], MEMBERS: []}
        if ext in sample:
            raise ValueError(f"{file['fname']}: duplicate file name in tar file {file['__url__']}")
        sample[ext] = file["data"]
        members = sample[MEMBERS]
        if members is not None:
            sample[MEMBERS] = None if file["where"] is None else members + [[file["fname"], *file["where"]]]
    if sample:
        yield sample


def tar_samples(src, on_broken_shard=None):
    """Shard URLs -> samples ({__key__, __url__, __members__, ext: bytes}); see shard_files."""
    return group_members(shard_files(src, on_broken_shard))


def sample_id(sample: dict) -> list:
    """What finds a sample again: [url, key, members or None]; plain values, as a checkpoint holds them.
    (A sample not read from a shard has no url; nothing carries one, as only streams from shards carry samples.)"""
    return [sample.get("__url__"), sample["__key__"], sample.get(MEMBERS)]


def read_again(ids):
    """The samples `ids` (from sample_id) name, read again, in their order; None for one that cannot be.

    Members with offsets take one ranged read each; the rest are found by reading their shard
    through once (each such shard is read once for all of its samples asked for)."""
    found, scans = {}, defaultdict(set)
    for url, key, members in ids:
        if members is None:
            scans[url].add(key)
            continue
        try:
            fs, path = fsspec.core.url_to_fs(url)
            files = [{"fname": name, "data": fs.cat_file(path, start=offset, end=offset + size), "__url__": url,
                      "where": [offset, size]} for name, offset, size in members]
            found[url, key] = next(group_members(files + [{}]), None)
        except Exception:
            found[url, key] = None
    for url, keys in scans.items():
        try:
            for sample in tar_samples([{"url": url}]):
                if sample["__key__"] in keys:
                    found[url, sample["__key__"]] = sample
        except Exception:
            pass  # those not found before the break are None
    return [found.get((url, key)) for url, key, _ in ids]
