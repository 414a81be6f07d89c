// The two per-iteration passes of batched Chronopoulos-Gear CG (src/diffsolve/kernels/cg.py):
// cg_dots (both inner products in one read of r and G r) and cg_update (the masked vector updates,
// in place). Reductions use fixed blocks of kBlock elements, summed in double in a fixed order, so
// the dots are bit-identical for any thread count.
#include "kernels.hpp"

namespace ds {
namespace {
constexpr i64 kBlock = 8192;
constexpr i64 kChunk = 4096;
constexpr int kLanes = 8;
}  // namespace

template <class T>
void cg_dots(const T* r, const T* gr, const T* shift, const T* scale, T* dots, i64 batch, i64 n, int threads,
             const T* z) {
  // z == nullptr: (B, 2) [<r, r>, shift <r, r> + scale <gr, r>]. Preconditioned (z = M^-1 r, gr = G z):
  // (B, 3) [<r, z>, shift <z, z> + scale <gr, z>, <r, r>].
  const i64 blocks = std::max<i64>(1, (n + kBlock - 1) / kBlock);
  const int cols = z ? 3 : 2;
  std::vector<double> partial(static_cast<size_t>(batch * blocks * 4), 0.0);
  parallel_for(batch * blocks, threads, 2 * kBlock, [&](i64 item) {
    const i64 b = item / blocks, lo = (item % blocks) * kBlock, len = std::max<i64>(0, std::min(kBlock, n - lo));
    const T* __restrict rv = r + b * n + lo;
    const T* __restrict gv = gr + b * n + lo;
    const T* __restrict zv = z ? z + b * n + lo : rv;
    double rr[kLanes] = {0}, gg[kLanes] = {0}, zz[kLanes] = {0}, rz[kLanes] = {0};
    i64 i = 0;
    if (z) {
      for (; i + kLanes <= len; i += kLanes)
        for (int k = 0; k < kLanes; ++k) {
          const double a = rv[i + k], c = zv[i + k];
          rr[k] += a * a;
          rz[k] += a * c;
          zz[k] += c * c;
          gg[k] += double(gv[i + k]) * c;
        }
      for (; i < len; ++i) {
        const double a = rv[i], c = zv[i];
        rr[0] += a * a;
        rz[0] += a * c;
        zz[0] += c * c;
        gg[0] += double(gv[i]) * c;
      }
    } else {
      for (; i + kLanes <= len; i += kLanes)
        for (int k = 0; k < kLanes; ++k) {
          const double a = rv[i + k];
          rr[k] += a * a;
          gg[k] += double(gv[i + k]) * a;
        }
      for (; i < len; ++i) {
        const double a = rv[i];
        rr[0] += a * a;
        gg[0] += double(gv[i]) * a;
      }
    }
    double sr = 0, sg = 0, sz = 0, srz = 0;
    for (int k = 0; k < kLanes; ++k) {
      sr += rr[k];
      sg += gg[k];
      sz += zz[k];
      srz += rz[k];
    }
    partial[4 * item] = sr;
    partial[4 * item + 1] = sg;
    partial[4 * item + 2] = sz;
    partial[4 * item + 3] = srz;
  });
  for (i64 b = 0; b < batch; ++b) {
    double sr = 0, sg = 0, sz = 0, srz = 0;
    for (i64 k = 0; k < blocks; ++k) {
      const double* q = &partial[4 * (b * blocks + k)];
      sr += q[0];
      sg += q[1];
      sz += q[2];
      srz += q[3];
    }
    T* out = dots + cols * b;
    if (z) {
      out[0] = static_cast<T>(srz);
      out[1] = static_cast<T>(double(shift[b]) * sz + double(scale[b]) * sg);
      out[2] = static_cast<T>(sr);
    } else {
      out[0] = static_cast<T>(sr);
      out[1] = static_cast<T>(double(shift[b]) * sr + double(scale[b]) * sg);
    }
  }
}

template <class T>
void cg_update(T* x, T* r, T* p, T* s, const T* gr, const T* shift, const T* scale, const T* dots, T* state,
               double tol2, i64 batch, i64 n, int threads, const T* z) {
  // z == nullptr: dots (B, 2), directions from r. Preconditioned: dots (B, 3) [<r, z>, <K z, z>, <r, r>],
  // directions from z (gr = G z), convergence tested on <r, r>.
  // Per-sample scalars, in T like the reference: beta = gamma/gamma_old (0 first), alpha as in cg.py.
  std::vector<T> alpha(static_cast<size_t>(batch)), beta(static_cast<size_t>(batch));
  std::vector<char> on(static_cast<size_t>(batch));
  for (i64 b = 0; b < batch; ++b) {
    const int cols = z ? 3 : 2;
    const T gamma = dots[cols * b], delta = dots[cols * b + 1], rnorm2 = z ? dots[cols * b + 2] : gamma;
    T* st = state + 5 * b;
    const T gamma_old = st[0], alpha_old = st[1], active = st[2], rhs2 = st[4];
    const bool first = gamma_old == T(0);
    const T bt = first ? T(0) : gamma / gamma_old;
    const T al = first ? gamma / delta : gamma / (delta - bt * gamma / alpha_old);
    const bool live = active > T(0) && rnorm2 > static_cast<T>(tol2) * rhs2;
    on[b] = live;
    alpha[b] = live ? al : T(0);
    beta[b] = live ? bt : T(0);
    if (live) {
      st[0] = gamma;
      st[1] = al;
    }
    st[2] = live ? T(1) : T(0);
    st[3] = st[3] + (live ? T(1) : T(0));
  }
  const i64 chunks = (n + kChunk - 1) / kChunk;
  parallel_for(batch * chunks, threads, 6 * kChunk, [&](i64 item) {
    const i64 b = item / chunks, lo = (item % chunks) * kChunk, len = std::min(kChunk, n - lo);
    if (!on[b]) return;  // frozen sample: alpha = beta = 0, p and s kept, so nothing changes
    const i64 at = b * n + lo;
    const T a = alpha[b], be = beta[b], sh = shift[b], sc = scale[b];
    T* __restrict xv = x + at;
    T* __restrict rv = r + at;
    T* __restrict pv = p + at;
    T* __restrict sv = s + at;
    const T* __restrict gv = gr + at;
    const T* __restrict zv = z ? z + at : nullptr;
    for (i64 i = 0; i < len; ++i) {
      const T ri = rv[i], zi = zv ? zv[i] : ri;
      const T pi = zi + be * pv[i];
      const T si = (sh * zi + sc * gv[i]) + be * sv[i];
      pv[i] = pi;
      sv[i] = si;
      xv[i] = xv[i] + a * pi;
      rv[i] = ri - a * si;
    }
  });
}

#define DS_INSTANTIATE(T)                                                                                   \
  template void cg_dots<T>(const T*, const T*, const T*, const T*, T*, i64, i64, int, const T*);            \
  template void cg_update<T>(T*, T*, T*, T*, const T*, const T*, const T*, const T*, T*, double, i64, i64, int, \
                             const T*);
DS_INSTANTIATE(float)
DS_INSTANTIATE(double)
#undef DS_INSTANTIATE

}  // namespace ds
