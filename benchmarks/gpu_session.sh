#!/usr/bin/env bash
# What a development session with a lent GPU runs there (issue 5): the CUDA test suite and the
# kernel benchmark, each part well inside a 10-minute command limit. From the repository root of
# the GPU machine, with the diffusers wheels carried in .whl/ (it has torch and triton, no diffusers):
#
#   bash benchmarks/gpu_session.sh tests         # whole test suite on CUDA   -> $OUT/cuda-tests.txt
#   bash benchmarks/gpu_session.sh solvers       # every method x task end to end, Triton and torch
#                                                #   backends, 128², 20 steps -> $OUT/gpu-solvers.{md,json}
#   bash benchmarks/gpu_session.sh bench steps   # step, posterior, CG cases  -> $OUT/gpu-kernels-steps.*
#   bash benchmarks/gpu_session.sh bench blur    # blur cases (incl. triton_tile) -> $OUT/gpu-kernels-blur.*
#   bash benchmarks/gpu_session.sh bench resample
#
# Then copy the results into benchmarks/results/ and run `python benchmarks/report.py`.
set -euo pipefail
OUT=${OUT:-/tmp/diffsolve-gpu}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD/src
else
    export PYTHONPATH=$PWD/src
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >"$OUT/device.txt" || true

case "${1:-}" in
tests)
    python3 -m pytest -q -x --durations=15 tests 2>&1 | tee "$OUT/cuda-tests.txt"
    ;;
solvers)
    python3 benchmarks/gpu_solvers.py --device cuda --size 128 --steps 20 --out "$OUT/gpu-solvers"
    ;;
bench)
    case "${2:-}" in
    steps) cases=ddim_eta0,ddim_eta1,ge_step,posterior,cg_iter ;;
    blur) cases=gauss_blur,gauss_blur_T,motion_blur,motion_blur_T ;;
    resample) cases=sr4_bicubic,sr4_bicubic_T,avgpool4,avgpool4_T ;;
    *) echo "bench needs one of: steps, blur, resample" >&2; exit 2 ;;
    esac
    python3 benchmarks/bench_kernels.py --batches 1,16,64 --cases "$cases" --out "$OUT/gpu-kernels-$2"
    ;;
*)
    echo "usage: bash benchmarks/gpu_session.sh tests | solvers | bench {steps,blur,resample}" >&2
    exit 2
    ;;
esac
