"""ADM (guided-diffusion) checkpoints through the UNet2DModel converter, against an independent
functional forward pass written from the ADM layout, on state dicts with the real key names at a
reduced width (random weights everywhere, the zero-initialised convs included)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from diffsolve.models.adm import adm_config, load_adm

D = torch.float64


def adm_state_dict(mc=32, mult=(1, 1, 2), nrb=2, attn_levels=(1,), in_ch=3, out_ch=6, updown=True,
                   scale_shift=True, seed=0) -> dict[str, torch.Tensor]:
    """Random tensors under guided-diffusion's UNetModel key names and shapes (use_fp16 False)."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def p(name, *shape, scale=None):
        fan = math.prod(shape[1:]) if len(shape) > 1 else 1
        s = scale if scale is not None else 1 / math.sqrt(max(fan, 1))
        sd[name] = torch.randn(*shape, generator=g, dtype=D) * s

    def norm(name, ch):
        p(f"{name}.weight", ch, scale=0.2)
        sd[f"{name}.weight"] += 1
        p(f"{name}.bias", ch, scale=0.2)

    def conv(name, cin, cout, k):
        p(f"{name}.weight", cout, cin, k, k)
        p(f"{name}.bias", cout, scale=0.1)

    def res(name, cin, cout):
        emb = 4 * mc
        norm(f"{name}.in_layers.0", cin)
        conv(f"{name}.in_layers.2", cin, cout, 3)
        p(f"{name}.emb_layers.1.weight", (2 if scale_shift else 1) * cout, emb)
        p(f"{name}.emb_layers.1.bias", (2 if scale_shift else 1) * cout, scale=0.1)
        norm(f"{name}.out_layers.0", cout)
        conv(f"{name}.out_layers.3", cout, cout, 3)
        if cin != cout:
            conv(f"{name}.skip_connection", cin, cout, 1)

    def attn(name, ch):
        norm(f"{name}.norm", ch)
        p(f"{name}.qkv.weight", 3 * ch, ch, 1)
        p(f"{name}.qkv.bias", 3 * ch, scale=0.1)
        p(f"{name}.proj_out.weight", ch, ch, 1)
        p(f"{name}.proj_out.bias", ch, scale=0.1)

    p("time_embed.0.weight", 4 * mc, mc)
    p("time_embed.0.bias", 4 * mc, scale=0.1)
    p("time_embed.2.weight", 4 * mc, 4 * mc)
    p("time_embed.2.bias", 4 * mc, scale=0.1)
    conv("input_blocks.0.0", in_ch, mc, 3)
    chans, ch, k = [mc], mc, 1
    for lvl, m in enumerate(mult):
        for _ in range(nrb):
            res(f"input_blocks.{k}.0", ch, m * mc)
            ch = m * mc
            if lvl in attn_levels:
                attn(f"input_blocks.{k}.1", ch)
            chans.append(ch)
            k += 1
        if lvl != len(mult) - 1:
            if updown:
                res(f"input_blocks.{k}.0", ch, ch)
            else:
                conv(f"input_blocks.{k}.0.op", ch, ch, 3)
            chans.append(ch)
            k += 1
    res("middle_block.0", ch, ch)
    attn("middle_block.1", ch)
    res("middle_block.2", ch, ch)
    k = 0
    for lvl, m in list(enumerate(mult))[::-1]:
        for i in range(nrb + 1):
            res(f"output_blocks.{k}.0", ch + chans.pop(), m * mc)
            ch = m * mc
            j = 1
            if lvl in attn_levels:
                attn(f"output_blocks.{k}.1", ch)
                j = 2
            if lvl and i == nrb:
                if updown:
                    res(f"output_blocks.{k}.{j}", ch, ch)
                else:
                    conv(f"output_blocks.{k}.{j}.conv", ch, ch, 3)
            k += 1
    norm("out.0", ch)
    conv("out.2", mc, out_ch, 3)
    return sd


# ----------------------------------------------------------------- reference forward pass (ADM semantics)


def gn(sd, name, h):
    return F.group_norm(h, 32, sd[f"{name}.weight"], sd[f"{name}.bias"], eps=1e-5)


def ref_res(sd, name, x, emb, resample=None, scale_shift=True):
    h = F.silu(gn(sd, f"{name}.in_layers.0", x))
    if resample == "down":
        h, x = F.avg_pool2d(h, 2), F.avg_pool2d(x, 2)
    elif resample == "up":
        h, x = F.interpolate(h, scale_factor=2, mode="nearest"), F.interpolate(x, scale_factor=2, mode="nearest")
    h = F.conv2d(h, sd[f"{name}.in_layers.2.weight"], sd[f"{name}.in_layers.2.bias"], padding=1)
    e = F.linear(F.silu(emb), sd[f"{name}.emb_layers.1.weight"], sd[f"{name}.emb_layers.1.bias"])[:, :, None, None]
    if scale_shift:
        scale, shift = e.chunk(2, dim=1)
        h = gn(sd, f"{name}.out_layers.0", h) * (1 + scale) + shift
    else:
        h = gn(sd, f"{name}.out_layers.0", h + e)
    h = F.conv2d(F.silu(h), sd[f"{name}.out_layers.3.weight"], sd[f"{name}.out_layers.3.bias"], padding=1)
    if f"{name}.skip_connection.weight" in sd:
        x = F.conv2d(x, sd[f"{name}.skip_connection.weight"], sd[f"{name}.skip_connection.bias"])
    return x + h


def ref_attn(sd, name, x, head_ch):
    b, c, hh, ww = x.shape
    flat = x.reshape(b, c, -1)
    qkv = F.conv1d(gn(sd, f"{name}.norm", flat), sd[f"{name}.qkv.weight"], sd[f"{name}.qkv.bias"])
    heads = c // head_ch
    q, k, v = qkv.reshape(b * heads, 3 * head_ch, -1).split(head_ch, dim=1)  # legacy order: per head q|k|v
    w = torch.softmax(torch.einsum("bct,bcs->bts", q, k) / math.sqrt(head_ch), dim=-1)
    a = torch.einsum("bts,bcs->bct", w, v).reshape(b, c, -1)
    out = F.conv1d(a, sd[f"{name}.proj_out.weight"], sd[f"{name}.proj_out.bias"])
    return (flat + out).reshape(b, c, hh, ww)


def ref_block(sd, name, h, emb, head_ch, scale_shift, down=False):
    """One input/output block: its layers in order; ``down``: the block is a ResBlock(down=True)."""
    j = 0
    while any(key.startswith(f"{name}.{j}.") for key in sd):
        sub = f"{name}.{j}"
        if f"{sub}.qkv.weight" in sd:
            h = ref_attn(sd, sub, h, head_ch)
        elif f"{sub}.op.weight" in sd:
            h = F.conv2d(h, sd[f"{sub}.op.weight"], sd[f"{sub}.op.bias"], stride=2, padding=1)
        elif f"{sub}.conv.weight" in sd:
            h = F.conv2d(F.interpolate(h, scale_factor=2, mode="nearest"), sd[f"{sub}.conv.weight"],
                         sd[f"{sub}.conv.bias"], padding=1)
        elif f"{sub}.in_layers.0.weight" in sd:
            resample = "up" if j > 0 else ("down" if down else None)  # a later ResBlock is the upsampler
            h = ref_res(sd, sub, h, emb, resample, scale_shift)
        else:  # input_blocks.0.0
            h = F.conv2d(h, sd[f"{sub}.weight"], sd[f"{sub}.bias"], padding=1)
        j += 1
    return h


def ref_forward(sd, x, t, *, mc, mult, nrb, head_ch=16, scale_shift=True, updown=True):
    half = mc // 2
    # ADM (like diffusers) computes the sinusoidal embedding in float32, whatever the model's dtype
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1).to(D)
    emb = F.linear(F.silu(F.linear(emb, sd["time_embed.0.weight"], sd["time_embed.0.bias"])),
                   sd["time_embed.2.weight"], sd["time_embed.2.bias"])
    per = nrb + 1
    downs = {1 + lvl * per + nrb for lvl in range(len(mult) - 1)} if updown else set()
    n_in = 1 + len(mult) * per - 1
    hs, h = [], x
    for k in range(n_in):
        h = ref_block(sd, f"input_blocks.{k}", h, emb, head_ch, scale_shift, down=k in downs)
        hs.append(h)
    h = ref_res(sd, "middle_block.0", h, emb, None, scale_shift)
    h = ref_attn(sd, "middle_block.1", h, head_ch)
    h = ref_res(sd, "middle_block.2", h, emb, None, scale_shift)
    for k in range(len(mult) * per):
        h = ref_block(sd, f"output_blocks.{k}", torch.cat([h, hs.pop()], dim=1), emb, head_ch, scale_shift)
    return F.conv2d(F.silu(gn(sd, "out.0", h)), sd["out.2.weight"], sd["out.2.bias"], padding=1)


# ----------------------------------------------------------------- tests


@pytest.mark.parametrize("updown, scale_shift", [(True, True), (False, False)])
def test_converted_adm_equals_the_reference_forward(tmp_path, updown, scale_shift):
    """updown+scale_shift is the FFHQ / ImageNet 256 layout (resblock_updown, use_scale_shift_norm)."""
    mult, nrb, mc = (1, 1, 2), 2, 32
    sd = adm_state_dict(mc=mc, mult=mult, nrb=nrb, updown=updown, scale_shift=scale_shift)
    path = tmp_path / "tiny_adm.pt"
    torch.save({k: v.float() for k, v in sd.items()}, path)
    den = load_adm(path, num_head_channels=16, image_size=8, torch_dtype=D)
    cfg = den.unet.config
    assert cfg.block_out_channels == [32, 32, 64] and cfg.layers_per_block == 2 and cfg.out_channels == 6
    assert cfg.down_block_types[1].startswith("Attn") and not cfg.down_block_types[0].startswith("Attn")
    sd32 = {k: v.float().double() for k, v in sd.items()}
    x = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=D)
    t = torch.tensor([3, 870])
    ref = ref_forward(sd32, x, t, mc=mc, mult=mult, nrb=nrb, scale_shift=scale_shift, updown=updown)
    assert ref.shape == (2, 6, 8, 8)
    with torch.no_grad():
        full = den.unet(x, t).sample
        eps = den(x, t)
    torch.testing.assert_close(full, ref, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(eps, ref[:, :3], rtol=1e-9, atol=1e-9)  # learned variance: the ε half
    assert den.alphas_cumprod.shape == (1000,)
    assert den.spatial_multiple == 4


def test_adm_errors(tmp_path):
    sd = adm_state_dict(mc=32, mult=(1, 2), nrb=1, attn_levels=(1,))
    with pytest.raises(ValueError, match="num_head_channels=24"):
        adm_config(sd, num_head_channels=24)
    with pytest.raises(ValueError, match="class-conditional"):
        adm_config({**sd, "label_emb.weight": torch.zeros(10, 128)})
    bad = dict(sd)
    bad["output_blocks.0.0.extra.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match="unexpected ResBlock key"):
        torch.save(bad, tmp_path / "bad.pt")
        load_adm(tmp_path / "bad.pt", num_head_channels=16)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="cannot read ADM checkpoint"):
        load_adm(tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="not a file"):
        load_adm(tmp_path / "missing.pt")


def test_eval_runs_an_adm_checkpoint(tmp_path):
    """``diffsolve eval --model FILE.pt`` loads the checkpoint as the denoiser (RGB, sides a multiple of 4)."""
    import argparse
    import json

    import numpy as np
    from PIL import Image

    from diffsolve.cli import eval as eval_cli

    torch.save({k: v.float() for k, v in adm_state_dict(mc=32, mult=(1, 2), nrb=1, attn_levels=(1,)).items()},
               tmp_path / "tiny.pt")
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (12, 10, 3), dtype=np.uint8)).save(imgs / "a.png")
    p = argparse.ArgumentParser()
    eval_cli.add_parser(p.add_subparsers(dest="command"))
    args = p.parse_args(["eval", "--data", str(imgs), "--size", "8", "--model", str(tmp_path / "tiny.pt"),
                         "--head-channels", "16", "--tasks", "box", "--methods", "mpgd,pinv", "--steps", "2",
                         "--no-progress", "--out", str(tmp_path / "out")])
    assert eval_cli.run(args) == 0
    recs = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert [(r["image"], r["method"]) for r in recs] == [("a.png", "mpgd"), ("a.png", "pinv")]
    assert recs[0]["model"] == str(tmp_path / "tiny.pt") and "model" not in recs[1]  # pinv uses no model
    assert all(np.isfinite(r["psnr"]) for r in recs)
