"""Tiny random diffusers models for the solver tests (seeded, CPU, float32; built in milliseconds)."""

from __future__ import annotations

import torch

__all__ = ["SCHEDULER", "tiny_kl", "tiny_unet", "tiny_unet_cond", "tiny_vq"]

SCHEDULER = {"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear",
             "prediction_type": "epsilon"}


def tiny_unet(channels: int = 3, seed: int = 0):
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(sample_size=8, in_channels=channels, out_channels=channels, block_out_channels=(8, 8),
                       layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4).eval()


def tiny_unet_cond(channels: int = 2, cross_dim: int = 8, seed: int = 0):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel(sample_size=4, in_channels=channels, out_channels=channels,
                                block_out_channels=(8, 8), layers_per_block=1, norm_num_groups=4,
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
                                cross_attention_dim=cross_dim, attention_head_dim=2).eval()


def tiny_kl(seed: int = 0):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 8), layers_per_block=1,
                         latent_channels=2, norm_num_groups=4, sample_size=8).eval()


def tiny_vq(seed: int = 0):
    from diffusers import VQModel

    torch.manual_seed(seed)
    return VQModel(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                   up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 8), layers_per_block=1,
                   latent_channels=2, num_vq_embeddings=16, vq_embed_dim=2, norm_num_groups=4,
                   sample_size=8).eval()
