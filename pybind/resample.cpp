// Separable resampling y = M_h x M_w^T (and x = M_h^T y M_w) with the matrices' non-zeros only
// (bicubic anti-aliased matrices are banded), and average pooling with its adjoint. One work item is
// one output row of one plane: a register-blocked combination of input rows (M_h's non-zeros), then
// a banded row product (M_w's band, vectorised over output columns); no full-resolution temporary.
#include "kernels.hpp"

namespace ds {
namespace {

// A (rows x cols) matrix by its band: row b holds weight[l * rows + b] at column start[b] + l, l < width.
template <class T>
struct Band {
  i64 rows = 0, width = 0;
  std::vector<i64> start;
  std::vector<T> weight;
};

template <class T>
Band<T> band_from_csr(const Csr& m) {
  Band<T> band;
  band.rows = m.rows;
  for (i64 b = 0; b < m.rows; ++b)
    if (m.start[b + 1] > m.start[b])
      band.width = std::max(band.width, m.index[m.start[b + 1] - 1] - m.index[m.start[b]] + 1);
  band.start.assign(m.rows, 0);
  band.weight.assign(static_cast<size_t>(band.width * m.rows), T(0));
  for (i64 b = 0; b < m.rows; ++b) {
    if (m.start[b + 1] == m.start[b]) continue;
    const i64 first = std::min(m.index[m.start[b]], m.cols - band.width);  // keep start + width <= cols
    band.start[b] = first;
    for (i64 e = m.start[b]; e < m.start[b + 1]; ++e)
      band.weight[(m.index[e] - first) * m.rows + b] = static_cast<T>(m.value[e]);
  }
  return band;
}

template <class T>
DS_INLINE void resample_row(const Csr& vertical, i64 a, const T* plane, i64 cols_in, const Band<T>& band, T* t,
                            T* dst) {
  combine_rows(vertical, a, plane, cols_in, cols_in, t);
  const i64 n = band.rows;
  const i64* __restrict start = band.start.data();
  T* __restrict out = dst;
  for (i64 b = 0; b < n; ++b) out[b] = T(0);
  for (i64 l = 0; l < band.width; ++l) {
    const T* __restrict w = band.weight.data() + l * n;
    const T* __restrict src = t + l;
    for (i64 b = 0; b < n; ++b) out[b] += w[b] * src[start[b]];
  }
}
DS_MULTIVERSION(resample_row, (const Csr& vertical, i64 a, const T* plane, i64 cols_in, const Band<T>& band, T* t,
                               T* dst),
                (vertical, a, plane, cols_in, band, t, dst))

}  // namespace

template <class T>
void resample(const T* in, const T* m_h, const T* m_w, i64 h_out, i64 h_in, i64 w_out, i64 w_in, bool adjoint,
              T* out, i64 planes, int threads) {
  // Forward: rows of M_h combine input rows, rows of M_w give output columns.
  // Adjoint: input (N, h_out, w_out) -> output (N, h_in, w_in) through M_h^T and M_w^T.
  const Csr vertical = csr_from_dense(m_h, h_out, h_in, adjoint);
  const Band<T> horizontal = band_from_csr<T>(csr_from_dense(m_w, w_out, w_in, adjoint));
  const i64 rows_in = adjoint ? h_out : h_in, cols_in = adjoint ? w_out : w_in;
  const i64 rows_out = vertical.rows, cols_out = horizontal.rows;
  parallel_for(planes * rows_out, threads, [&](i64 item) {
    const i64 plane = item / rows_out, a = item % rows_out;
    std::vector<T> t(static_cast<size_t>(cols_in));
    resample_row_best<T>(vertical, a, in + plane * rows_in * cols_in, cols_in, horizontal, t.data(),
                         out + item * cols_out);
  });
}

template <class T>
void avg_pool(const T* in, i64 s, bool adjoint, T* out, i64 planes, i64 h_small, i64 w_small, int threads) {
  const i64 w_big = w_small * s;
  const T inv = T(1) / static_cast<T>(s * s);
  parallel_for(planes * h_small, threads, [&](i64 item) {
    const i64 plane = item / h_small, a = item % h_small;
    if (!adjoint) {  // y[a, b] = mean of x[a s .. a s + s, b s .. b s + s]
      std::vector<T> sbuf(static_cast<size_t>(w_big), T(0));
      T* __restrict sum = sbuf.data();
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
