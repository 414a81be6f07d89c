// 2-D cross-correlation (dense or sparse taps, and separable) with zero / reflect / circular
// boundaries, and the exact adjoints. One work item is one output row of one image plane, so every
// row is computed identically whatever the thread count; the dense / sparse form lays the padded
// input out once (one full-size temporary), the separable form pads row by row (none).
//
// Forward:  out = correlate_valid(pad(x), k)  -- dense / sparse taps: x padded once into a laid-out plane,
//           then register-blocked tap sums per output row (sum_taps); separable: rows through source_index,
//           columns padded in a row buffer (common.hpp: combine_rows, correlate_blocks).
// Adjoint:  x = pad^T(correlate_full(y, k))   -- per x row, the padded rows that copy it (pad^T
//           folds them back) are accumulated, then the padded columns are folded back.
#include <memory>

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

// One column block of one output row: acc[j] += sum_t a[t] * base[off[t] + j] for j < kBlockCols, over a
// kernel's non-zero taps in the order of (u, v), the block's sums in registers while it walks every tap.
// `base` is the block's first entry in a laid-out plane (padded x for the forward, zero-padded y for the
// adjoint) and off[t] the tap's offset in it.
template <class T>
DS_INLINE void sum_taps(const T* base, const i64* off, const T* a, i64 count, T* acc) {
  T sum[kBlockCols];
  for (i64 j = 0; j < kBlockCols; ++j) sum[j] = acc[j];
  for (i64 t = 0; t < count; ++t) {
    const T at = a[t];
    const T* __restrict src = base + off[t];
    for (i64 j = 0; j < kBlockCols; ++j) sum[j] += at * src[j];
  }
  for (i64 j = 0; j < kBlockCols; ++j) acc[j] = sum[j];
}
// GCC's unroll-and-jam would jam the tap loop into the column loop and leave it scalar (2-5x slower here), so
// sum_taps' ISA versions are built without it (on this loop only: on every kernel it slowed fused_step).
#if defined(__GNUC__) && !defined(__clang__)
#define DS_NO_JAM __attribute__((optimize("no-loop-unroll-and-jam")))
#else
#define DS_NO_JAM
#endif
DS_MULTIVERSION_WITH(DS_NO_JAM, sum_taps, (const T* base, const i64* off, const T* a, i64 count, T* acc),
                     (base, off, a, count, acc))

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
  const i64 ph = kh / 2, pw = kw / 2, wp = w + 2 * pw;
  // The laid-out planes: forward, x padded by the boundary (rows h + 2 ph); adjoint, y with kh - 1 zero rows
  // above and below and kw - 1 zero columns each side, so the full correlation z[p, q] = sum k[u, v]
  // y[p - u, q - v] reads row p + kh - 1 - u, column q + kw - 1 - v. Row stride ws covers n + the taps' reach.
  const i64 n = round_up_block(adjoint ? wp : w), ws = n + kw - 1;
  const i64 rows = adjoint ? h + 2 * ph + kh - 1 : h + 2 * ph;
  std::vector<i64> off;  // non-zero taps in the order of (u, v): offset in the laid-out plane, value
  std::vector<T> a;
  for (i64 u = 0; u < kh; ++u)
    for (i64 v = 0; v < kw; ++v)
      if (kernel[u * kw + v] != T(0)) {
        off.push_back(adjoint ? (kh - 1 - u) * ws + (kw - 1 - v) : u * ws + v);
        a.push_back(kernel[u * kw + v]);
      }
  const i64 count = static_cast<i64>(a.size());
  const std::unique_ptr<T[]> laid(new T[static_cast<size_t>(planes * rows * ws)]);  // every entry written below
  parallel_for(planes * rows, threads, ws, [&](i64 item) {
    const i64 plane = item / rows, r = item % rows;
    T* dst = laid.get() + item * ws;
    const i64 s = adjoint ? r - (kh - 1) : source_index(r - ph, h, boundary);
    const T* src = x + plane * h * w + s * w;
    if (s < 0 || s >= h) {
      for (i64 q = 0; q < ws; ++q) dst[q] = T(0);
    } else if (adjoint) {
      for (i64 q = 0; q < kw - 1; ++q) dst[q] = T(0);
      for (i64 j = 0; j < w; ++j) dst[kw - 1 + j] = src[j];
      for (i64 q = kw - 1 + w; q < ws; ++q) dst[q] = T(0);
    } else {
      pad_row(src, w, pw, boundary, dst);
      for (i64 q = wp; q < ws; ++q) dst[q] = T(0);
    }
  });
  const auto lists = adjoint ? fold_lists(h, ph, boundary) : std::vector<std::vector<i64>>{};
  parallel_for(planes * h, threads, w * std::max<i64>(count, 1), [&](i64 item) {
    const i64 plane = item / h, i = item % h;
    const T* base = laid.get() + plane * rows * ws;
    T* acc = scratch<T>(static_cast<size_t>(n));
    for (i64 q = 0; q < n; ++q) acc[q] = T(0);
    if (!adjoint) {  // out row i = sum over taps of padded row i + u, columns j + v
      for (i64 j0 = 0; j0 < n; j0 += kBlockCols)
        sum_taps_best<T>(base + i * ws + j0, off.data(), a.data(), count, acc + j0);
      for (i64 j = 0; j < w; ++j) out[item * w + j] = acc[j];
      return;
    }
    for (i64 j0 = 0; j0 < n; j0 += kBlockCols)
      for (const i64 p : lists[i]) sum_taps_best<T>(base + p * ws + j0, off.data(), a.data(), count, acc + j0);
    fold_row(acc, w, pw, boundary, out + item * w);  // the padded rows that copy row i, then the columns
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
