"""diffsolve.models: denoisers (diffusers UNets, ADM checkpoints, latent-diffusion folders, exact
Gaussian/GMM priors, plain callables) and autoencoders. diffusers itself loads on first use."""

from .adm import load_adm
from .autoencoder import Autoencoder
from .denoiser import Denoiser, EpsDenoiser, as_denoiser
from .diffusers_adapter import DiffusersDenoiser
from .default import load_default
from .latent_folder import LatentDiffusion, load_latent_diffusion
from .padded import PaddedDenoiser
from .priors import GaussianMixturePosterior, GaussianMixturePrior, GaussianPosterior, GaussianPrior, operator_matrix
from .x0_clip import X0Clip

__all__ = [
    "Autoencoder",
    "Denoiser",
    "DiffusersDenoiser",
    "EpsDenoiser",
    "GaussianMixturePosterior",
    "GaussianMixturePrior",
    "GaussianPosterior",
    "GaussianPrior",
    "LatentDiffusion",
    "PaddedDenoiser",
    "X0Clip",
    "as_denoiser",
    "load_adm",
    "load_default",
    "load_latent_diffusion",
    "operator_matrix",
]
