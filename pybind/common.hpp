// Shared helpers for the diffsolve C++ CPU kernels: index types, OpenMP loops, boundary index maps,
// 1-D sparse (CSR) matrices, and the counter-based normal generator (Philox4x32-10 + Box-Muller).
// No torch headers: every kernel takes raw pointers to contiguous buffers whose shapes were checked
// in Python (src/diffsolve/kernels/_cpp_ops.py).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace ds {

using i64 = std::int64_t;
using u32 = std::uint32_t;
using u64 = std::uint64_t;

// ----------------------------------------------------------------------------- ISA dispatch
// Hot row/chunk kernels are DS_INLINE templates compiled three times through DS_MULTIVERSION: for
// the baseline ISA, AVX2 and AVX-512 (target attributes on those wrappers only, so no other code is
// built for a newer ISA), and the best one the CPU supports is chosen at run time. The build uses
// -ffp-contract=off, so every version performs the same IEEE operations in the same order: results
// are bit-identical across ISAs (tested through set_isa_limit) as well as across thread counts.
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define DS_X86 1
#define DS_AVX2 __attribute__((target("avx2,fma")))
#define DS_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")))
#else
#define DS_AVX2
#define DS_AVX512
#endif
#if defined(__GNUC__) || defined(__clang__)
#define DS_INLINE inline __attribute__((always_inline))
#else
#define DS_INLINE inline
#endif

// 2 = AVX-512 (F, VL, BW, DQ), 1 = AVX2 + FMA, 0 = baseline.
inline int detected_isa() {
#ifdef DS_X86
  static const int level = [] {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
      return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
    return 0;
  }();
  return level;
#else
  return 0;
#endif
}

inline int& isa_limit() {  // set by diffsolve._C.set_isa_limit (tests); default: no limit
  static int limit = 2;
  return limit;
}

inline int isa_level() { return std::min(detected_isa(), isa_limit()); }

// NAME##_best<T>(args...) runs NAME<T> compiled for the best available ISA; ATTR is any extra attribute of the
// three versions (DS_MULTIVERSION: none).
#define DS_MULTIVERSION_WITH(ATTR, NAME, PARAMS, ARGS)                    \
  template <class T>                                                      \
  DS_AVX512 ATTR void NAME##_avx512 PARAMS { NAME<T> ARGS; }              \
  template <class T>                                                      \
  DS_AVX2 ATTR void NAME##_avx2 PARAMS { NAME<T> ARGS; }                  \
  template <class T>                                                      \
  ATTR void NAME##_base PARAMS { NAME<T> ARGS; }                          \
  template <class T>                                                      \
  inline void NAME##_best PARAMS {                                        \
    const int level = isa_level();                                        \
    if (level == 2) NAME##_avx512<T> ARGS;                                \
    else if (level == 1) NAME##_avx2<T> ARGS;                             \
    else NAME##_base<T> ARGS;                                             \
  }
#define DS_MULTIVERSION(NAME, PARAMS, ARGS) DS_MULTIVERSION_WITH(, NAME, PARAMS, ARGS)

// Run body(i) for i in [0, n) over up to `threads` OpenMP threads, static schedule; `work` is a
// rough count of element operations per item, so small calls stay on one thread (a parallel region
// costs microseconds, more on a busy machine). Every kernel makes item i's result independent of
// the thread that runs it, so results do not depend on the thread count.
inline i64& work_per_thread() {  // set by diffsolve._C.set_parallel_grain (tests force threading)
  static i64 grain = i64(1) << 16;
  return grain;
}

template <class F>
inline void parallel_for(i64 n, int threads, i64 work, F body) {
#ifdef _OPENMP
  const i64 useful = std::max<i64>(1, std::min<i64>(n, n * std::max<i64>(work, 1) / std::max<i64>(1, work_per_thread())));
  const int team = static_cast<int>(std::min<i64>(threads, useful));
  if (team > 1) {
#pragma omp parallel for num_threads(team) schedule(static)
    for (i64 i = 0; i < n; ++i) body(i);
    return;
  }
#endif
  for (i64 i = 0; i < n; ++i) body(i);
}

// Per-thread scratch of at least n elements (reused across work items: no allocation per row).
template <class T>
inline T* scratch(size_t n) {
  thread_local std::vector<T> buffer;
  if (buffer.size() < n) buffer.resize(n);
  return buffer.data();
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

// The transpose of a CSR matrix by counting (entries of each row in the order of the source rows).
inline Csr csr_transpose(const Csr& m) {
  Csr t;
  t.rows = m.cols;
  t.cols = m.rows;
  t.start.assign(t.rows + 1, 0);
  for (const i64 c : m.index) ++t.start[c + 1];
  for (i64 r = 0; r < t.rows; ++r) t.start[r + 1] += t.start[r];
  t.index.resize(m.index.size());
  t.value.resize(m.value.size());
  std::vector<i64> fill(t.start.begin(), t.start.end() - 1);
  for (i64 r = 0; r < m.rows; ++r)
    for (i64 e = m.start[r]; e < m.start[r + 1]; ++e) {
      const i64 at = fill[m.index[e]]++;
      t.index[at] = r;
      t.value[at] = m.value[e];
    }
  return t;
}

// The n x n matrix of a 1-D correlation with odd taps k (length L) and a boundary:
// V[i, source_index(i + u - L/2)] += k[u], entries of row i in the order of u; taps folded onto the
// same source (reflect/circular near the edges) are merged in that order. With `transpose`, V^T.
// O(n L) time and memory: no dense n x n matrix, no sort.
template <class T>
inline Csr csr_correlation(const T* k, i64 L, i64 n, int boundary, bool transpose) {
  Csr c;
  c.rows = c.cols = n;
  c.start.assign(n + 1, 0);
  c.index.reserve(static_cast<size_t>(n * L));
  c.value.reserve(static_cast<size_t>(n * L));
  const i64 half = L / 2;
  for (i64 i = 0; i < n; ++i) {
    const i64 row_start = static_cast<i64>(c.index.size());
    const bool interior = i - half >= 0 && i + half < n;  // every tap on its own source: no merging
    for (i64 u = 0; u < L; ++u) {
      const i64 s = source_index(i + u - half, n, boundary);
      if (s < 0 || k[u] == T(0)) continue;
      i64 found = -1;
      if (!interior)
        for (i64 e = row_start; e < static_cast<i64>(c.index.size()); ++e)
          if (c.index[e] == s) found = e;
      if (found >= 0) {
        c.value[found] += static_cast<double>(k[u]);
      } else {
        c.index.push_back(s);
        c.value.push_back(static_cast<double>(k[u]));
      }
    }
    c.start[i + 1] = static_cast<i64>(c.index.size());
  }
  return transpose ? csr_transpose(c) : c;
}

// Column block of the register-blocked loops: accumulators stay in vector registers.
constexpr i64 kBlockCols = 32;

// out[0:w] = sum_e value[e] * in_rows[index[e]][0:w] for CSR row r (rows of length `stride`),
// summed in the order of e for every column. Whole-row axpys: each input row is read sequentially,
// which the hardware prefetchers stream well when the image is not in cache.
template <class T>
DS_INLINE void combine_rows(const Csr& m, i64 r, const T* in, i64 stride, i64 w, T* out) {
  T* __restrict dst = out;
  for (i64 j = 0; j < w; ++j) dst[j] = T(0);
  i64 e = m.start[r];
  const i64 end = m.start[r + 1];
  for (; e + 4 <= end; e += 4) {  // four rows per sweep, same left-to-right order: fewer dst loads/stores
    const T a0 = static_cast<T>(m.value[e]), a1 = static_cast<T>(m.value[e + 1]);
    const T a2 = static_cast<T>(m.value[e + 2]), a3 = static_cast<T>(m.value[e + 3]);
    const T* __restrict s0 = in + m.index[e] * stride;
    const T* __restrict s1 = in + m.index[e + 1] * stride;
    const T* __restrict s2 = in + m.index[e + 2] * stride;
    const T* __restrict s3 = in + m.index[e + 3] * stride;
    for (i64 j = 0; j < w; ++j) dst[j] = (((dst[j] + a0 * s0[j]) + a1 * s1[j]) + a2 * s2[j]) + a3 * s3[j];
  }
  for (; e < end; ++e) {
    const T a = static_cast<T>(m.value[e]);
    const T* __restrict src = in + m.index[e] * stride;
    for (i64 j = 0; j < w; ++j) dst[j] += a * src[j];
  }
}

inline i64 round_up_block(i64 n) { return (n + kBlockCols - 1) / kBlockCols * kBlockCols; }

// out[j] = sum_{v < L} k[v] * row[j + v] for j < n, n a multiple of kBlockCols (valid correlation;
// row holds n + L - 1 values), summed in the order of v; the accumulators stay in registers.
template <class T>
DS_INLINE void correlate_blocks(const T* row, const T* k, i64 L, i64 n, T* out) {
  for (i64 j0 = 0; j0 < n; j0 += kBlockCols) {
    T acc[kBlockCols] = {};
    for (i64 v = 0; v < L; ++v) {
      const T a = k[v];
      const T* __restrict src = row + j0 + v;
      for (i64 j = 0; j < kBlockCols; ++j) acc[j] += a * src[j];
    }
    for (i64 j = 0; j < kBlockCols; ++j) out[j0 + j] = acc[j];
  }
}

// ----------------------------------------------------------------------------- random numbers
// Branch-free float math for Box-Muller, so the loops below auto-vectorise (libm calls do not).
// ln(x) for x in [2^-24, 1]: x = m 2^e with m in [sqrt(1/2), sqrt(2)), ln m = 2 atanh(s), s = (m-1)/(m+1).
DS_INLINE float log_unit(float x) {
  u32 bits;
  std::memcpy(&bits, &x, 4);
  const int mant = static_cast<int>(bits & 0x007FFFFFu);
  const int big = ((0x3504F3 - mant) >> 31) & 1;  // mantissa > sqrt(2): integer select, no branch
  const int e = static_cast<int>(bits >> 23) - 127 + big;
  const u32 mbits = static_cast<u32>(mant) | (static_cast<u32>(127 - big) << 23);
  float m;  // in [sqrt(1/2), sqrt(2))
  std::memcpy(&m, &mbits, 4);
  const float s = (m - 1.0f) / (m + 1.0f), s2 = s * s;
  const float p = s * (2.0f + s2 * (0.666666667f + s2 * (0.4f + s2 * (0.285714286f + s2 * 0.222222222f))));
  return static_cast<float>(e) * 0.693147181f + p;
}

// (cos 2πu, sin 2πu) for u in [0, 1): quarter-turn reduction, then Taylor polynomials on [-π/4, π/4].
DS_INLINE void sincos_turn(float u, float& c, float& s) {
  const float v = u - static_cast<float>(static_cast<int>(2.0f * u));  // [-1/2, 1/2), branch-free
  const int q = static_cast<int>(4.0f * v + 2.5f) - 2;            // nearest quarter, -2..2
  const float t = 6.28318531f * (v - 0.25f * static_cast<float>(q));  // [-π/4, π/4]
  const float t2 = t * t;
  const float sn = t * (1.0f - t2 * (1.0f / 6) * (1.0f - t2 * (1.0f / 20) * (1.0f - t2 * (1.0f / 42) * (1.0f - t2 * (1.0f / 72)))));
  const float cs = 1.0f - t2 * 0.5f * (1.0f - t2 * (1.0f / 12) * (1.0f - t2 * (1.0f / 30) * (1.0f - t2 * (1.0f / 56) * (1.0f - t2 * (1.0f / 90)))));
  const int k = q & 3;  // rotate by k quarter turns: (cs, sn), (-sn, cs), (-cs, -sn), (sn, -cs)
  const float odd = static_cast<float>(k & 1);
  const float sign_c = 1.0f - 2.0f * static_cast<float>(((k + 1) >> 1) & 1);  // - for k = 1, 2
  const float sign_s = 1.0f - 2.0f * static_cast<float>(k >> 1);              // - for k = 2, 3
  c = sign_c * (odd * sn + (1.0f - odd) * cs);
  s = sign_s * (odd * cs + (1.0f - odd) * sn);
}

// Normals for counter blocks b0 .. b0+nb-1 (nb <= kGroup): Philox(counter = (block_lo, block_hi, 0, 0),
// key = (seed_lo, seed_hi)) gives 4 words; (w0, w1) and (w2, w3) make two Box-Muller pairs with
// u1 = (w>>8 + 1) 2^-24 in (0, 1] and u2 = (w>>8) 2^-24 in [0, 1). Element 4*block + j of the stream
// is z[j][block - b0], z = (r1 cos, r1 sin, r2 cos, r2 sin). Computed in float32 (|z| <= 5.9).
constexpr int kGroup = 256;
DS_INLINE void normal_blocks(u64 seed, u64 b0, int nb, float z[4][kGroup]) {
  u32 c0[kGroup], c1[kGroup], c2[kGroup], c3[kGroup];
  for (int k = 0; k < nb; ++k) {
    const u64 block = b0 + static_cast<u64>(k);
    c0[k] = static_cast<u32>(block);
    c1[k] = static_cast<u32>(block >> 32);
    c2[k] = 0u;
    c3[k] = 0u;
  }
  u32 k0 = static_cast<u32>(seed), k1 = static_cast<u32>(seed >> 32);
  for (int round = 0; round < 10; ++round) {  // Philox4x32-10 (Salmon et al., SC'11)
    for (int k = 0; k < nb; ++k) {
      const u64 p0 = static_cast<u64>(0xD2511F53u) * c0[k];
      const u64 p1 = static_cast<u64>(0xCD9E8D57u) * c2[k];
      const u32 n0 = static_cast<u32>(p1 >> 32) ^ c1[k] ^ k0;
      const u32 n2 = static_cast<u32>(p0 >> 32) ^ c3[k] ^ k1;
      c1[k] = static_cast<u32>(p1);
      c3[k] = static_cast<u32>(p0);
      c0[k] = n0;
      c2[k] = n2;
    }
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  const float scale = 5.9604644775390625e-08f;  // 2^-24
  for (int k = 0; k < nb; ++k) {
    const float u1 = static_cast<float>(static_cast<int>(c0[k] >> 8) + 1) * scale;
    const float u2 = static_cast<float>(static_cast<int>(c1[k] >> 8)) * scale;
    const float u3 = static_cast<float>(static_cast<int>(c2[k] >> 8) + 1) * scale;
    const float u4 = static_cast<float>(static_cast<int>(c3[k] >> 8)) * scale;
    const float r1 = std::sqrt(-2.0f * log_unit(u1)), r2 = std::sqrt(-2.0f * log_unit(u3));
    float cs1, sn1, cs2, sn2;
    sincos_turn(u2, cs1, sn1);
    sincos_turn(u4, cs2, sn2);
    z[0][k] = r1 * cs1;
    z[1][k] = r1 * sn1;
    z[2][k] = r2 * cs2;
    z[3][k] = r2 * sn2;
  }
}

// out[i] = element (start + i) mod 2^64 of the stream for `seed`, i < count: the counter wraps as the torch and Triton
// streams' do (a `stop = start + count` bound wrapped past 2^64 and left out[] unwritten).
template <class T>
DS_INLINE void fill_normal(T* out, u64 start, i64 count, u64 seed) {
  alignas(64) float z[4][kGroup];
  constexpr u64 kBlocks = u64(1) << 62;  // blocks of 4 elements in one turn of the counter
  for (i64 i = 0; i < count;) {
    const u64 n = start + static_cast<u64>(i);  // wraps mod 2^64
    const u64 b0 = n >> 2, head = n & 3;
    const u64 need = (static_cast<u64>(count - i) + head + 3) / 4;  // blocks covering the rest
    const int nb = static_cast<int>(std::min<u64>(std::min<u64>(kGroup, kBlocks - b0), need));
    normal_blocks(seed, b0, nb, z);
    const i64 len = std::min<i64>(static_cast<i64>(4 * static_cast<u64>(nb) - head), count - i);
    T* __restrict dst = out + i;  // element j is lane (head + j) & 3 of block (head + j) >> 2 of these nb
    i64 j = 0;
    for (; j < len && ((head + static_cast<u64>(j)) & 3); ++j) {
      const u64 m = head + static_cast<u64>(j);
      dst[j] = static_cast<T>(z[m & 3][m >> 2]);
    }
    const i64 k0 = static_cast<i64>((head + static_cast<u64>(j)) >> 2), full = (len - j) / 4;
    T* __restrict whole = dst + j;  // whole blocks: four lanes each, a transposed copy
    for (i64 k = 0; k < full; ++k)
      for (int lane = 0; lane < 4; ++lane) whole[4 * k + lane] = static_cast<T>(z[lane][k0 + k]);
    for (j += 4 * full; j < len; ++j) {
      const u64 m = head + static_cast<u64>(j);
      dst[j] = static_cast<T>(z[m & 3][m >> 2]);
    }
    i += len;
  }
}

DS_MULTIVERSION(fill_normal, (T * out, u64 start, i64 count, u64 seed), (out, start, count, seed))

}  // namespace ds
