// 2-D cross-correlation (dense or sparse taps, and separable) with zero / reflect / circular
// boundaries, and the exact adjoints. One work item is one output row of one image plane, so no
// full-size temporaries are made and every row is computed identically whatever the thread count.
//
// Forward:  out = correlate_valid(pad(x), k)  -- rows through source_index, columns padded in a
//           row buffer, then tap loops (common.hpp: combine_rows, register-blocked correlate_blocks).
// Adjoint:  x = pad^T(correlate_full(y, k))   -- per x row, the padded rows that copy it (pad^T
//           folds them back) are accumulated, then the padded columns are folded back.
#include "kernels.hpp"

namespace ds {
namespace {

// Pad one row src (w) into dst (w + 2*pw) with the boundary.
template <class T>
DS_INLINE void pad_row(const T* src, i64 w, i64 pw, int boundary, T* dst) {
  for (i64 j = 0; j < w; ++j) dst[pw + j] = src[j];
  for (i64 q = 0; q < pw; ++q) {
    const i64 lo = source_index(q - pw, w, boundary), hi = source_index(w + q, w, boundary);
    dst[q] = lo < 0 ? T(0) : src[lo];
    dst[pw + w + q] = hi < 0 ? T(0) : src[hi];
  }
}

// out[t] = sum of acc[q] over padded columns q that copy column t (the transpose of pad_row).
template <class T>
DS_INLINE void fold_row(const T* acc, i64 w, i64 pw, int boundary, T* out) {
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

// One output row of the dense / sparse-tap correlation (or its adjoint). Scratch: row (w + 2 pw).
template <class T>
DS_INLINE void dense_row(const T* src, const std::vector<std::vector<Tap>>& rows, const std::vector<i64>* fold,
                         i64 i, i64 h, i64 w, i64 kh, i64 pw, int boundary, T* row, T* acc, T* dst) {
  const i64 ph = kh / 2, wp = w + 2 * pw;
  if (fold == nullptr) {
    for (i64 j = 0; j < w; ++j) acc[j] = T(0);
    for (i64 u = 0; u < kh; ++u) {
      if (rows[u].empty()) continue;
      const i64 r = source_index(i + u - ph, h, boundary);
      if (r < 0) continue;
      pad_row(src + r * w, w, pw, boundary, row);
      for (const Tap& tap : rows[u]) {
        const T a = static_cast<T>(tap.value);
        const T* __restrict shifted = row + tap.dv;
        T* __restrict out = acc;
        for (i64 j = 0; j < w; ++j) out[j] += a * shifted[j];
      }
    }
    for (i64 j = 0; j < w; ++j) dst[j] = acc[j];
    return;
  }
  for (i64 q = 0; q < wp; ++q) acc[q] = T(0);
  for (const i64 p : *fold) {  // padded rows copied from row i
    for (i64 u = 0; u < kh; ++u) {
      const i64 a_row = p - u;  // full correlation: z[p] += k[u] * y[p - u]
      if (a_row < 0 || a_row >= h || rows[u].empty()) continue;
      const T* __restrict yrow = src + a_row * w;
      for (const Tap& tap : rows[u]) {
        const T a = static_cast<T>(tap.value);
        T* __restrict shifted = acc + tap.dv;
        for (i64 j = 0; j < w; ++j) shifted[j] += a * yrow[j];
      }
    }
  }
  fold_row(acc, w, pw, boundary, dst);
}
DS_MULTIVERSION(dense_row,
                (const T* src, const std::vector<std::vector<Tap>>& rows, const std::vector<i64>* fold, i64 i, i64 h,
                 i64 w, i64 kh, i64 pw, int boundary, T* row, T* acc, T* dst),
                (src, rows, fold, i, h, w, kh, pw, boundary, row, acc, dst))

// One output row of the separable correlation (V then H) or its adjoint (V^T then H^T; the two
// passes act on different axes, so they commute). Scratch: t (w), row (R(w + 2 pw) + 2 pw),
// acc (R(w + 2 pw)), R = round_up_block: the horizontal pass runs in whole register blocks.
template <class T>
DS_INLINE void separable_row(const Csr& vertical, i64 i, const T* plane, const T* k_w, const T* k_flip, i64 lw,
                             i64 w, int boundary, bool adjoint, T* t, T* row, T* acc, T* dst) {
  const i64 pw = lw / 2;
  combine_rows(vertical, i, plane, w, w, t);
  if (!adjoint) {
    const i64 n = round_up_block(w);
    pad_row(t, w, pw, boundary, row);
    for (i64 q = w + 2 * pw; q < n + 2 * pw; ++q) row[q] = T(0);
    correlate_blocks(row, k_w, lw, n, acc);
    for (i64 j = 0; j < w; ++j) dst[j] = acc[j];
    return;
  }
  // H^T: acc[q] = sum_v k[v] t[q - v] (t zero outside [0, w)) = correlation of zero-padded t with
  // the flipped taps, on the padded grid (w + 2 pw); then fold the padded columns back.
  const i64 n = round_up_block(w + 2 * pw);
  for (i64 q = 0; q < 2 * pw; ++q) row[q] = T(0);
  for (i64 j = 0; j < w; ++j) row[2 * pw + j] = t[j];
  for (i64 q = 2 * pw + w; q < n + 2 * pw; ++q) row[q] = T(0);
  correlate_blocks(row, k_flip, lw, n, acc);
  fold_row(acc, w, pw, boundary, dst);
}
DS_MULTIVERSION(separable_row,
                (const Csr& vertical, i64 i, const T* plane, const T* k_w, const T* k_flip, i64 lw, i64 w,
                 int boundary, bool adjoint, T* t, T* row, T* acc, T* dst),
                (vertical, i, plane, k_w, k_flip, lw, w, boundary, adjoint, t, row, acc, dst))

}  // namespace

template <class T>
void correlate2d(const T* x, const T* kernel, i64 kh, i64 kw, int boundary, bool adjoint, T* out, i64 planes,
                 i64 h, i64 w, int threads) {
  const i64 pw = kw / 2, wp = w + 2 * pw;
  std::vector<std::vector<Tap>> rows(static_cast<size_t>(kh));  // non-zero taps of each kernel row
  for (i64 u = 0; u < kh; ++u)
    for (i64 v = 0; v < kw; ++v)
      if (kernel[u * kw + v] != T(0)) rows[u].push_back({v, static_cast<double>(kernel[u * kw + v])});
  const auto lists = adjoint ? fold_lists(h, kh / 2, boundary) : std::vector<std::vector<i64>>{};
  i64 taps = 0;
  for (const auto& r : rows) taps += static_cast<i64>(r.size());
  parallel_for(planes * h, threads, w * taps, [&](i64 item) {
    const i64 plane = item / h, i = item % h;
    T* buf = scratch<T>(static_cast<size_t>(2 * wp));
    dense_row_best<T>(x + plane * h * w, rows, adjoint ? &lists[i] : nullptr, i, h, w, kh, pw, boundary, buf,
                      buf + wp, out + item * w);
  });
}

template <class T>
void separable_correlate2d(const T* x, const T* k_h, i64 lh, const T* k_w, i64 lw, int boundary, bool adjoint,
                           T* out, i64 planes, i64 h, i64 w, int threads) {
  const i64 pw = lw / 2;
  const Csr vertical = csr_correlation(k_h, lh, h, boundary, adjoint);  // V or V^T along the height
  std::vector<T> taps(k_w, k_w + lw), flipped(k_w, k_w + lw);
  std::reverse(flipped.begin(), flipped.end());
  parallel_for(planes * h, threads, w * (lh + lw), [&](i64 item) {
    const i64 plane = item / h, i = item % h;
    const i64 n = round_up_block(w + 2 * pw);
    T* t = scratch<T>(static_cast<size_t>(w + (n + 2 * pw) + n));
    separable_row_best<T>(vertical, i, x + plane * h * w, taps.data(), flipped.data(), lw, w, boundary, adjoint, t,
                          t + w, t + w + (n + 2 * pw), out + item * w);
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
