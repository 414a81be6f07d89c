"""Exact priors: Gaussian and Gaussian-mixture data distributions with closed-form ε and posteriors.

Data x ∈ R^n (any per-sample shape, n = its numel) with p(x) = Σ_k w_k N(μ_k, Σ_k). Under the VP
forward process x_t = √ᾱ x + √(1−ᾱ) ε the noisy marginal is again a mixture,

    p_t(x_t) = Σ_k w_k N(x_t; √ᾱ μ_k, C_k),   C_k = ᾱ Σ_k + (1−ᾱ) I,

so the exact score is ∇ log p_t = −Σ_k r_k(x_t) C_k⁻¹ (x_t − √ᾱ μ_k) with responsibilities
r_k ∝ w_k N(x_t; √ᾱ μ_k, C_k), and the exact ε-prediction (Tweedie) is ε* = −√(1−ᾱ) ∇ log p_t.
Covariances are isotropic (K,), diagonal (K, *shape) or full (K, n, n) (kept as eigenpairs
Σ_k = U_k diag(λ_k) U_kᵀ, so C_k⁻¹ costs two matmuls at every noise level).

Posterior under y = A x + n, n ~ N(0, Σ_n), A a dense (m, n) matrix (or a linear callable,
materialized): per component S_k = A Σ_k Aᵀ + Σ_n, K_k = Σ_k Aᵀ S_k⁻¹,
μ_k' = μ_k + K_k (y − A μ_k), Σ_k' = Σ_k − K_k A Σ_k, w_k' ∝ w_k N(y; A μ_k, S_k).
Meant for small problems (n up to a few thousand): the solver benchmarks' ground truth.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..kernels._checks import plain_number
from ..schedules import make_alphas_cumprod, validate_alphas_cumprod
from .denoiser import timestep_alphas

__all__ = ["GaussianMixturePosterior", "GaussianMixturePrior", "GaussianPosterior", "GaussianPrior",
           "operator_matrix"]

_LOG_2PI = math.log(2 * math.pi)
_EPS64 = torch.finfo(torch.float64).eps


def _tensor(name: str, value: object) -> torch.Tensor:
    value = plain_number(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.tensor(float(value), dtype=torch.float64)
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        shown = f"a {value.dtype} tensor" if isinstance(value, torch.Tensor) else type(value).__name__
        raise TypeError(f"{name} must be a floating torch.Tensor or a number, got {shown}; convert it with "
                        f"{name}.double() (nothing is cast silently)")
    return value.detach().to(torch.float64)


def _count(name: str, value: object) -> int:
    """A positive int (a NumPy integer too); a bool, float or string is a TypeError."""
    value = plain_number(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _level(name: str, value: object, alternative: str = "") -> float:
    """A noise level ᾱ in (0, 1] given as a real number (a NumPy scalar too); a bool or string is a TypeError.
    ``alternative``: the other accepted form, for the message (" or a (B,) tensor")."""
    value = plain_number(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number in (0, 1]{alternative}, got {type(value).__name__} {value!r}")
    if not 0 < value <= 1:  # NaN fails too
        raise ValueError(f"{name} must be in (0, 1]{alternative}, got {value!r}")
    return float(value)


def _principal_root(vec: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """V diag(scale) Vᵀ (n, n) from eigenvectors V (n, n): for scale = √λ the principal square root, symmetric and
    unique, so a seeded draw z ↦ z·root does not depend on which eigenvectors LAPACK returns (their signs, a basis of
    a repeated eigenvalue's space), which change with the thread count and the library build."""
    return (vec * scale) @ vec.T


def _psd_eigh(name: str, cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenpairs of symmetric PSD matrices (..., n, n); rejects non-finite, asymmetric or indefinite input."""
    if not bool(torch.isfinite(cov).all()):
        raise ValueError(f"{name} must be finite (NaN/Inf entries given)")
    scale = cov.abs().amax().clamp_min(1e-300)
    if not torch.allclose(cov, cov.transpose(-1, -2), rtol=0, atol=1e-10 * float(scale)):
        raise ValueError(f"{name} must be symmetric")
    lam, vec = torch.linalg.eigh((cov + cov.transpose(-1, -2)) / 2)
    if float(lam.min()) < -1e-10 * float(scale):
        raise ValueError(f"{name} must be positive semi-definite, smallest eigenvalue {float(lam.min()):.3g}")
    return lam.clamp_min(0), vec


def operator_matrix(operator: torch.Tensor | Callable[[torch.Tensor], torch.Tensor] | object,
                    shape: Sequence[int]) -> torch.Tensor:
    """The dense (m, n) float64 matrix of a linear operator on per-sample ``shape`` (n = numel).

    ``operator``: an (m, n) tensor; an object with an ``A(x)`` method (diffsolve operators); or a
    callable x (B, *shape) → y (B, ...). Callables are applied to the n basis vectors.
    """
    n = math.prod(shape)
    if isinstance(operator, torch.Tensor):
        if operator.dim() != 2 or operator.shape[1] != n or not operator.is_floating_point():
            raise ValueError(f"A must be a floating (m, {n}) matrix for samples of shape {tuple(shape)}, "
                             f"got {tuple(operator.shape)} {operator.dtype}")
        return operator.detach().to(torch.float64)
    fn = getattr(operator, "A", operator)
    if not callable(fn):
        raise TypeError(f"A must be an (m, n) tensor, an operator with .A(x), or a callable, got "
                        f"{type(operator).__name__}")
    with torch.no_grad():
        basis = torch.eye(n, dtype=torch.float64).reshape(n, *shape)
        out = fn(basis)
    if not isinstance(out, torch.Tensor) or out.shape[0] != n:
        raise ValueError(f"A applied to a batch of {n} inputs must return a tensor with batch {n}")
    return out.reshape(n, -1).T.to(torch.float64).contiguous()


def _noise_cov(m: int, sigma: object, noise_cov: object) -> torch.Tensor:
    if (sigma is None) == (noise_cov is None):
        raise ValueError("give exactly one of sigma (noise std: number or (m,) tensor) and noise_cov ((m, m))")
    if noise_cov is not None:
        cov = _tensor("noise_cov", noise_cov)
        if cov.shape != (m, m):
            raise ValueError(f"noise_cov must have shape ({m}, {m}), got {tuple(cov.shape)}")
        _psd_eigh("noise_cov", cov)
        return cov
    std = _tensor("sigma", sigma)
    if std.dim() == 0:
        std = std.expand(m)
    if std.shape != (m,) or not bool((std >= 0).all()) or not bool(torch.isfinite(std).all()):
        raise ValueError(f"sigma must be a finite non-negative number or an (m,) = ({m},) tensor, got "
                         f"{tuple(std.shape)} {std.flatten()[:4].tolist()}")
    return torch.diag(std**2)


@dataclass
class GaussianPosterior:
    """N(mean, cov) over samples of ``shape``: mean (*shape), cov (n, n), float64;
    ``log_evidence`` = log p(y) when built by a prior's ``posterior``."""

    mean: torch.Tensor
    cov: torch.Tensor
    log_evidence: torch.Tensor | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.mean.shape)

    def _root(self) -> torch.Tensor:
        lam, vec = _psd_eigh("posterior covariance", self.cov)
        return _principal_root(vec, lam.sqrt())

    def sample(self, num: int, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """``num`` exact draws (num, *shape)."""
        z = torch.randn(num, self.cov.shape[0], generator=generator, dtype=torch.float64)
        draws = self.mean.reshape(1, -1) + z @ self._root().T
        return draws.reshape(num, *self.shape).to(dtype)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """(B,) log density at x (B, *shape) (needs a non-singular cov)."""
        dist = torch.distributions.MultivariateNormal(self.mean.reshape(-1), covariance_matrix=self.cov)
        return dist.log_prob(x.reshape(x.shape[0], -1).double())


@dataclass
class GaussianMixturePosterior:
    """Σ_k weights_k N(means_k, covs_k): weights (K,), means (K, *shape), covs (K, n, n), float64;
    ``log_evidence`` = log p(y) when built by a prior's ``posterior``."""

    weights: torch.Tensor
    means: torch.Tensor
    covs: torch.Tensor
    log_evidence: torch.Tensor | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.means.shape[1:])

    @property
    def mean(self) -> torch.Tensor:
        return torch.einsum("k,k...->...", self.weights, self.means)

    @property
    def cov(self) -> torch.Tensor:
        mu = self.means.reshape(self.means.shape[0], -1)
        centred = mu - mu.T @ self.weights
        return torch.einsum("k,kij->ij", self.weights, self.covs) + (centred.T * self.weights) @ centred

    def component(self, k: int) -> GaussianPosterior:
        return GaussianPosterior(self.means[k], self.covs[k])

    def sample(self, num: int, generator: torch.Generator | None = None,
               dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """``num`` exact draws (num, *shape): component by weight, then its Gaussian."""
        idx = torch.multinomial(self.weights, num, replacement=True, generator=generator)
        z = torch.randn(num, self.covs.shape[-1], generator=generator, dtype=torch.float64)
        out = torch.empty(num, self.covs.shape[-1], dtype=torch.float64)
        for k in range(self.weights.numel()):
            sel = idx == k
            root = self.component(k)._root()
            out[sel] = self.means[k].reshape(1, -1) + z[sel] @ root.T
        return out.reshape(num, *self.shape).to(dtype)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """(B,) log density at x (B, *shape) (needs non-singular covs)."""
        parts = torch.stack([self.component(k).log_prob(x) for k in range(self.weights.numel())], dim=1)
        return torch.logsumexp(parts + self.weights.log(), dim=1)


class GaussianMixturePrior:
    """p(x) = Σ_k w_k N(μ_k, Σ_k), usable as a denoiser: ``prior(x_t, t) -> ε*`` (exact).

    Args:
        means: (K, *shape) component means.
        vars: covariances, one of: a number or (K,) (isotropic), (K, *shape) (diagonal),
            (K, n, n) (full, n = numel(shape)).
        weights: (K,) positive, summing to 1 (default uniform).
        alphas_cumprod: training table ᾱ (T,) that maps timesteps to noise levels (default: DDPM
            linear, T = 1000); ``final_alpha_cumprod`` the ᾱ after the last step (default 1).
    """

    _vars_name = "vars"  # the argument's name in error messages (GaussianPrior's is ``var``)

    #: ∂x̂0/∂x_t is a posterior covariance up to a scale (symmetric PSD), so MMPS's CG solves its system exactly
    symmetric_jacobian = True

    def __init__(self, means: torch.Tensor, vars: torch.Tensor | float, weights: torch.Tensor | None = None, *,
                 alphas_cumprod: torch.Tensor | None = None, final_alpha_cumprod: float = 1.0) -> None:
        means = _tensor("means", means)
        if not bool(torch.isfinite(means).all()):
            raise ValueError("means must be finite (NaN/Inf entries given)")
        if means.dim() < 2:
            raise ValueError(f"means must have shape (K, *sample_shape), got {tuple(means.shape)}")
        k, shape = means.shape[0], tuple(means.shape[1:])
        n = math.prod(shape)
        v = _tensor(self._vars_name, vars)
        self.full = False
        if v.dim() == 0 or v.shape == (k,):
            diag = v.reshape(-1, 1).expand(k, n).clone()
        elif v.shape == (k, *shape):
            diag = v.reshape(k, n)
        elif v.shape == (k, n, n):
            self.full = True
        else:
            raise ValueError(f"{self._vars_name} must be a number, ({k},), ({k}, *{shape}) or ({k}, {n}, {n}); "
                             f"got {tuple(v.shape)}")
        if self.full:
            self.eigvals, self.eigvecs = _psd_eigh(self._vars_name, v)
        else:
            if not bool((diag >= 0).all()) or not bool(torch.isfinite(diag).all()):
                raise ValueError(f"{self._vars_name} must be finite and non-negative (NaN/Inf/negative variances "
                                 "given)")
            self.eigvals, self.eigvecs = diag, None
        if weights is None:
            w = torch.full((k,), 1.0 / k, dtype=torch.float64)
        else:
            w = _tensor("weights", weights)
            if w.shape == (k,) and not bool(torch.isfinite(w).all()):
                raise ValueError(f"weights must be finite, got {w.tolist()}; give ({k},) positive weights summing to 1")
            if w.shape != (k,) or bool((w <= 0).any()) or abs(float(w.sum()) - 1) > 1e-6:
                raise ValueError(f"weights must be ({k},) positive and sum to 1, got shape {tuple(w.shape)} "
                                 f"sum {float(w.sum()):.6g}")
        self.weights = w
        self.means = means
        self.sample_shape = shape
        self.alphas_cumprod = make_alphas_cumprod() if alphas_cumprod is None else validate_alphas_cumprod(
            alphas_cumprod)
        final_alpha_cumprod = plain_number(final_alpha_cumprod)
        if (isinstance(final_alpha_cumprod, bool) or not isinstance(final_alpha_cumprod, (int, float))
                or not 0 < final_alpha_cumprod <= 1):
            raise ValueError(f"final_alpha_cumprod must be a number in (0, 1], got {final_alpha_cumprod!r}")
        self.final_alpha_cumprod = float(final_alpha_cumprod)
        self._cache: dict[tuple, tuple] = {}

    @property
    def num_components(self) -> int:
        return self.weights.numel()

    @property
    def covs(self) -> torch.Tensor:
        """(K, n, n) dense covariances."""
        if self.full:
            return self.eigvecs @ torch.diag_embed(self.eigvals) @ self.eigvecs.transpose(-1, -2)
        return torch.diag_embed(self.eigvals)

    def _params(self, ref: torch.Tensor) -> tuple:
        key = (ref.device, ref.dtype)
        if key not in self._cache:
            cast = lambda t: None if t is None else t.to(device=ref.device, dtype=ref.dtype)  # noqa: E731
            self._cache[key] = (cast(self.means.reshape(self.num_components, -1)), cast(self.eigvals),
                                cast(self.eigvecs), cast(self.weights.log()))
        return self._cache[key]

    def _check_x(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"x must be a floating tensor (B, *{self.sample_shape}), got {type(x).__name__}")
        if tuple(x.shape[1:]) != self.sample_shape:
            raise ValueError(f"x must have shape (B, *{self.sample_shape}), got {tuple(x.shape)}")
        return x.reshape(x.shape[0], -1)

    def _alpha(self, alpha_bar: float | torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        if isinstance(alpha_bar, torch.Tensor):
            if not alpha_bar.is_floating_point():
                raise TypeError(f"alpha_bar must be a floating tensor (or a number), got dtype {alpha_bar.dtype}")
            if alpha_bar.numel() not in (1, ref.shape[0]):
                raise ValueError(f"alpha_bar must be a number or hold 1 or B = {ref.shape[0]} values (one per sample "
                                 f"of x), got shape {tuple(alpha_bar.shape)}")
            # checked where it costs no device sync (the sampling loop's ᾱ come from the validated table)
            if alpha_bar.device.type == "cpu" and not bool(((alpha_bar > 0) & (alpha_bar <= 1)).all()):
                raise ValueError(f"alpha_bar must lie in (0, 1], got a tensor with values outside: "
                                 f"{alpha_bar.flatten()[:4].tolist()}")
            a = alpha_bar.to(device=ref.device, dtype=ref.dtype)
            return a.reshape(-1).expand(ref.shape[0]) if a.numel() == 1 else a.reshape(ref.shape[0])
        level = _level("alpha_bar", alpha_bar, " or a (B,) tensor")
        return torch.full((ref.shape[0],), level, device=ref.device, dtype=ref.dtype)

    def _terms(self, x: torch.Tensor, alpha_bar: float | torch.Tensor):
        """Responsibility logits (B, K) and C_k⁻¹ r_k (B, K, n) at level ᾱ."""
        flat = self._check_x(x)
        mu, lam, vec, logw = self._params(flat)
        a = self._alpha(alpha_bar, flat)[:, None, None]
        r = flat[:, None, :] - a.sqrt() * mu[None]  # (B, K, n)
        d = a * lam[None] + (1 - a)  # eigenvalues of C_k, (B, K, n)
        w = r if vec is None else torch.einsum("bki,kij->bkj", r, vec)  # U_kᵀ r
        logn = -0.5 * ((w * w / d).sum(-1) + d.log().sum(-1) + flat.shape[1] * _LOG_2PI)
        cinv_w = w / d
        cinv_r = cinv_w if vec is None else torch.einsum("kij,bkj->bki", vec, cinv_w)
        return logw[None] + logn, cinv_r, a

    def log_prob(self, x: torch.Tensor, alpha_bar: float | torch.Tensor = 1.0) -> torch.Tensor:
        """(B,) exact log p_t(x) of the noisy marginal at level ᾱ (ᾱ = 1: the data density)."""
        logits, _, _ = self._terms(x, alpha_bar)
        return torch.logsumexp(logits, dim=1)

    def eps(self, x: torch.Tensor, alpha_bar: float | torch.Tensor) -> torch.Tensor:
        """Exact ε* = −√(1−ᾱ) ∇ log p_t(x), same shape as x; ᾱ a number or (B,) tensor in (0, 1)."""
        logits, cinv_r, a = self._terms(x, alpha_bar)
        resp = torch.softmax(logits, dim=1)
        out = (1 - a[:, :, 0]).sqrt() * torch.einsum("bk,bkn->bn", resp, cinv_r)
        return out.reshape(x.shape)

    def score(self, x: torch.Tensor, alpha_bar: float | torch.Tensor) -> torch.Tensor:
        """Exact ∇ log p_t(x), same shape as x."""
        logits, cinv_r, _ = self._terms(x, alpha_bar)
        return -torch.einsum("bk,bkn->bn", torch.softmax(logits, dim=1), cinv_r).reshape(x.shape)

    def __call__(self, x: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """Denoiser protocol: ε*(x, t) with ᾱ_t from ``alphas_cumprod``."""
        return self.eps(x, timestep_alphas(self.alphas_cumprod, t, x))

    def sample(self, num: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64,
               alpha_bar: float = 1.0) -> torch.Tensor:
        """``num`` exact draws (num, *shape) of x_t at level ᾱ (default 1: clean data)."""
        num = _count("num", num)
        a = _level("alpha_bar", alpha_bar)
        idx = torch.multinomial(self.weights, num, replacement=True, generator=generator)
        z = torch.randn(num, self.eigvals.shape[-1], generator=generator, dtype=torch.float64)
        mu = self.means.reshape(self.num_components, -1)
        std = (a * self.eigvals + (1 - a)).sqrt()  # (K, n), in the eigenbasis
        if self.full:  # per component, no (num, n, n) gather
            noise = torch.empty_like(z)
            for k in range(self.num_components):
                sel = idx == k
                noise[sel] = z[sel] @ _principal_root(self.eigvecs[k], std[k])
        else:
            noise = z * std[idx]
        out = math.sqrt(a) * mu[idx] + noise
        return out.reshape(num, *self.sample_shape).to(dtype)

    def posterior(self, A: torch.Tensor | Callable | object, y: torch.Tensor, *,
                  sigma: float | torch.Tensor | None = None,
                  noise_cov: torch.Tensor | None = None) -> GaussianMixturePosterior:
        """Exact p(x | y) for y = A x + n, n ~ N(0, diag(sigma²)) or N(0, noise_cov) (module docstring).

        A: (m, n) matrix, an operator with ``.A``, or a linear callable; y: m values (any shape).
        """
        mat = operator_matrix(A, self.sample_shape)
        m = mat.shape[0]
        if not bool(torch.isfinite(mat).all()):
            raise ValueError("A must be finite: its matrix holds NaN/Inf entries; check the operator (or matrix) given")
        if not isinstance(y, torch.Tensor) or y.numel() != m:
            raise ValueError(f"y must be a tensor with m = {m} entries (A's rows), got "
                             f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}")
        if not y.is_floating_point():
            raise TypeError(f"y must be a floating tensor, got dtype {y.dtype}; convert it with y.double() "
                            "(nothing is cast silently)")
        yv = y.detach().reshape(-1).to(torch.float64)
        if not bool(torch.isfinite(yv).all()):
            raise ValueError(f"y must be finite, got NaN/Inf entries ({yv[~torch.isfinite(yv)][:4].tolist()}); "
                             "drop or fill those measurements")
        sn = _noise_cov(m, sigma, noise_cov)
        covs = self.covs
        mus = self.means.reshape(self.num_components, -1)
        post_means, post_covs, log_ev = [], [], []
        for k in range(self.num_components):
            sa = covs[k] @ mat.T  # Σ Aᵀ (n, m)
            s = mat @ sa + sn
            try:
                chol = torch.linalg.cholesky((s + s.T) / 2)
            except RuntimeError as err:
                raise ValueError("A Σ Aᵀ + noise covariance is singular; give sigma > 0") from err
            # a pivot at rounding level is a singular S that Cholesky happened to pass: its log-det is noise
            if float(chol.diagonal().min()) ** 2 <= 10 * m * _EPS64 * float(s.diagonal().abs().max()):
                raise ValueError("A Σ Aᵀ + noise covariance is singular (A has dependent rows and the noise is 0 on "
                                 "them); give sigma > 0")
            resid = yv - mat @ mus[k]
            gain = torch.cholesky_solve(sa.T, chol).T  # Σ Aᵀ S⁻¹ (n, m)
            post_means.append(mus[k] + gain @ resid)
            keep = torch.eye(gain.shape[0], dtype=gain.dtype) - gain @ mat  # I − K A
            cov = keep @ covs[k] @ keep.T + gain @ sn @ gain.T  # Joseph form: PSD by construction (Σ − KAΣ is not)
            post_covs.append((cov + cov.T) / 2)
            white = torch.linalg.solve_triangular(chol, resid[:, None], upper=False)[:, 0]
            log_ev.append(-0.5 * (white @ white) - chol.diagonal().log().sum() - 0.5 * m * _LOG_2PI)
        logits = self.weights.log() + torch.stack(log_ev)
        weights = torch.softmax(logits, dim=0)
        means = torch.stack(post_means).reshape(self.num_components, *self.sample_shape)
        return GaussianMixturePosterior(weights, means, torch.stack(post_covs), torch.logsumexp(logits, dim=0))


class GaussianPrior(GaussianMixturePrior):
    """p(x) = N(mean, var): var a number (isotropic), a tensor of mean's shape (diagonal) or
    (n, n) (full). A one-component :class:`GaussianMixturePrior`; ``posterior`` returns a
    :class:`GaussianPosterior` (mean, cov)."""

    _vars_name = "var"

    def __init__(self, mean: torch.Tensor, var: torch.Tensor | float, *, alphas_cumprod: torch.Tensor | None = None,
                 final_alpha_cumprod: float = 1.0) -> None:
        mean = _tensor("mean", mean)
        if mean.dim() < 1:
            raise ValueError("mean must have the per-sample shape, e.g. (C, H, W)")
        v = _tensor("var", var)
        n = mean.numel()
        if v.dim() == 0:
            v = v.reshape(1)
        elif v.shape == mean.shape or v.shape == (n, n):
            v = v[None]
        else:
            raise ValueError(f"var must be a number, a tensor of mean's shape {tuple(mean.shape)} or ({n}, {n}); "
                             f"got {tuple(v.shape)}")
        super().__init__(mean[None], v, None, alphas_cumprod=alphas_cumprod,
                         final_alpha_cumprod=final_alpha_cumprod)

    @property
    def mean(self) -> torch.Tensor:
        return self.means[0]

    @property
    def cov(self) -> torch.Tensor:
        return self.covs[0]

    def posterior(self, A: torch.Tensor | Callable | object, y: torch.Tensor, *,
                  sigma: float | torch.Tensor | None = None,
                  noise_cov: torch.Tensor | None = None) -> GaussianPosterior:  # type: ignore[override]
        """Exact N(mean, cov) of p(x | y) for y = A x + n (see :meth:`GaussianMixturePrior.posterior`)."""
        post = super().posterior(A, y, sigma=sigma, noise_cov=noise_cov)
        return GaussianPosterior(post.means[0], post.covs[0], post.log_evidence)
