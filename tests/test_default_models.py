"""The shipped models load offline and sample; the bundled data and the training script are consistent."""

import json
from pathlib import Path
import struct

import pytest
import torch

import diffsolve
import diffsolve.data
from diffsolve.data import HELDOUT, PHOTOS, heldout_digits, photo
from diffsolve.models import DiffusersDenoiser, load_default
from diffsolve.models.default import DEFAULT_MODELS, default_model_info, default_model_path


def _safetensors_dtypes(path) -> set[str]:
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    return {v["dtype"] for k, v in header.items() if k != "__metadata__"}


@pytest.mark.parametrize("name", DEFAULT_MODELS)
def test_weights_fp16_with_configs_and_note(name):
    path = default_model_path(name)
    assert _safetensors_dtypes(path / "unet" / "diffusion_pytorch_model.safetensors") == {"F16"}
    sched = json.loads((path / "scheduler" / "scheduler_config.json").read_text())
    assert (sched["num_train_timesteps"], sched["beta_schedule"], sched["prediction_type"]) == (1000, "linear", "epsilon")
    assert "how it was trained" in (path / "TRAINING.md").read_text()
    assert json.loads((path / "training.json").read_text())["steps_done"] > 1000


def test_total_size_within_budget():
    total = sum(default_model_info(n)["bytes"] for n in DEFAULT_MODELS)
    assert total <= 20 * 1024**2, total


def test_digits16_samples_finite_and_in_range():
    model = load_default("digits16")
    assert isinstance(model, DiffusersDenoiser)
    assert next(model.unet.parameters()).dtype == torch.float32
    x = diffsolve.solve("ddim", model, None, None, steps=4, shape=(2, 1, 16, 16),
                        generator=torch.Generator().manual_seed(0))
    assert x.shape == (2, 1, 16, 16) and torch.isfinite(x).all()
    assert x.abs().max() < 3  # a trained model stays near the data range [-1, 1] even at 4 steps


def test_patches_runs_at_another_resolution():
    model = load_default("patches")
    x = diffsolve.solve("ddim", model, None, None, steps=3, shape=(1, 3, 24, 40),
                        generator=torch.Generator().manual_seed(0))
    assert x.shape == (1, 3, 24, 40) and torch.isfinite(x).all()


def test_digits16_denoises_heldout_better_than_identity():
    """At t = 300 the model's x̂0 is closer to the clean held-out digits than x_t's rescaling."""
    model = load_default("digits16")
    x0 = heldout_digits()[:32]
    a = model.alphas_cumprod[300].float()
    gen = torch.Generator().manual_seed(1)
    xt = a.sqrt() * x0 + (1 - a).sqrt() * torch.randn(x0.shape, generator=gen)
    with torch.no_grad():
        eps = model(xt, torch.full((32,), 300))
    x0_hat = (xt - (1 - a).sqrt() * eps) / a.sqrt()
    assert (x0_hat - x0).pow(2).mean() < 0.25 * (xt / a.sqrt() - x0).pow(2).mean()


def test_load_default_rejects_unknown_name():
    with pytest.raises(ValueError, match="digits16"):
        load_default("mnist")
    with pytest.raises(TypeError, match="torch_dtype"):
        load_default("digits16", torch_dtype="float32")


def test_bundled_data_shapes_and_split():
    digits = heldout_digits()
    assert digits.shape == (360, 1, 16, 16) and digits.min() >= -1 and digits.max() <= 1
    split = json.loads((default_model_path("digits16") / "split.json").read_text())
    assert len(split["heldout_idx"]) == 360 == len(set(split["heldout_idx"]))
    sources = (Path(diffsolve.data.__file__).parent / "SOURCES.md").read_text()
    for name in PHOTOS + HELDOUT:
        assert photo(name).shape == (3, 256, 256)
        assert photo(name, 64).shape == (3, 64, 64)
        assert f"`{name}.png`" in sources  # every bundled photo says where it came from
    assert not set(PHOTOS) & set(HELDOUT)
    with pytest.raises(ValueError, match="photo name"):
        photo("astronaut")


def test_bundled_digits_are_the_heldout_split():
    pytest.importorskip("sklearn")
    from diffsolve.models.train import digits16_data

    data = digits16_data(0)
    split = json.loads((default_model_path("digits16") / "split.json").read_text())
    assert data["heldout_idx"] == split["heldout_idx"]
    assert not set(data["heldout_idx"]) & set(data["train_idx"])
    assert (data["heldout"] - heldout_digits()).abs().max() <= 0.5 / 127.5 + 1e-6


def test_training_is_deterministic_and_saves_a_loadable_folder(tmp_path):
    pytest.importorskip("sklearn")
    from diffsolve.models.train import train

    kw = dict(steps=2, batch_size=4, warmup=1, n_eval=4, log_every=1)
    s1 = train("digits16", tmp_path / "a", **kw)
    s2 = train("digits16", tmp_path / "b", **kw)
    assert [e["loss"] for e in s1["log"]] == [e["loss"] for e in s2["log"]]
    wa = DiffusersDenoiser.from_pretrained(tmp_path / "a").unet.state_dict()
    wb = DiffusersDenoiser.from_pretrained(tmp_path / "b").unet.state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert json.loads((tmp_path / "a" / "split.json").read_text())["split_seed"] == 0
    with pytest.raises(ValueError, match="name must be one of"):
        train("cifar", tmp_path / "c")
