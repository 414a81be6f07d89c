"""diffsolve.models: denoisers (diffusers UNets, exact Gaussian/GMM priors, plain callables) and autoencoders."""

from .autoencoder import Autoencoder
from .denoiser import Denoiser, EpsDenoiser, as_denoiser
from .diffusers_adapter import DiffusersDenoiser
from .default import load_default
from .priors import GaussianMixturePosterior, GaussianMixturePrior, GaussianPosterior, GaussianPrior, operator_matrix

__all__ = [
    "Autoencoder",
    "Denoiser",
    "DiffusersDenoiser",
    "EpsDenoiser",
    "GaussianMixturePosterior",
    "GaussianMixturePrior",
    "GaussianPosterior",
    "GaussianPrior",
    "as_denoiser",
    "load_default",
    "operator_matrix",
]
