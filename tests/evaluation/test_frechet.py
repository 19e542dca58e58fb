"""The Fréchet distance against scipy's matrix square root and against the closed form."""
import numpy as np
import scipy.linalg

from pixcap.evaluation.frechet import frechet_between, frechet_distance, gaussian


def scipy_frechet(mu1, s1, mu2, s2) -> float:
    """pytorch-fid's formula, computed independently with scipy.linalg.sqrtm."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def random_covariance(rng, d, rank=None):
    a = rng.normal(size=(d, rank or d))
    return a @ a.T / d + (1e-3 * np.eye(d) if rank is None else 0)


def test_matches_scipy_on_known_gaussians():
    rng = np.random.default_rng(0)
    for d in (1, 2, 8, 64):
        mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
        s1, s2 = random_covariance(rng, d), random_covariance(rng, d)
        expected = scipy_frechet(mu1, s1, mu2, s2)
        assert abs(frechet_distance(mu1, s1, mu2, s2) - expected) < 1e-6, d


def test_closed_form_for_commuting_covariances():
    """Diagonal covariances: d² = |mu1 - mu2|² + sum (sqrt(a) - sqrt(b))²."""
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, -1.0])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    expected = 1 + 0 + 9 + ((1 - 2) ** 2 + (2 - 1) ** 2 + (3 - 0.5) ** 2)
    assert abs(frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) - expected) < 1e-9


def test_zero_for_identical_and_symmetric():
    rng = np.random.default_rng(1)
    mu, s = rng.normal(size=5), random_covariance(rng, 5)
    assert abs(frechet_distance(mu, s, mu, s)) < 1e-9
    mu2, s2 = rng.normal(size=5), random_covariance(rng, 5)
    assert abs(frechet_distance(mu, s, mu2, s2) - frechet_distance(mu2, s2, mu, s)) < 1e-9


def test_singular_covariances_fewer_samples_than_dimensions():
    """Fewer images than dimensions: covariances of low rank; scipy's sqrtm still agrees to 1e-6."""
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(10, 32)), rng.normal(loc=0.5, size=(12, 32))
    m1, s1 = gaussian(x)
    m2, s2 = gaussian(y)
    assert np.linalg.matrix_rank(s1) < 32
    assert abs(frechet_between(x, y) - scipy_frechet(m1, s1, m2, s2)) < 1e-6


def test_samples_of_known_gaussians_approach_their_distance():
    """Features drawn from N(0, I) and N(1, 4I) in 4-d: d² = 4 + 4 x (1 - 2)² = 8."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200_000, 4))
    y = rng.normal(loc=1.0, scale=2.0, size=(200_000, 4))
    assert abs(frechet_between(x, y) - 8.0) < 0.05
