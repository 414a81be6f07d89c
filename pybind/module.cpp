// pybind11 bindings of diffsolve._C. Tensors arrive as raw addresses (uintptr, 0 = absent) of
// contiguous CPU buffers with their sizes; src/diffsolve/kernels/_cpp_ops.py checks dtype, shape and
// contiguity before calling, so nothing here touches torch. `dbl` selects float64 (else float32).
// Every entry point releases the GIL while it runs.
#include <pybind11/pybind11.h>

#include <string>

#include "kernels.hpp"

namespace py = pybind11;
using ds::i64;
using ds::u64;
using Ptr = std::uintptr_t;

namespace {

constexpr int kAbiVersion = 2;  // bump when a signature below changes; _cpp.py checks it

template <class T>
T* as(Ptr p) {
  return reinterpret_cast<T*>(p);
}

#define DS_DISPATCH(dbl, CALL) \
  do {                         \
    if (dbl) {                 \
      using T = double;        \
      CALL;                    \
    } else {                   \
      using T = float;         \
      CALL;                    \
    }                          \
  } while (0)

std::string build_info() {
  std::string s = "C++" + std::to_string(__cplusplus / 100 % 100);
#ifdef _OPENMP
  s += ", OpenMP " + std::to_string(_OPENMP) + " (" + std::to_string(omp_get_num_procs()) + " processors)";
#else
  s += ", no OpenMP (single thread)";
#endif
#if defined(__VERSION__)
  s += ", compiler " + std::string(__VERSION__);
#endif
  static const char* names[] = {"baseline", "AVX2", "AVX-512"};
  s += ", kernels for ";
  s += names[ds::detected_isa()];
  return s;
}

bool has_openmp() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "diffsolve CPU kernels (C++17, OpenMP); see src/diffsolve/kernels/_cpp_ops.py";
  m.attr("ABI_VERSION") = kAbiVersion;
  m.def("build_info", &build_info, "compiler / OpenMP summary");
  m.def("has_openmp", &has_openmp);
  m.def("isa", [] { return ds::isa_level(); }, "vector ISA in use: 2 AVX-512, 1 AVX2+FMA, 0 baseline");
  m.def("detected_isa", &ds::detected_isa, "best vector ISA this CPU supports (same coding)");
  m.def(
      "set_isa_limit", [](int level) { ds::isa_limit() = std::max(0, std::min(2, level)); },
      "use at most this ISA level (tests compare the versions; results are bit-identical)");
  m.def(
      "set_parallel_grain", [](i64 work) { ds::work_per_thread() = std::max<i64>(1, work); },
      "element operations per extra thread before a call goes parallel (default 65536; tests use 1)");
  m.def("parallel_grain", [] { return ds::work_per_thread(); });
  auto release = py::call_guard<py::gil_scoped_release>();

  m.def(
      "fused_step",
      [](bool dbl, Ptr x, Ptr eps, Ptr coefs, Ptr prev, Ptr g, Ptr noise, bool has_seed, u64 seed, u64 offset, Ptr xs,
         Ptr x0, i64 batch, i64 n, int threads) {
        DS_DISPATCH(dbl, ds::fused_step<T>(as<T>(x), as<T>(eps), as<T>(coefs), as<T>(prev), as<T>(g), as<T>(noise),
                                           has_seed, seed, offset, as<T>(xs), as<T>(x0), batch, n, threads));
      },
      release);
  m.def(
      "diagonal_posterior_step",
      [](bool dbl, Ptr mean, Ptr prec, Ptr diag, i64 sb, i64 sc, Ptr target, Ptr nprec, Ptr n1, Ptr n2, bool has_seed,
         u64 seed, u64 offset, Ptr out, i64 batch, i64 channels, i64 hw, int threads) {
        DS_DISPATCH(dbl, ds::diagonal_posterior_step<T>(as<T>(mean), as<T>(prec), as<T>(diag), sb, sc, as<T>(target),
                                                        as<T>(nprec), as<T>(n1), as<T>(n2), has_seed, seed, offset,
                                                        as<T>(out), batch, channels, hw, threads));
      },
      release);
  m.def(
      "correlate2d",
      [](bool dbl, Ptr x, Ptr k, i64 kh, i64 kw, int boundary, bool adjoint, Ptr out, i64 planes, i64 h, i64 w,
         int threads) {
        DS_DISPATCH(dbl, ds::correlate2d<T>(as<T>(x), as<T>(k), kh, kw, boundary, adjoint, as<T>(out), planes, h, w,
                                            threads));
      },
      release);
  m.def(
      "separable_correlate2d",
      [](bool dbl, Ptr x, Ptr kh, i64 lh, Ptr kw, i64 lw, int boundary, bool adjoint, Ptr out, i64 planes, i64 h,
         i64 w, int threads) {
        DS_DISPATCH(dbl, ds::separable_correlate2d<T>(as<T>(x), as<T>(kh), lh, as<T>(kw), lw, boundary, adjoint,
                                                      as<T>(out), planes, h, w, threads));
      },
      release);
  m.def(
      "resample",
      [](bool dbl, Ptr in, Ptr mh, Ptr mw, i64 h_out, i64 h_in, i64 w_out, i64 w_in, bool adjoint, Ptr out,
         i64 planes, int threads) {
        DS_DISPATCH(dbl, ds::resample<T>(as<T>(in), as<T>(mh), as<T>(mw), h_out, h_in, w_out, w_in, adjoint,
                                         as<T>(out), planes, threads));
      },
      release);
  m.def(
      "avg_pool",
      [](bool dbl, Ptr in, i64 factor, bool adjoint, Ptr out, i64 planes, i64 h_small, i64 w_small, int threads) {
        DS_DISPATCH(dbl, ds::avg_pool<T>(as<T>(in), factor, adjoint, as<T>(out), planes, h_small, w_small, threads));
      },
      release);
  m.def(
      "cg_dots",
      [](bool dbl, Ptr r, Ptr gr, Ptr shift, Ptr scale, Ptr dots, i64 batch, i64 n, int threads, Ptr z) {
        DS_DISPATCH(dbl, ds::cg_dots<T>(as<T>(r), as<T>(gr), as<T>(shift), as<T>(scale), as<T>(dots), batch, n,
                                        threads, as<T>(z)));
      },
      release);
  m.def(
      "cg_update",
      [](bool dbl, Ptr x, Ptr r, Ptr p, Ptr s, Ptr gr, Ptr shift, Ptr scale, Ptr dots, Ptr state, double tol2,
         i64 batch, i64 n, int threads, Ptr z) {
        DS_DISPATCH(dbl, ds::cg_update<T>(as<T>(x), as<T>(r), as<T>(p), as<T>(s), as<T>(gr), as<T>(shift),
                                          as<T>(scale), as<T>(dots), as<T>(state), tol2, batch, n, threads,
                                          as<T>(z)));
      },
      release);
}
