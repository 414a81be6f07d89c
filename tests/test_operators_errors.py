"""Bad input raises ValueError/TypeError naming the argument and what is expected."""

from __future__ import annotations

import pytest
import torch

from diffsolve.operators import (
    Blur, CallableOperator, GaussianBlur, GaussianNoise, Identity, Inpainting, MotionBlur, SuperResolution,
)

F64 = torch.float64
X = torch.randn(2, 3, 16, 16, dtype=F64)


@pytest.mark.parametrize("op", [Identity(), GaussianBlur(), SuperResolution(4), Inpainting.box(16, 4, 2)],
                         ids=lambda o: type(o).__name__)
def test_wrong_rank_and_dtype(op):
    with pytest.raises(ValueError, match=r"x must have shape \(B, C, H, W\) \(rank 4\), got rank 3"):
        op.A(X[0])
    with pytest.raises(ValueError, match=r"rhs must have shape \(B, C, H, W\)"):
        op.solve(X[0], 1.0, 1.0)
    with pytest.raises(TypeError, match="x must be float32 or float64, got dtype torch.int64"):
        op.A(X.to(torch.int64))
    with pytest.raises(TypeError, match="y must be float32 or float64, got dtype torch.float16"):
        op.A_adjoint(op.A(X).half())
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        op.A(X.numpy())


def test_mask_channel_batch_and_size_mismatch():
    op = Inpainting(torch.ones(2, 16, 16))
    with pytest.raises(ValueError, match="the mask has 2 channels but the images have 3: give images with 2 channels"):
        op.A(X)
    with pytest.raises(ValueError, match="does not match the mask size"):
        Inpainting(torch.ones(16, 15)).A(X)
    with pytest.raises(ValueError, match="the mask has batch 4"):
        Inpainting(torch.ones(4, 1, 16, 16)).A(X)
    with pytest.raises(TypeError, match="mask must be bool or floating"):
        Inpainting(torch.ones(16, 16, dtype=torch.int32))
    with pytest.raises(ValueError, match="mask contains NaN"):
        Inpainting(torch.full((16, 16), float("nan")))
    with pytest.raises(ValueError, match="does not fit an image"):
        Inpainting.box(16, box=12, margin=4)


def test_image_smaller_than_kernel():
    with pytest.raises(ValueError, match="image height 16 is too small .*half-width 30.*boundary='reflect': need height >= 31"):
        Blur(torch.ones(61, 61, dtype=F64)).A(X)
    with pytest.raises(ValueError, match="image width 10 is too small .*half-width 12"):
        GaussianBlur().A(torch.zeros(1, 1, 30, 10, dtype=F64))  # the 25-tap support needs 13 px
    with pytest.raises(ValueError, match="boundary='circular'"):
        MotionBlur(61, 1.0, boundary="circular").A(torch.zeros(1, 1, 20, 20, dtype=F64))
    GaussianBlur(boundary="zero").A(torch.zeros(1, 1, 5, 5, dtype=F64))  # zero padding fits any size
    with pytest.raises(ValueError, match="boundary must be one of"):
        GaussianBlur(boundary="mirror")
    with pytest.raises(ValueError, match="kernel must be 2-D with odd sizes"):
        Blur(torch.ones(4, 3))
    with pytest.raises(ValueError, match="kernel_size must be a positive odd int"):
        GaussianBlur(kernel_size=60)
    with pytest.raises(ValueError, match="intensity must be in"):
        MotionBlur(intensity=1.5)


def test_super_resolution_size_checks():
    with pytest.raises(ValueError, match=r"image size \(15, 16\) must be divisible by factor 4"):
        SuperResolution(4, "average").A(torch.zeros(1, 1, 15, 16, dtype=F64))
    op = SuperResolution(4, input_size=(13, 10))
    with pytest.raises(ValueError, match="does not match input_size"):
        op.A(X)
    with pytest.raises(ValueError, match=r"y has size \(4, 4\) but input_size \(13, 10\)"):
        op.A_adjoint(torch.zeros(1, 1, 4, 4, dtype=F64))
    with pytest.raises(ValueError, match="kernel must be one of"):
        SuperResolution(4, "nearest")


def test_device_and_dtype_mix():
    op = GaussianBlur(9, 1.2)
    meta = torch.device("meta")  # stands in for a second device: never moved silently
    with pytest.raises(ValueError, match="shift is on meta but the images are on cpu"):
        op.solve(X, torch.ones(2, device=meta), 1.0)
    with pytest.raises(TypeError, match="scale must have the images' dtype torch.float64, got torch.float32"):
        op.solve(X, 1.0, torch.ones(2))
    with pytest.raises(ValueError, match=r"shift must be a number or have shape \(2,\), got shape \(3,\)"):
        op.solve(X, torch.ones(3, dtype=F64), 1.0)
    with pytest.raises(ValueError, match="x0 must match rhs"):
        MotionBlur(7, 0.5).solve(X, 1.0, 1.0, x0=X.to(meta))
    with pytest.raises(ValueError, match="lam is on meta"):
        op.tikhonov(X, torch.ones(2, dtype=F64, device=meta))
    with pytest.raises(ValueError, match="shift must be finite and >= 0, got -1"):
        op.solve(X, -1, 1.0)


def test_nan_in_measurement():
    y = GaussianBlur(9, 1.2).A(X)
    y[1, 0, 3, 3] = float("nan")
    for op in (GaussianBlur(9, 1.2), MotionBlur(7, 0.5)):
        with pytest.raises(ValueError, match="y contains NaN or Inf"):
            op.pseudo_inverse(y)
        with pytest.raises(ValueError, match="y contains NaN or Inf"):
            op.tikhonov(y, 0.1)


def test_callable_operator_checks():
    with pytest.raises(TypeError, match="fn must be callable"):
        CallableOperator(3)
    op = CallableOperator(lambda x: x[..., ::2, ::2])
    with pytest.raises(ValueError, match="pass input_shape"):
        op.A_adjoint(torch.zeros(1, 3, 8, 8, dtype=F64))
    bad = CallableOperator(lambda x: x.float())
    with pytest.raises(TypeError, match="fn must return a tensor of dtype torch.float64"):
        bad.A(X)


def test_noise_checks():
    with pytest.raises(ValueError, match="pass generator=torch.Generator"):
        GaussianNoise(0.05)(X)
    with pytest.raises(ValueError, match="sigma must be a finite number >= 0"):
        GaussianNoise(-0.1)
    with pytest.raises(ValueError, match=r"^unit must be one of"):  # the argument the user passed, not from_unit
        GaussianNoise(0.1, unit="0-255")
    from diffsolve.operators import convert_sigma

    with pytest.raises(ValueError, match="from_unit must be one of"):
        convert_sigma(0.1, "0-255", "[0,1]")


def test_a_blur_singular_at_this_size_refuses_shift_zero_instead_of_dividing_by_zero():
    """A 3×3 box kernel has DFT zeros on a 6×6 image (AᵀA of rank 16 of 36): an exact solve at shift = 0 divided by
    0 (NaN) with a warning blaming rounding. Now it is refused by name, as for the other singular operators; a size
    where the same kernel's spectrum has no zero still solves at shift = 0."""
    from diffsolve.operators import MatrixOperator

    box = torch.ones(3, 3, dtype=F64) / 9
    rhs = torch.randn(1, 1, 6, 6, generator=torch.Generator().manual_seed(0), dtype=F64)
    for op in (Blur(box, boundary="circular"), Blur.separable(box[0] * 3, box[0] * 3, boundary="circular")):
        assert op.singular_gram((6, 6))
        with pytest.raises(ValueError, match="shift must be > 0 for Blur: AᵀA is singular"):
            op.solve(rhs, 0.0, 1.0)
        with pytest.raises(ValueError, match="shift must be > 0 for Blur: AᵀA is singular"):
            op.solve(rhs, torch.zeros(1, dtype=F64), 1.0)
    assert not GaussianBlur(5, 1.0).singular_gram((6, 6))
    assert bool(torch.isfinite(Blur(box, boundary="circular").solve(rhs[..., :5, :5], 0.0, 1.0)).all())  # no zero
    with pytest.raises(ValueError, match="matrix is all zeros"):
        MatrixOperator(torch.zeros(5, 12, dtype=F64), (3, 2, 2))
    with pytest.raises(ValueError, match="mask is all zeros: it observes no pixel"):
        Inpainting(torch.zeros(4, 4))


def test_messages_name_a_fix_that_exists():
    """Per-sample mask mismatches name the two fixes (no 'expected 1 or 1'); tol is checked on the exact path too;
    an average-pooling SR refuses an input_size its factor does not divide when it is built, not at first use."""
    mask = torch.ones(2, 3, 8, 8)
    with pytest.raises(ValueError, match="give images with 3 channels, or a mask with 1 channel"):
        Inpainting(mask).A(torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="give 2 images, or a mask of batch 1"):
        Inpainting(mask).A(torch.zeros(1, 3, 8, 8))
    for tol in (-1.0, float("nan"), 0.0):
        with pytest.raises(ValueError, match="tol must be a positive finite number"):
            Identity().solve(torch.zeros(1, 1, 4, 4), 1.0, 1.0, tol=tol)
    with pytest.raises(ValueError, match=r"input_size \(8, 8\) is not divisible by factor 3"):
        SuperResolution(3, "average", input_size=(8, 8))
