// Separable resampling y = M_h x M_w^T (and x = M_h^T y M_w) with the matrices' non-zeros only
// (bicubic anti-aliased matrices are banded), and average pooling with its adjoint. One work item is
// one output row of one plane: a combination of input rows (M_h's non-zeros), then a banded row
// product with M_w (or M_w^T); no full-resolution temporary.
#include "kernels.hpp"

namespace ds {
namespace {

// A (rows x cols) matrix by its band: row b holds its non-zeros within columns start[b] .. start[b] +
// width - 1 (start clamped so the band stays inside the matrix), zeros elsewhere in the band.
// `by_offset` stores weight[l * rows + b] (the gather form), else weight[b * width + l].
template <class T>
struct Band {
  i64 rows = 0, width = 0;
  std::vector<i64> start;
  std::vector<T> weight;
};

template <class T>
Band<T> band_from_csr(const Csr& m, bool by_offset) {
  Band<T> band;
  band.rows = m.rows;
  for (i64 b = 0; b < m.rows; ++b)
    if (m.start[b + 1] > m.start[b])
      band.width = std::max(band.width, m.index[m.start[b + 1] - 1] - m.index[m.start[b]] + 1);
  band.start.assign(m.rows, 0);
  band.weight.assign(static_cast<size_t>(band.width * m.rows), T(0));
  for (i64 b = 0; b < m.rows; ++b) {
    if (m.start[b + 1] == m.start[b]) continue;
    const i64 first = std::min(m.index[m.start[b]], m.cols - band.width);
    band.start[b] = first;
    for (i64 e = m.start[b]; e < m.start[b + 1]; ++e) {
      const i64 l = m.index[e] - first;
      band.weight[by_offset ? l * m.rows + b : b * band.width + l] = static_cast<T>(m.value[e]);
    }
  }
  return band;
}

// For each block of kBlockCols columns of M (rows x cols), the range [lo, hi) of rows with a non-zero there.
inline std::vector<i64> column_block_rows(const Csr& mt) {  // mt: CSR of M^T
  const i64 blocks = (mt.rows + kBlockCols - 1) / kBlockCols;
  std::vector<i64> range(static_cast<size_t>(2 * blocks), 0);
  for (i64 blk = 0; blk < blocks; ++blk) {
    i64 lo = mt.cols, hi = 0;
    for (i64 c = blk * kBlockCols; c < std::min(mt.rows, (blk + 1) * kBlockCols); ++c)
      if (mt.start[c + 1] > mt.start[c]) {
        lo = std::min(lo, mt.index[mt.start[c]]);
        hi = std::max(hi, mt.index[mt.start[c + 1] - 1] + 1);
      }
    range[2 * blk] = lo < hi ? lo : 0;
    range[2 * blk + 1] = lo < hi ? hi : 0;
  }
  return range;
}

// One output row: t = (vertical row a) . plane rows, then along the width either
// forward  out[b] = sum_l W[b, start_b + l] t[start_b + l]  (band gathers, vectorised over b), or
// adjoint  out[c] = sum_b M_w[b, c] t[b]  over the rows b that touch c's column block (dense rows of
//          M_w, register-blocked). Each output is summed over l, resp. b, in ascending order.
template <class T>
DS_INLINE void resample_row(const Csr& vertical, i64 a, const T* plane, i64 cols_in, const Band<T>& band,
                            const T* m_w, const i64* block_rows, bool adjoint, i64 cols_out, T* t, T* dst) {
  combine_rows(vertical, a, plane, cols_in, cols_in, t);
  T* __restrict out = dst;
  if (!adjoint) {
    const i64* __restrict start = band.start.data();
    for (i64 b = 0; b < cols_out; ++b) out[b] = T(0);
    for (i64 l = 0; l < band.width; ++l) {
      const T* __restrict w = band.weight.data() + l * cols_out;
      const T* __restrict src = t + l;
      for (i64 b = 0; b < cols_out; ++b) out[b] += w[b] * src[start[b]];
    }
    return;
  }
  for (i64 blk = 0, c0 = 0; c0 < cols_out; ++blk, c0 += kBlockCols) {
    const i64 lo = block_rows[2 * blk], hi = block_rows[2 * blk + 1];
    if (c0 + kBlockCols <= cols_out) {
      T acc[kBlockCols] = {};
      for (i64 b = lo; b < hi; ++b) {
        const T v = t[b];
        const T* __restrict row = m_w + b * cols_out + c0;
        for (i64 j = 0; j < kBlockCols; ++j) acc[j] += row[j] * v;
      }
      for (i64 j = 0; j < kBlockCols; ++j) out[c0 + j] = acc[j];
    } else {
      for (i64 c = c0; c < cols_out; ++c) {
        T acc = T(0);
        for (i64 b = lo; b < hi; ++b) acc += m_w[b * cols_out + c] * t[b];
        out[c] = acc;
      }
    }
  }
}
DS_MULTIVERSION(resample_row, (const Csr& vertical, i64 a, const T* plane, i64 cols_in, const Band<T>& band,
                               const T* m_w, const i64* block_rows, bool adjoint, i64 cols_out, T* t, T* dst),
                (vertical, a, plane, cols_in, band, m_w, block_rows, adjoint, cols_out, t, dst))

}  // namespace

template <class T>
void resample(const T* in, const T* m_h, const T* m_w, i64 h_out, i64 h_in, i64 w_out, i64 w_in, bool adjoint,
              T* out, i64 planes, int threads) {
  // Forward: rows of M_h combine input rows, rows of M_w give output columns.
  // Adjoint: input (N, h_out, w_out) -> output (N, h_in, w_in) through M_h^T and M_w^T.
  const Csr vertical = csr_from_dense(m_h, h_out, h_in, adjoint);
  const Band<T> horizontal = adjoint ? Band<T>{} : band_from_csr<T>(csr_from_dense(m_w, w_out, w_in, false), true);
  const std::vector<i64> block_rows = adjoint ? column_block_rows(csr_from_dense(m_w, w_out, w_in, true))
                                              : std::vector<i64>{};
  const i64 rows_in = adjoint ? h_out : h_in, cols_in = adjoint ? w_out : w_in;
  const i64 rows_out = vertical.rows, cols_out = adjoint ? w_in : w_out;
  parallel_for(planes * rows_out, threads, cols_in * 8 + cols_out * 8, [&](i64 item) {
    const i64 plane = item / rows_out, a = item % rows_out;
    resample_row_best<T>(vertical, a, in + plane * rows_in * cols_in, cols_in, horizontal, m_w, block_rows.data(),
                         adjoint, cols_out,
                         scratch<T>(static_cast<size_t>(cols_in)), out + item * cols_out);
  });
}

template <class T>
void avg_pool(const T* in, i64 s, bool adjoint, T* out, i64 planes, i64 h_small, i64 w_small, int threads) {
  const i64 w_big = w_small * s;
  const T inv = T(1) / static_cast<T>(s * s);
  parallel_for(planes * h_small, threads, 2 * s * w_big, [&](i64 item) {
    const i64 plane = item / h_small, a = item % h_small;
    if (!adjoint) {  // y[a, b] = mean of x[a s .. a s + s, b s .. b s + s]
      T* __restrict sum = scratch<T>(static_cast<size_t>(w_big));
      for (i64 j = 0; j < w_big; ++j) sum[j] = T(0);
      const T* rows = in + (plane * h_small + a) * s * w_big;
      for (i64 di = 0; di < s; ++di) {
        const T* __restrict r = rows + di * w_big;
        for (i64 j = 0; j < w_big; ++j) sum[j] += r[j];
      }
      T* dst = out + item * w_small;
      for (i64 b = 0; b < w_small; ++b) {
        T acc = T(0);
        for (i64 dj = 0; dj < s; ++dj) acc += sum[b * s + dj];
        dst[b] = acc * inv;
      }
    } else {  // x[a s + di, b s + dj] = y[a, b] / s^2
      const T* src = in + item * w_small;
      T* rows = out + (plane * h_small + a) * s * w_big;
      for (i64 b = 0; b < w_small; ++b) {
        const T v = src[b] * inv;
        for (i64 dj = 0; dj < s; ++dj) rows[b * s + dj] = v;
      }
      for (i64 di = 1; di < s; ++di) std::copy(rows, rows + w_big, rows + di * w_big);
    }
  });
}

#define DS_INSTANTIATE(T)                                                                               \
  template void resample<T>(const T*, const T*, const T*, i64, i64, i64, i64, bool, T*, i64, int);     \
  template void avg_pool<T>(const T*, i64, bool, T*, i64, i64, i64, int);
DS_INSTANTIATE(float)
DS_INSTANTIATE(double)
#undef DS_INSTANTIATE

}  // namespace ds
