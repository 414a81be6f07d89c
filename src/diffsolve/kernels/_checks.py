"""Input checks shared by the public kernel functions (messages name the argument and the fix)."""

from __future__ import annotations

import numbers

import torch

__all__ = ["SEED_LIMIT", "check_companion", "check_device", "check_image_like", "check_same", "check_seed",
           "check_tensor_ranges", "per_sample", "plain_number", "plain_numbers"]

SEED_LIMIT = 2**64
"""Seeds and noise offsets lie in [0, SEED_LIMIT) = [0, 2**64), torch's range (``Generator.manual_seed``
takes any 64-bit unsigned value). The one constant: every seed check should import it."""

_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def plain_number(value: object) -> object:
    """A NumPy integer or floating scalar (``np.int64(9)``, ``np.float32(0.05)``) as the Python int / float it
    equals (exactly); anything else unchanged, so the caller's own check then applies (NumPy's bool stays a bool,
    a tensor stays a tensor: reading one would wait on its device)."""
    if type(value).__module__ != "numpy":
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


def plain_numbers(values: object) -> object:
    """:func:`plain_number` on each entry of a tuple or list (a size, a shape); anything else unchanged."""
    if isinstance(values, (tuple, list)):
        return type(values)(plain_number(v) for v in values)
    return plain_number(values)


def check_image_like(name: str, x: object, min_dim: int = 1) -> torch.Tensor:
    """``x`` must be a floating tensor with at least ``min_dim`` dimensions."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _FLOATS:
        raise TypeError(f"{name} must be a floating tensor (float32/float64), got dtype {x.dtype}")
    if x.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dimensions, got shape {tuple(x.shape)}")
    return x


def check_companion(name: str, t: torch.Tensor, images: torch.Tensor) -> None:
    """A tensor used with the images (a kernel, a matrix) must share their dtype and device."""
    if t.dtype != images.dtype:
        raise TypeError(f"{name} must have the images' dtype {images.dtype}, got {t.dtype}")
    if t.device != images.device:
        raise ValueError(f"{name} is on {t.device} but the images are on {images.device}; move them together")


def check_same(name: str, t: torch.Tensor | None, ref: torch.Tensor, ref_name: str) -> None:
    """``t`` (if given) must match ``ref`` in shape, dtype and device."""
    if t is None:
        return
    check_image_like(name, t)
    if t.shape != ref.shape:
        raise ValueError(f"{name} must have the shape of {ref_name} {tuple(ref.shape)}, got {tuple(t.shape)}")
    if t.dtype != ref.dtype:
        raise TypeError(f"{name} must have the dtype of {ref_name} ({ref.dtype}), got {t.dtype}")
    if t.device != ref.device:
        raise ValueError(f"{name} is on {t.device} but {ref_name} is on {ref.device}; move them together")


def per_sample(name: str, value: object, ref: torch.Tensor) -> torch.Tensor:
    """A number or a tensor of shape () or (B,) as a (B,) tensor of ``ref``'s dtype and device (B = ref.shape[0]).

    The one implementation (operators/_validate.py imports it). Python numbers must be finite and
    >= 0 and are expanded; tensors must already have ``ref``'s dtype and device: nothing is cast or
    moved silently (the message names the argument and the fix). Tensor values are not inspected
    (that would sync the device): see :func:`check_tensor_ranges`.
    """
    batch = ref.shape[0]
    value = plain_number(value)
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number or a ({batch},) tensor, got a bool ({value!r})")
    if isinstance(value, (int, float)):
        if not 0 <= value < float("inf"):
            raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
        return torch.full((batch,), float(value), dtype=ref.dtype, device=ref.device)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a number or a tensor of shape ({batch},), got {type(value).__name__}")
    if value.device != ref.device:
        raise ValueError(f"{name} is on {value.device} but the images are on {ref.device}; move it there "
                         f"with {name}.to('{ref.device}')")
    if value.dtype != ref.dtype:
        raise TypeError(f"{name} must have the images' dtype {ref.dtype}, got {value.dtype}; convert it with "
                        f"{name}.to({ref.dtype}) (nothing is cast silently)")
    if value.dim() == 0:
        return value.expand(batch)
    if value.shape != (batch,):
        raise ValueError(f"{name} must be a number or have shape ({batch},), got shape {tuple(value.shape)}")
    return value


def check_tensor_ranges(checks: list[tuple[str, torch.Tensor, torch.Tensor, str, str]]) -> None:
    """Raise a ValueError for the first ``(name, value, bad, rule, fix)`` whose boolean mask ``bad`` has a
    True: "<name> <rule>, got <values>; <fix>".

    All masks are reduced on the device and read back with ONE host sync (none at all when
    ``checks`` is empty); a second read happens only on the error path, to quote the value. The
    public kernels call this for tensor-valued arguments when ``check=True`` (their default);
    solvers that pass values they built call the kernels with ``check=False`` instead.
    """
    if not checks:
        return
    flags = torch.stack([bad.reshape(-1).any().to(device=checks[0][2].device) for _, _, bad, _, _ in checks]).tolist()
    for (name, value, bad, rule, fix), flag in zip(checks, flags):
        if flag:
            shown = value.detach().reshape(-1)[:8].tolist() if value.dim() <= 1 else \
                value.detach()[bad].reshape(-1)[:8].tolist()
            more = " ..." if value.numel() > 8 else ""
            raise ValueError(f"{name} {rule}, got {shown}{more}; {fix}")


def check_seed(name: str, seed: object) -> int:
    """An int in [0, SEED_LIMIT); nothing wraps around or is reinterpreted silently."""
    seed = plain_number(seed)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"{name} must be an int in [0, 2**64), got {type(seed).__name__} {seed!r}")
    if not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"{name} must lie in [0, 2**64) (nothing wraps around), got {seed}; reduce it, "
                         f"e.g. {name} % 2**64")
    return seed


def check_device(device: object) -> torch.device | None:
    """``device`` as a torch.device that this torch build can use (a clear error, not an AssertionError)."""
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as err:
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda:0', got {device!r}") from err
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device={str(device)!r}: diffsolve runs on 'cpu' and 'cuda' devices, not {dev.type!r}; use "
                         "device='cpu' (or a CUDA device)")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={str(device)!r} but this torch build has no usable CUDA device "
                         f"(torch {torch.__version__}, CUDA {torch.version.cuda}); use device='cpu' or install a CUDA "
                         "build of torch")
    return dev
