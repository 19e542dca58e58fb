"""Duplicates among an output's samples: the same original bytes (sha256), or near-identical
CLIP image embeddings. Shared by `pixcap select --dedup` and the report's counts.

Samples come in the order that decides which copy is kept: the first of each group stays.
A sample is a near duplicate when its cosine with an earlier sample that stays reaches the
threshold; a chain a~b~c where a and c are not close keeps a and c.

The nearest-neighbour search is faiss's (a well-kept library; no hand-written search), done
as NeMo Curator's semantic dedup does it: k-means splits the vectors into clusters of about
CLUSTER_SIZE, and each vector is compared exactly (faiss's BLAS range search) with the
vectors whose home cluster is among its PROBES nearest centroids. Up to CLUSTER_SIZE vectors
form one cluster, so the search is exact there; above that a pair of near duplicates split
across clusters beyond the probes is missed (at a cosine of 0.95 the pair lies within 0.32 of
each other, and almost always shares its nearest centroid).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

CLUSTER_SIZE = 1000  # vectors per k-means cluster: cost is about n * CLUSTER_SIZE dot products per probe
PROBES = 2  # clusters each vector is compared in: its own and the next nearest
KMEANS_SEED = 1234  # fixed, so the same vectors give the same clusters and the same result
KMEANS_ITERATIONS = 10
KMEANS_POINTS_PER_CENTROID = 64  # the training sample: k-means need not see every vector
QUERY_CHUNK = 1024  # queries per range search: bounds the result lists of a cluster full of copies
CONVERT_CHUNK = 65536  # float16 rows converted to float32 at a time for faiss


_HEX_VALUES = np.full(256, 255, dtype=np.uint8)
_HEX_VALUES[np.frombuffer(b"0123456789abcdef", dtype=np.uint8)] = np.arange(16, dtype=np.uint8)


def sha256_digests(column: pa.Array) -> np.ndarray:
    """A sha256 hex column as 32-byte values (np.void), half the memory of the text."""
    text = np.array(column.to_pylist(), dtype="S64")
    values = _HEX_VALUES[np.frombuffer(text.tobytes(), dtype=np.uint8).reshape(-1, 64)]
    if values.size and values.max() > 15:  # pixcap writes lowercase hex; anything else is not its sha256
        raise ValueError("a sha256 column holds a value that is not 64 lowercase hex digits")
    packed = (values[:, 0::2] << 4) | values[:, 1::2]
    return np.ascontiguousarray(packed).view(np.dtype((np.void, 32))).ravel()


def sha256_prefixes(column: pa.Array) -> np.ndarray:
    """The first 8 bytes of each sha256 as uint64: a quarter of the digests' memory, for counting
    over outputs too big to hold them whole. Two different files share a prefix with a chance of
    about n^2 / 2^65 (3e-8 for a million samples): a count, not a choice of what to drop."""
    digests = sha256_digests(column)
    return np.frombuffer(digests.tobytes(), dtype=np.uint8).reshape(-1, 32)[:, :8].copy().view(">u8").ravel()


def exact_duplicates(digests: np.ndarray) -> np.ndarray:
    """True for every sample whose digest an earlier sample has (the first of each stays)."""
    dropped = np.ones(len(digests), dtype=bool)
    if len(digests):
        _, first = np.unique(digests, return_index=True)
        dropped[first] = False
    return dropped


def count_exact_duplicates(digests: np.ndarray) -> int:
    """How many samples `--dedup exact` drops: all but one of each digest."""
    return int(len(digests) - len(np.unique(digests))) if len(digests) else 0


def _as_float32(vectors: np.ndarray, rows: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(vectors[rows], dtype=np.float32)


def _clusters(vectors: np.ndarray) -> np.ndarray:
    """(n, probes) nearest k-means centroids of each vector; its home cluster first."""
    import faiss

    n, dim = vectors.shape
    k = max(1, round(n / CLUSTER_SIZE))
    if k == 1:
        return np.zeros((n, 1), dtype=np.int64)
    rng = np.random.default_rng(KMEANS_SEED)
    sample = np.sort(rng.choice(n, min(n, k * KMEANS_POINTS_PER_CENTROID), replace=False))
    kmeans = faiss.Kmeans(dim, k, niter=KMEANS_ITERATIONS, seed=KMEANS_SEED, spherical=True,
                          max_points_per_centroid=KMEANS_POINTS_PER_CENTROID)
    kmeans.train(_as_float32(vectors, sample))
    centroids = faiss.IndexFlatIP(dim)
    centroids.add(kmeans.centroids)
    probes = min(PROBES, k)
    nearest = np.empty((n, probes), dtype=np.int64)
    for start in range(0, n, CONVERT_CHUNK):
        rows = np.arange(start, min(n, start + CONVERT_CHUNK))
        _, nearest[rows] = centroids.search(_as_float32(vectors, rows), probes)
    return nearest


def near_pairs(vectors: np.ndarray, threshold: float) -> np.ndarray:
    """(m, 2) pairs (i, j), i > j, of samples whose cosine reaches threshold; vectors are unit rows."""
    import faiss

    n, dim = vectors.shape
    nearest = _clusters(vectors)
    home = nearest[:, 0]
    members = np.argsort(home, kind="stable")
    member_bounds = np.searchsorted(home[members], np.arange(nearest.max() + 2))
    probe_cluster = nearest.ravel()
    probe_row = np.repeat(np.arange(n), nearest.shape[1])
    queries = np.argsort(probe_cluster, kind="stable")
    query_bounds = np.searchsorted(probe_cluster[queries], np.arange(nearest.max() + 2))
    found = []
    for cluster in range(len(member_bounds) - 1):
        database = members[member_bounds[cluster]:member_bounds[cluster + 1]]
        if not len(database):
            continue
        index = faiss.IndexFlatIP(dim)
        index.add(_as_float32(vectors, database))
        asking = probe_row[queries[query_bounds[cluster]:query_bounds[cluster + 1]]]
        for start in range(0, len(asking), QUERY_CHUNK):
            rows = asking[start:start + QUERY_CHUNK]
            limits, _, neighbours = index.range_search(_as_float32(vectors, rows), threshold)
            i = np.repeat(rows, np.diff(limits).astype(np.int64))
            j = database[neighbours]
            later = i > j  # each pair once, the later sample first; a vector and itself are no pair
            found.append(np.stack([i[later], j[later]], axis=1))
    pairs = np.concatenate(found) if found else np.empty((0, 2), dtype=np.int64)
    return np.unique(pairs, axis=0) if len(pairs) else pairs


def near_duplicates(vectors: np.ndarray, threshold: float) -> np.ndarray:
    """True for every sample within `threshold` cosine of an earlier sample that stays."""
    dropped = np.zeros(len(vectors), dtype=bool)
    if len(vectors) < 2:
        return dropped
    pairs = near_pairs(vectors, threshold)
    if not len(pairs):
        return dropped
    # Pairs sorted by their later sample: deciding sample i needs only the fate of earlier ones.
    later, earlier = pairs[:, 0], pairs[:, 1]
    starts = np.flatnonzero(np.r_[True, later[1:] != later[:-1]])
    ends = np.r_[starts[1:], len(later)]
    for start, end in zip(starts, ends):
        if not dropped[earlier[start:end]].all():
            dropped[later[start]] = True
    return dropped
