"""The blur and down-sampling kernels: the DPS Gaussian equals reflect-pad + 61×61 conv2d with
scipy's kernel and is exactly separable with 25×25 support; our motion kernels; MATLAB bicubic."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch
import torch.nn.functional as F
from PIL import Image

from diffsolve.operators import Blur, GaussianBlur, MotionBlur, SuperResolution, gaussian_taps, motion_kernel
from diffsolve.operators.bicubic import bicubic_matrix

F64 = torch.float64


def scipy_gaussian_kernel(size: int = 61, sigma: float = 3.0) -> torch.Tensor:
    delta = np.zeros((size, size))
    delta[size // 2, size // 2] = 1.0
    return torch.from_numpy(scipy.ndimage.gaussian_filter(delta, sigma=sigma))


def conv2d_reference(x: torch.Tensor, kernel: torch.Tensor, boundary: str) -> torch.Tensor:
    """Pad by kernel//2 (ReflectionPad2d / circular / zeros), then depthwise conv2d (correlation)."""
    p = kernel.shape[0] // 2
    if boundary == "reflect":
        xp = torch.nn.ReflectionPad2d(p)(x)
    else:
        xp = F.pad(x, (p, p, p, p), mode="circular" if boundary == "circular" else "constant")
    c = x.shape[1]
    return F.conv2d(xp, kernel.expand(c, 1, *kernel.shape).to(x.dtype), groups=c)


def test_scipy_gaussian_kernel_is_separable_with_25x25_support():
    k = scipy_gaussian_kernel()
    nz = k.ne(0).nonzero()
    assert nz.min(0).values.tolist() == [18, 18] and nz.max(0).values.tolist() == [42, 42]  # 25×25
    taps = gaussian_taps(61, 3.0)
    assert taps.ne(0).sum() == 25
    torch.testing.assert_close(torch.outer(taps, taps), k, rtol=0, atol=1e-17)  # rank one, exactly
    s = torch.linalg.svdvals(k)
    assert s[1] <= 1e-15 * s[0]


@pytest.mark.parametrize("boundary", ["reflect", "circular", "zero"])
def test_gaussian_blur_equals_61x61_conv2d_reference(boundary):
    op = GaussianBlur(61, 3.0, boundary=boundary)
    assert op.support == (25, 25) and op.kernel_size == (61, 61)
    x = torch.rand(2, 3, 37, 32, generator=torch.Generator().manual_seed(0), dtype=F64) * 2 - 1
    ref = conv2d_reference(x, scipy_gaussian_kernel(), boundary)
    out = op.A(x)
    assert float((out - ref).abs().max()) <= 1e-12
    out32 = op.A(x.float())
    torch.testing.assert_close(out32, ref.float(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size,sigma", [(7, 2.0), (9, 1.3), (5, 3.0)])
def test_gaussian_taps_fold_like_scipy_for_small_kernels(size, sigma):
    taps = gaussian_taps(size, sigma)
    torch.testing.assert_close(torch.outer(taps, taps), scipy_gaussian_kernel(size, sigma), rtol=0, atol=1e-15)


def test_blur_trims_zero_border_without_changing_the_result():
    k = torch.zeros(9, 7, dtype=F64)
    k[3:6, 2:5] = torch.arange(9, dtype=F64).reshape(3, 3)
    op = Blur(k, boundary="zero")
    assert op.support == (3, 3)
    x = torch.randn(1, 2, 8, 8, generator=torch.Generator().manual_seed(1), dtype=F64)
    pad = F.pad(x, (3, 3, 4, 4))
    ref = F.conv2d(pad, k.expand(2, 1, 9, 7), groups=2)
    torch.testing.assert_close(op.A(x), ref, rtol=1e-13, atol=1e-13)


def test_motion_kernel_is_seeded_normalized_and_asymmetric():
    k = motion_kernel(61, 0.5, seed=7)
    assert k.shape == (61, 61) and (k >= 0).all()
    assert abs(float(k.sum()) - 1) <= 1e-12
    torch.testing.assert_close(motion_kernel(61, 0.5, seed=7), k, rtol=0, atol=0)
    assert not torch.equal(motion_kernel(61, 0.5, seed=8), k)
    assert not torch.allclose(k, k.flip(0, 1))  # correlation != convolution for it
    nz = k.ne(0).nonzero()
    assert int((nz.max(0).values - nz.min(0).values).max()) in range(29, 33)  # spans intensity·60 px
    delta = motion_kernel(61, 0.0, seed=1)
    assert delta[30, 30] == 1 and delta.sum() == 1
    op = MotionBlur(61, 0.5, seed=7)
    torch.testing.assert_close(op.kernel, MotionBlur(61, 0.5, seed=7).kernel, rtol=0, atol=0)
    x = torch.randn(1, 1, 40, 40, generator=torch.Generator().manual_seed(2), dtype=F64)
    torch.testing.assert_close(op.A(x), conv2d_reference(x, k, "reflect"), rtol=1e-12, atol=1e-12)


def test_bicubic_matrix_has_matlab_taps_and_matches_pillow_inside():
    m = bicubic_matrix(16, 2)
    # imresize(., 0.5) interior weights: cubic(±0.25, ±0.75, ±1.25, ±1.75)/2 with a = −0.5
    expected = torch.tensor([-0.0234375, -0.0703125, 0.2265625, 0.8671875], dtype=F64) / 2
    torch.testing.assert_close(m[3, 3:11], torch.cat((expected, expected.flip(0))), rtol=0, atol=1e-16)
    torch.testing.assert_close(m.sum(1), torch.ones(8, dtype=F64))
    # mirrored edge: out 0 sits at input 0.5, taps at −3..4; −1, −2, −3 reflect onto 0, 1, 2
    w = dict(zip(range(-3, 5), torch.cat((expected, expected.flip(0))).tolist()))
    edge = [w[0] + w[-1], w[1] + w[-2], w[2] + w[-3], w[3], w[4], 0.0]
    assert m[0, :6].tolist() == pytest.approx(edge, abs=1e-16)
    # Pillow's BICUBIC is the same anti-aliased a = −0.5 filter but clips at the border
    rng = np.random.default_rng(0)
    img = rng.standard_normal((40, 36)).astype(np.float32)
    pil = np.asarray(Image.fromarray(img, mode="F").resize((9, 10), Image.BICUBIC))
    ours = (bicubic_matrix(40, 4) @ torch.from_numpy(img).double() @ bicubic_matrix(36, 4).T).numpy()
    np.testing.assert_allclose(ours[2:-2, 2:-2], pil[2:-2, 2:-2], atol=1e-5)


def test_super_resolution_shapes_for_odd_sizes():
    op = SuperResolution(4, "bicubic", input_size=(13, 10))
    x = torch.randn(2, 3, 13, 10, dtype=F64)
    y = op.A(x)
    assert y.shape == (2, 3, 4, 3) and op.A_adjoint(y).shape == x.shape
    assert SuperResolution(4, "bicubic").A_adjoint(torch.zeros(1, 1, 4, 3, dtype=F64)).shape == (1, 1, 16, 12)
