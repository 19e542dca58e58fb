"""DDPM training loss of PixArt/DiT: MSE on epsilon plus the variational bound for a learned-range variance."""
from __future__ import annotations

import math

import torch


def normal_kl(mean1, logvar1, mean2, logvar2):
    """KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))), elementwise, in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def approx_standard_normal_cdf(x):
    """The tanh approximation of the standard normal CDF that DDPM's decoder likelihood uses."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def discretized_gaussian_log_likelihood(x, means, log_scales):
    """Log-likelihood (nats) of x in [-1, 1] under a Gaussian discretised into 256 bins, edges open-ended."""
    centered = x - means
    inv_std = torch.exp(-log_scales)
    cdf_plus = approx_standard_normal_cdf(inv_std * (centered + 1.0 / 255.0))
    cdf_min = approx_standard_normal_cdf(inv_std * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_delta))


def mean_flat(x):
    """Mean over all but the batch dimension."""
    return x.mean(dim=list(range(1, x.ndim)))


class GaussianDiffusion:
    """The linear-beta DDPM forward process and the PixArt training loss (epsilon MSE + learned-range vb)."""

    def __init__(self, num_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02):
        self.num_timesteps = num_timesteps
        # Schedule constants in float64 as DDPM keeps them; gathered per step and cast to the data's dtype.
        betas = torch.linspace(beta_start, beta_end, num_timesteps, dtype=torch.float64)
        alphas_bar = torch.cumprod(1.0 - betas, dim=0)
        alphas_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alphas_bar[:-1]])
        self.betas = betas
        self.sqrt_alphas_bar = alphas_bar.sqrt()
        self.sqrt_one_minus_alphas_bar = (1.0 - alphas_bar).sqrt()
        self.sqrt_recip_alphas_bar = (1.0 / alphas_bar).sqrt()
        self.sqrt_recipm1_alphas_bar = (1.0 / alphas_bar - 1.0).sqrt()
        # q(x_{t-1} | x_t, x_0)
        posterior_variance = betas * (1.0 - alphas_bar_prev) / (1.0 - alphas_bar)
        # The variance is 0 at t = 0; its log is clipped to the t = 1 value.
        self.posterior_log_variance_clipped = torch.log(torch.cat([posterior_variance[1:2], posterior_variance[1:]]))
        self.posterior_mean_coef1 = betas * alphas_bar_prev.sqrt() / (1.0 - alphas_bar)
        self.posterior_mean_coef2 = (1.0 - alphas_bar_prev) * (1.0 - betas).sqrt() / (1.0 - alphas_bar)
        self.log_betas = torch.log(betas)

    @staticmethod
    def _at(table, t, x):
        """table[t] broadcast to x's shape, in x's dtype and device."""
        out = table.to(t.device)[t].to(x.dtype)
        return out.view(-1, *([1] * (x.ndim - 1)))

    def q_sample(self, x0, t, noise):
        """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise."""
        return self._at(self.sqrt_alphas_bar, t, x0) * x0 + self._at(self.sqrt_one_minus_alphas_bar, t, x0) * noise

    def q_posterior(self, x0, x_t, t):
        """Mean and log-variance (clipped) of q(x_{t-1} | x_t, x_0)."""
        mean = self._at(self.posterior_mean_coef1, t, x_t) * x0 + self._at(self.posterior_mean_coef2, t, x_t) * x_t
        return mean, self._at(self.posterior_log_variance_clipped, t, x_t)

    def p_mean_logvar(self, eps, v, x_t, t):
        """Mean and log-variance of p(x_{t-1} | x_t) from predicted eps and the interpolation v in [-1, 1]."""
        frac = (v + 1.0) / 2.0  # log-variance between the posterior's (beta tilde) and beta's
        logvar = frac * self._at(self.log_betas, t, x_t) + (1.0 - frac) * self._at(
            self.posterior_log_variance_clipped, t, x_t)
        x0_pred = self._at(self.sqrt_recip_alphas_bar, t, x_t) * x_t - self._at(self.sqrt_recipm1_alphas_bar, t, x_t) * eps
        mean, _ = self.q_posterior(x0_pred, x_t, t)  # not clipped to [-1, 1]: latents are unbounded
        return mean, logvar

    def vb_terms_bpd(self, eps, v, x0, x_t, t):
        """Per-sample variational bound term in bits/dim: KL(q || p) for t > 0, decoder NLL at t = 0."""
        true_mean, true_logvar = self.q_posterior(x0, x_t, t)
        mean, logvar = self.p_mean_logvar(eps, v, x_t, t)
        kl = mean_flat(normal_kl(true_mean, true_logvar, mean, logvar)) / math.log(2.0)
        nll = -mean_flat(discretized_gaussian_log_likelihood(x0, mean, 0.5 * logvar)) / math.log(2.0)
        return torch.where(t == 0, nll, kl)

    def training_losses(self, model_output, x0, x_t, t, noise) -> dict:
        """Per-sample losses from the model's [B, 2C, ...] output: loss = mse(eps) + vb(v), vb with eps detached."""
        model_output, x0, x_t, noise = (a.float() for a in (model_output, x0, x_t, noise))
        eps, v = model_output.chunk(2, dim=1)
        mse = mean_flat((noise - eps) ** 2)
        # The vb term trains only the variance (Improved DDPM's L_hybrid): the mean is learned by the MSE alone.
        vb = self.vb_terms_bpd(eps.detach(), v, x0, x_t, t)
        # The T/1000 factor of DiT's rescaled loss keeps vb's weight independent of T; it is 1 at T = 1000.
        vb = vb * self.num_timesteps / 1000.0
        return {"loss": mse + vb, "mse": mse, "vb": vb}
