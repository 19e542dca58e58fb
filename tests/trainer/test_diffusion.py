"""GaussianDiffusion against a scalar, from-the-formulas reference of DiT's MSE + learned-range vb loss."""
import math

import torch

from pixcap.trainer.diffusion import GaussianDiffusion

T = 1000


def schedule():
    """Linear betas and cumulative alpha products, in plain Python floats."""
    betas = [1e-4 + (0.02 - 1e-4) * i / (T - 1) for i in range(T)]
    alpha_bars, prod = [], 1.0
    for b in betas:
        prod *= 1.0 - b
        alpha_bars.append(prod)
    return betas, alpha_bars


def cdf_tanh(x):
    return 0.5 * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def cdf_exact(x):
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def reference_terms(x0, x_t, eps, v, t, cdf=cdf_tanh):
    """One element's vb term (nats): KL(q(x_{t-1}|x_t,x0) || p) for t > 0, the 256-bin decoder NLL at t = 0."""
    betas, abar = schedule()
    beta, ab = betas[t], abar[t]
    ab_prev = abar[t - 1] if t > 0 else 1.0
    # Posterior variance; at t = 0 it is 0, and DDPM uses the t = 1 value for its log.
    tb = lambda s: betas[s] * (1 - (abar[s - 1] if s > 0 else 1.0)) / (1 - abar[s])
    log_post_var = math.log(tb(t) if t > 0 else tb(1))

    def posterior_mean(x0_):
        return math.sqrt(ab_prev) * beta / (1 - ab) * x0_ + math.sqrt(1 - beta) * (1 - ab_prev) / (1 - ab) * x_t

    x0_pred = (x_t - math.sqrt(1 - ab) * eps) / math.sqrt(ab)
    mean_p = posterior_mean(x0_pred)
    frac = (v + 1) / 2
    logvar_p = frac * math.log(beta) + (1 - frac) * log_post_var
    if t > 0:
        mean_q, var_q, var_p = posterior_mean(x0), math.exp(log_post_var), math.exp(logvar_p)
        return 0.5 * math.log(var_p / var_q) + (var_q + (mean_q - mean_p) ** 2) / (2 * var_p) - 0.5
    std = math.exp(0.5 * logvar_p)
    hi = 1.0 if x0 > 0.999 else cdf((x0 + 1 / 255 - mean_p) / std)
    lo = 0.0 if x0 < -0.999 else cdf((x0 - 1 / 255 - mean_p) / std)
    return -math.log(max(hi - lo, 1e-12))


def fixed_batch():
    g = torch.Generator().manual_seed(0)
    t = torch.tensor([0, 1, 10, 500, 999, 0])
    x0 = torch.rand(6, 2, 2, 2, generator=g) * 2 - 1
    x0[0, 0, 0, 0], x0[0, 1, 1, 1], x0[5, 0, 0, 1] = -1.0, 1.0, 1.0  # the open-ended edge bins
    x0[0, 0, 1, 0], x0[5, 1, 0, 0] = -0.995, 0.995  # near the edges, still inner bins
    noise = torch.randn(6, 2, 2, 2, generator=g)
    eps = noise + 0.3 * torch.randn(6, 2, 2, 2, generator=g)
    v = torch.rand(6, 2, 2, 2, generator=g) * 2 - 1
    return x0.double(), noise.double(), eps.double(), v.double(), t


def test_q_sample_matches_formula():
    x0, noise, _, _, t = fixed_batch()
    _, abar = schedule()
    x_t = GaussianDiffusion().q_sample(x0, t, noise)
    for i, s in enumerate(t.tolist()):
        want = math.sqrt(abar[s]) * x0[i] + math.sqrt(1 - abar[s]) * noise[i]
        torch.testing.assert_close(x_t[i], want, rtol=1e-6, atol=1e-7)


def test_losses_match_reference():
    x0, noise, eps, v, t = fixed_batch()
    diffusion = GaussianDiffusion()
    x_t = diffusion.q_sample(x0, t, noise)
    out = diffusion.training_losses(torch.cat([eps, v], dim=1), x0, x_t, t, noise)
    for i, s in enumerate(t.tolist()):
        elems = [reference_terms(*(a[i].flatten()[j].item() for a in (x0, x_t, eps, v)), s) for j in range(8)]
        vb = sum(elems) / len(elems) / math.log(2)  # bits per dim, T / 1000 = 1
        mse = ((noise[i] - eps[i]) ** 2).mean().item()
        assert math.isclose(out["vb"][i].item(), vb, rel_tol=1e-4, abs_tol=1e-6), (s, out["vb"][i].item(), vb)
        assert math.isclose(out["mse"][i].item(), mse, rel_tol=1e-5)
        assert math.isclose(out["loss"][i].item(), mse + vb, rel_tol=1e-4)
    # The decoder term is a discretised Gaussian likelihood: close to the one with the exact normal CDF.
    i = 0
    exact = [reference_terms(*(a[i].flatten()[j].item() for a in (x0, x_t, eps, v)), 0, cdf=cdf_exact)
             for j in range(8)]
    assert math.isclose(out["vb"][i].item(), sum(exact) / 8 / math.log(2), rel_tol=2e-2)


def test_vb_trains_only_the_variance():
    x0, noise, eps, v, t = fixed_batch()
    diffusion = GaussianDiffusion()
    x_t = diffusion.q_sample(x0, t, noise)
    output = torch.cat([eps, v], dim=1).float().requires_grad_(True)
    diffusion.training_losses(output, x0, x_t, t, noise)["vb"].sum().backward()
    eps_grad, v_grad = output.grad.chunk(2, dim=1)
    assert eps_grad.abs().max() == 0
    assert v_grad.abs().min() > 0


def test_learned_range_endpoints():
    """v = -1 gives the posterior variance, v = +1 gives beta_t."""
    diffusion = GaussianDiffusion()
    betas, _ = schedule()
    x_t, eps, t = torch.zeros(1, 1), torch.zeros(1, 1), torch.tensor([300])
    _, lo = diffusion.p_mean_logvar(eps, -torch.ones(1, 1), x_t, t)
    _, hi = diffusion.p_mean_logvar(eps, torch.ones(1, 1), x_t, t)
    assert math.isclose(hi.item(), math.log(betas[300]), rel_tol=1e-6)
    assert lo.item() < hi.item()
