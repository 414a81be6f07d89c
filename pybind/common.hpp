// Shared helpers for the diffsolve C++ CPU kernels: index types, OpenMP loops, boundary index maps,
// 1-D sparse (CSR) matrices, and the counter-based normal generator (Philox4x32-10 + Box-Muller).
// No torch headers: every kernel takes raw pointers to contiguous buffers whose shapes were checked
// in Python (src/diffsolve/kernels/_cpp_ops.py).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace ds {

using i64 = std::int64_t;
using u32 = std::uint32_t;
using u64 = std::uint64_t;

// Run body(i) for i in [0, n) over `threads` OpenMP threads, static schedule. Every kernel makes the
// result of item i independent of which thread runs it, so results do not depend on the thread count.
template <class F>
inline void parallel_for(i64 n, int threads, F body) {
#ifdef _OPENMP
  if (threads > 1 && n > 1) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (i64 i = 0; i < n; ++i) body(i);
    return;
  }
#endif
  for (i64 i = 0; i < n; ++i) body(i);
}

// Boundary codes shared with Python: 0 zero, 1 reflect (mirror without repeating the edge, like
// torch ReflectionPad2d), 2 circular.
enum Boundary : int { kZero = 0, kReflect = 1, kCircular = 2 };

// Source index of padded-relative position q (q may lie outside [0, n)), or -1 for a zero.
inline i64 source_index(i64 q, i64 n, int boundary) {
  if (q >= 0 && q < n) return q;
  if (boundary == kZero) return -1;
  if (boundary == kCircular) {
    i64 m = q % n;
    return m < 0 ? m + n : m;
  }
  if (n == 1) return 0;
  const i64 period = 2 * (n - 1);
  i64 m = q % period;
  if (m < 0) m += period;
  return m < n ? m : period - m;
}

// A sparse matrix (rows x cols) in CSR form, used for the 1-D passes along the image height.
struct Csr {
  i64 rows = 0, cols = 0;
  std::vector<i64> start;  // rows + 1
  std::vector<i64> index;
  std::vector<double> value;
};

// From a dense row-major matrix, keeping the non-zeros (exploits banded resampling matrices).
template <class T>
inline Csr csr_from_dense(const T* m, i64 rows, i64 cols, bool transpose) {
  Csr c;
  c.rows = transpose ? cols : rows;
  c.cols = transpose ? rows : cols;
  c.start.assign(c.rows + 1, 0);
  for (i64 i = 0; i < c.rows; ++i) {
    for (i64 j = 0; j < c.cols; ++j) {
      const T v = transpose ? m[j * cols + i] : m[i * cols + j];
      if (v != T(0)) {
        c.index.push_back(j);
        c.value.push_back(static_cast<double>(v));
      }
    }
    c.start[i + 1] = static_cast<i64>(c.index.size());
  }
  return c;
}

// The n x n matrix of a 1-D correlation with odd taps k (length L) and a boundary:
// V[i, source_index(i + u - L/2)] += k[u]; duplicates (reflect/circular folds) are merged. With
// `transpose`, V^T. Built from (row, col, value) triplets: O(n L log L) time and memory.
template <class T>
inline Csr csr_correlation(const T* k, i64 L, i64 n, int boundary, bool transpose) {
  struct Entry {
    i64 row, col;
    double value;
  };
  std::vector<Entry> entries;
  entries.reserve(static_cast<size_t>(n * L));
  const i64 half = L / 2;
  for (i64 i = 0; i < n; ++i)
    for (i64 u = 0; u < L; ++u) {
      const i64 s = source_index(i + u - half, n, boundary);
      if (s >= 0 && k[u] != T(0)) entries.push_back(transpose ? Entry{s, i, double(k[u])} : Entry{i, s, double(k[u])});
    }
  std::stable_sort(entries.begin(), entries.end(),
                   [](const Entry& a, const Entry& b) { return a.row != b.row ? a.row < b.row : a.col < b.col; });
  Csr c;
  c.rows = c.cols = n;
  c.start.assign(n + 1, 0);
  for (size_t e = 0; e < entries.size(); ++e) {
    if (e > 0 && entries[e].row == entries[e - 1].row && entries[e].col == entries[e - 1].col) {
      c.value.back() += entries[e].value;  // merged in the fixed order of u: deterministic
      continue;
    }
    c.index.push_back(entries[e].col);
    c.value.push_back(entries[e].value);
    c.start[entries[e].row + 1] = static_cast<i64>(c.index.size());
  }
  for (i64 i = 0; i < n; ++i) c.start[i + 1] = std::max(c.start[i + 1], c.start[i]);
  return c;
}

// out[0:w] = sum_e value[e] * in_rows[index[e]][0:w] for CSR row r (rows of length `stride`).
template <class T>
inline void combine_rows(const Csr& m, i64 r, const T* in, i64 stride, i64 w, T* out) {
  for (i64 j = 0; j < w; ++j) out[j] = T(0);
  for (i64 e = m.start[r]; e < m.start[r + 1]; ++e) {
    const T a = static_cast<T>(m.value[e]);
    const T* __restrict src = in + m.index[e] * stride;
    T* __restrict dst = out;
    for (i64 j = 0; j < w; ++j) dst[j] += a * src[j];
  }
}

// ----------------------------------------------------------------------------- random numbers
// Philox4x32-10 (Salmon et al., SC'11): 4 x 32 random bits per 128-bit counter under a 64-bit key.
inline void philox4x32_10(u32 ctr[4], u32 k0, u32 k1) {
  const u32 M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const u64 p0 = static_cast<u64>(M0) * ctr[0];
    const u64 p1 = static_cast<u64>(M1) * ctr[2];
    const u32 n0 = static_cast<u32>(p1 >> 32) ^ ctr[1] ^ k0;
    const u32 n2 = static_cast<u32>(p0 >> 32) ^ ctr[3] ^ k1;
    ctr[0] = n0;
    ctr[1] = static_cast<u32>(p1);
    ctr[2] = n2;
    ctr[3] = static_cast<u32>(p0);
    k0 += W0;
    k1 += W1;
  }
}

// Four standard normals for counter block `block` (elements 4*block .. 4*block+3 of the stream):
// Philox(counter = (block_lo, block_hi, 0, 0), key = (seed_lo, seed_hi)), uniforms u = (bits+1)/2^32
// in (0, 1], two Box-Muller pairs. Element n of the stream is normal4(seed, n / 4)[n % 4].
inline void normal4(u64 seed, u64 block, double z[4]) {
  u32 c[4] = {static_cast<u32>(block), static_cast<u32>(block >> 32), 0u, 0u};
  philox4x32_10(c, static_cast<u32>(seed), static_cast<u32>(seed >> 32));
  const double scale = 2.3283064365386963e-10;  // 2^-32
  const double two_pi = 6.283185307179586;
  for (int k = 0; k < 4; k += 2) {
    const double u1 = (static_cast<double>(c[k]) + 1.0) * scale;
    const double u2 = (static_cast<double>(c[k + 1]) + 0.5) * scale;
    const double radius = std::sqrt(-2.0 * std::log(u1));
    const double angle = two_pi * u2;
    z[k] = radius * std::cos(angle);
    z[k + 1] = radius * std::sin(angle);
  }
}

// out[i] = element (start + i) of the stream for `seed`, i < count.
template <class T>
inline void fill_normal(T* out, u64 start, i64 count, u64 seed) {
  i64 i = 0;
  while (i < count) {
    const u64 n = start + static_cast<u64>(i);
    double z[4];
    normal4(seed, n >> 2, z);
    for (int lane = static_cast<int>(n & 3u); lane < 4 && i < count; ++lane, ++i) out[i] = static_cast<T>(z[lane]);
  }
}

}  // namespace ds
