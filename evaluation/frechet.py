"""The Fréchet distance between two Gaussians fitted to features (FID on Inception features,
CLIP-FID on CLIP image embeddings).

d² = |mu1 - mu2|² + Tr(S1) + Tr(S2) - 2 Tr((S1 S2)^½). The trace of the square root is the sum of
the square roots of the eigenvalues of S1 S2, which are those of the symmetric S1^½ S2 S1^½ and so
real and non-negative: computed with eigh on symmetric matrices, it needs no complex sqrtm and
no retry with a jitter (as pytorch-fid's scipy.linalg.sqrtm path does when S1 S2 is singular,
which it is whenever there are fewer images than feature dimensions).
"""
from __future__ import annotations

import numpy as np


def gaussian(features: np.ndarray) -> tuple:
    """(mean, covariance) of features [n, d], in float64; the covariance is the unbiased one (n - 1), as
    pytorch-fid, clean-fid and torchmetrics use."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need at least two feature vectors, got shape {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    root1 = _sqrt_psd(sigma1)
    middle = root1 @ sigma2 @ root1
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = np.sqrt(np.clip(eigenvalues, 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


def frechet_between(features_a: np.ndarray, features_b: np.ndarray) -> float:
    return frechet_distance(*gaussian(features_a), *gaussian(features_b))
