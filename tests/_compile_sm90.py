"""Compile every Triton kernel ahead of time for an H100 (sm_90) without a GPU: Triton's frontend,
its MLIR passes, LLVM and the ptxas bundled with the triton wheel. The interpreter checks what the
kernels compute; this checks that they compile. Run with TRITON_INTERPRET unset (tests do so in a
subprocess); prints one line per kernel variant and exits 1 if any failed.
``python tests/_compile_sm90.py [--all]`` (with TRITON_INTERPRET unset)."""

from __future__ import annotations

import os
import sys

if os.environ.get("TRITON_INTERPRET", "0") == "1":
    sys.exit("run without TRITON_INTERPRET=1: the interpreter replaces the kernels")

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from diffsolve.kernels import (_triton_cg, _triton_correlate, _triton_posterior, _triton_resample,
                               _triton_step)

TARGET = GPUTarget("cuda", 90, 32)
INT_POINTERS = {"order_ptr", "count_ptr"}
WIDE = {"seed", "offset_lo", "off1_lo", "off2_lo"}  # may exceed int32
FLOATS = {"tol2_hi", "tol2_lo"}


def signature(fn, dtype: str) -> dict[str, str]:
    """Argument types of a launch: pointers to ``dtype`` (int32 for counters), int32 scalars."""
    sig = {}
    for p in fn.params:
        if p.is_constexpr:
            sig[p.name] = "constexpr"
        elif p.name.endswith("_ptr"):
            sig[p.name] = "*i32" if p.name in INT_POINTERS else f"*{dtype}"
        else:
            sig[p.name] = "i64" if p.name in WIDE else ("fp32" if p.name in FLOATS else "i32")
    return sig


def all_variants():
    """(name, kernel, dtype, constexprs): the configurations the launchers use, float32 and float64."""
    for dt in ("fp32", "fp64"):
        for noise in (0, 1, 2):
            yield (f"step noise={noise}", _triton_step._fused_step_kernel, dt,
                   dict(HAS_PREV=True, HAS_G=True, NOISE=noise, WANT_X0=True, BLOCK=2048, PER_SM=8))
        yield "posterior seeded", _triton_posterior._posterior_kernel, dt, dict(NOISE=2, BLOCK=2048)
        for mode in (0, 1, 2):
            for adj in (False, True):
                tag = f"mode={mode} adjoint={adj}"
                yield (f"correlate2d {tag}", _triton_correlate._correlate_kernel, dt,
                       dict(MODE=mode, ADJOINT=adj, UNROLL=4, BH=16, BW=64))
                for axis in (0, 1):
                    yield (f"pass1d axis={axis} {tag}", _triton_correlate._pass1d_kernel, dt,
                           dict(K=25, AXIS=axis, MODE=mode, ADJOINT=adj, BH=16, BW=64,
                                TAPS=32 if axis == 0 else 1))
                yield (f"tile {tag}", _triton_correlate._separable_tile_kernel, dt,
                       dict(KH=25, KW=25, MODE=mode, ADJOINT=adj, PRECISION="tf32x3" if dt == "fp32" else "ieee",
                            BH=32, BW=64, BK=64))
        yield "cg_dots", _triton_cg._dots_kernel, dt, dict(BLOCK=2048, PMAX=64)
        yield "cg_update", _triton_cg._update_kernel, dt, dict(BLOCK=2048)
        for adj in (False, True):
            yield (f"resample adjoint={adj}", _triton_resample._resample_kernel, dt,
                   dict(ADJOINT=adj, BO=32, BK=64, IEEE=dt == "fp32"))
            yield f"avg_pool adjoint={adj}", _triton_resample._pool_kernel, dt, dict(ADJOINT=adj, BH=16, BW=64, FP=4)


#: the default set (about a minute on one core): every kernel, every branch kind (forward index
#: map, adjoint preimages of reflect and circular, interior tiles, in-kernel noise, both dot
#: precisions) at least once; ``--all`` compiles every combination (3–4 minutes)
QUICK = {("fp32", "step noise=2"), ("fp64", "step noise=1"), ("fp32", "posterior seeded"),
         ("fp32", "correlate2d mode=1 adjoint=True"), ("fp64", "correlate2d mode=2 adjoint=False"),
         ("fp32", "pass1d axis=0 mode=1 adjoint=True"), ("fp64", "pass1d axis=1 mode=2 adjoint=False"),
         ("fp32", "tile mode=2 adjoint=True"), ("fp64", "tile mode=1 adjoint=False"),
         ("fp32", "cg_dots"), ("fp64", "cg_update"), ("fp32", "resample adjoint=True"),
         ("fp64", "resample adjoint=False"), ("fp32", "avg_pool adjoint=True"), ("fp64", "avg_pool adjoint=False")}


def main() -> int:
    failed = 0
    everything = "--all" in sys.argv[1:]
    for name, fn, dt, constexprs in all_variants():
        if not everything and (dt, name) not in QUICK:
            continue
        try:
            defaults = {q.name: q.default for q in fn.params if q.is_constexpr and q.has_default}
            compiled = triton.compile(ASTSource(fn=fn, signature=signature(fn, dt),
                                                constexprs={**defaults, **constexprs}), target=TARGET)
            print(f"ok    {dt} {name}: {len(compiled.asm['cubin'])} bytes of sm_90 cubin", flush=True)
        except Exception as err:  # noqa: BLE001 - report every failure, then fail once
            failed += 1
            print(f"FAIL  {dt} {name}: {type(err).__name__}: {str(err)[:1500]}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
