// 2-D cross-correlation (dense or sparse taps, and separable) with zero / reflect / circular
// boundaries, and the exact adjoints. One work item is one output row of one image plane, so no
// full-size temporaries are made and every row is computed identically whatever the thread count.
//
// Forward:  out = correlate_valid(pad(x), k)  -- rows through source_index, columns padded in a
//           row buffer, then one vectorisable axpy per tap.
// Adjoint:  x = pad^T(correlate_full(y, k))   -- per x row, the padded rows that copy it (pad^T
//           folds them back) are accumulated by scattering axpys, then the padded columns are folded.
#include "kernels.hpp"

namespace ds {
namespace {

// Pad one row src (w) into dst (w + 2*pw) with the boundary.
template <class T>
inline void pad_row(const T* src, i64 w, i64 pw, int boundary, T* dst) {
  for (i64 j = 0; j < w; ++j) dst[pw + j] = src[j];
  for (i64 q = 0; q < pw; ++q) {
    const i64 lo = source_index(q - pw, w, boundary), hi = source_index(w + q, w, boundary);
    dst[q] = lo < 0 ? T(0) : src[lo];
    dst[pw + w + q] = hi < 0 ? T(0) : src[hi];
  }
}

// out[t] = sum of acc[q] over padded columns q that copy column t (the transpose of pad_row).
template <class T>
inline void fold_row(const T* acc, i64 w, i64 pw, int boundary, T* out) {
  for (i64 t = 0; t < w; ++t) out[t] = acc[pw + t];
  for (i64 q = 0; q < pw; ++q) {
    const i64 lo = source_index(q - pw, w, boundary), hi = source_index(w + q, w, boundary);
    if (lo >= 0) out[lo] += acc[q];
    if (hi >= 0) out[hi] += acc[pw + w + q];
  }
}

// For each source row s, the padded rows p (0 <= p < h + 2*ph) with source_index(p - ph) == s.
inline std::vector<std::vector<i64>> fold_lists(i64 h, i64 ph, int boundary) {
  std::vector<std::vector<i64>> lists(static_cast<size_t>(h));
  for (i64 p = 0; p < h + 2 * ph; ++p) {
    const i64 s = source_index(p - ph, h, boundary);
    if (s >= 0) lists[s].push_back(p);
  }
  return lists;
}

struct Tap {
  i64 dv;
  double value;
};

}  // namespace

template <class T>
void correlate2d(const T* x, const T* kernel, i64 kh, i64 kw, int boundary, bool adjoint, T* out, i64 planes,
                 i64 h, i64 w, int threads) {
  const i64 ph = kh / 2, pw = kw / 2, wp = w + 2 * pw;
  std::vector<std::vector<Tap>> rows(static_cast<size_t>(kh));  // non-zero taps of each kernel row
  for (i64 u = 0; u < kh; ++u)
    for (i64 v = 0; v < kw; ++v)
      if (kernel[u * kw + v] != T(0)) rows[u].push_back({v, static_cast<double>(kernel[u * kw + v])});
  const auto lists = adjoint ? fold_lists(h, ph, boundary) : std::vector<std::vector<i64>>{};
  parallel_for(planes * h, threads, [&](i64 item) {
    const i64 plane = item / h, i = item % h;
    const T* src = x + plane * h * w;
    T* dst = out + item * w;
    std::vector<T> buf(static_cast<size_t>(wp));
    T* __restrict row = buf.data();
    if (!adjoint) {
      std::vector<T> accv(static_cast<size_t>(w), T(0));
      T* __restrict acc = accv.data();
      for (i64 u = 0; u < kh; ++u) {
        if (rows[u].empty()) continue;
        const i64 r = source_index(i + u - ph, h, boundary);
        if (r < 0) continue;
        pad_row(src + r * w, w, pw, boundary, row);
        for (const Tap& tap : rows[u]) {
          const T a = static_cast<T>(tap.value);
          const T* __restrict shifted = row + tap.dv;
          for (i64 j = 0; j < w; ++j) acc[j] += a * shifted[j];
        }
      }
      for (i64 j = 0; j < w; ++j) dst[j] = acc[j];
    } else {
      for (i64 q = 0; q < wp; ++q) row[q] = T(0);
      for (const i64 p : lists[i]) {  // padded rows copied from row i
        for (i64 u = 0; u < kh; ++u) {
          const i64 a_row = p - u;  // full correlation: z[p] += k[u] * y[p - u]
          if (a_row < 0 || a_row >= h || rows[u].empty()) continue;
          const T* __restrict yrow = src + a_row * w;
          for (const Tap& tap : rows[u]) {
            const T a = static_cast<T>(tap.value);
            T* __restrict shifted = row + tap.dv;
            for (i64 j = 0; j < w; ++j) shifted[j] += a * yrow[j];
          }
        }
      }
      fold_row(row, w, pw, boundary, dst);
    }
  });
}

template <class T>
void separable_correlate2d(const T* x, const T* k_h, i64 lh, const T* k_w, i64 lw, int boundary, bool adjoint,
                           T* out, i64 planes, i64 h, i64 w, int threads) {
  const i64 pw = lw / 2, wp = w + 2 * pw;
  const Csr vertical = csr_correlation(k_h, lh, h, boundary, adjoint);  // V or V^T along the height
  std::vector<T> kws(k_w, k_w + lw);
  parallel_for(planes * h, threads, [&](i64 item) {
    const i64 plane = item / h, i = item % h;
    T* dst = out + item * w;
    std::vector<T> tbuf(static_cast<size_t>(w)), pbuf(static_cast<size_t>(wp));
    T* __restrict t = tbuf.data();
    T* __restrict row = pbuf.data();
    combine_rows(vertical, i, x + plane * h * w, w, w, t);
    if (!adjoint) {
      pad_row(t, w, pw, boundary, row);
      T* __restrict o = dst;
      for (i64 j = 0; j < w; ++j) o[j] = T(0);
      for (i64 v = 0; v < lw; ++v) {
        const T a = kws[v];
        const T* __restrict shifted = row + v;
        for (i64 j = 0; j < w; ++j) o[j] += a * shifted[j];
      }
    } else {
      for (i64 q = 0; q < wp; ++q) row[q] = T(0);
      for (i64 v = 0; v < lw; ++v) {
        const T a = kws[v];
        T* __restrict shifted = row + v;
        for (i64 j = 0; j < w; ++j) shifted[j] += a * t[j];
      }
      fold_row(row, w, pw, boundary, dst);
    }
  });
}

#define DS_INSTANTIATE(T)                                                                                  \
  template void correlate2d<T>(const T*, const T*, i64, i64, int, bool, T*, i64, i64, i64, int);           \
  template void separable_correlate2d<T>(const T*, const T*, i64, const T*, i64, int, bool, T*, i64, i64, i64, \
                                         int);
DS_INSTANTIATE(float)
DS_INSTANTIATE(double)
#undef DS_INSTANTIATE

}  // namespace ds
