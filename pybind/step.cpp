// Fused sampler step and diagonal posterior step: one pass over the pixels, noise made in-kernel.
//
// Work is split into fixed chunks of kChunk elements of one sample, so every element is computed by
// the same arithmetic whatever the thread count, and the in-kernel noise is element n of the
// Philox stream (common.hpp), n = offset + flat index: reproducible per (seed, offset).
#include "kernels.hpp"

namespace ds {
namespace {

constexpr i64 kChunk = 4096;

template <class T, bool kPrev, bool kGuide, bool kNoise, bool kX0>
void step_chunk(const T* __restrict x, const T* __restrict eps, const T* __restrict prev, const T* __restrict g,
                const T* __restrict z, const T* c, T* __restrict xs, T* __restrict x0, i64 len) {
  const T gamma = c[0], c_x = c[1], c_e = c[2], c_g = c[3], c_z = c[4], d_x = c[5], d_e = c[6], d_g = c[7];
  const T one_minus = T(1) - gamma;
  for (i64 i = 0; i < len; ++i) {
    T e = eps[i];
    if (kPrev) e = gamma * eps[i] + one_minus * prev[i];
    T v = c_x * x[i] + c_e * e;
    if (kGuide) v += c_g * g[i];
    if (kNoise) v += c_z * z[i];
    xs[i] = v;
    if (kX0) {
      T u = d_x * x[i] + d_e * e;
      if (kGuide) u += d_g * g[i];
      x0[i] = u;
    }
  }
}

template <class T, bool kPrev, bool kGuide, bool kNoise, bool kX0>
void step_all(const T* x, const T* eps, const T* coefs, const T* prev, const T* g, const T* noise, bool has_seed,
              u64 seed, u64 offset, T* xs, T* x0, i64 batch, i64 n, int threads) {
  const i64 chunks = (n + kChunk - 1) / kChunk;
  parallel_for(batch * chunks, threads, (has_seed ? 8 : 4) * kChunk, [&](i64 item) {
    const i64 b = item / chunks, lo = (item % chunks) * kChunk, len = std::min(kChunk, n - lo);
    const i64 at = b * n + lo;
    alignas(64) T buffer[kChunk];
    const T* z = nullptr;
    if (kNoise) {
      if (has_seed) {
        fill_normal_best(buffer, offset + static_cast<u64>(at), len, seed);
        z = buffer;
      } else {
        z = noise + at;
      }
    }
    step_chunk<T, kPrev, kGuide, kNoise, kX0>(x + at, eps + at, kPrev ? prev + at : nullptr,
                                              kGuide ? g + at : nullptr, z, coefs + 8 * b, xs + at,
                                              kX0 ? x0 + at : nullptr, len);
  });
}

}  // namespace

template <class T>
void fused_step(const T* x, const T* eps, const T* coefs, const T* prev, const T* g, const T* noise, bool has_seed,
                u64 seed, u64 offset, T* xs, T* x0, i64 batch, i64 n, int threads) {
  const int key = (prev ? 8 : 0) | (g ? 4 : 0) | ((noise || has_seed) ? 2 : 0) | (x0 ? 1 : 0);
#define DS_STEP_CASE(K)                                                                                     \
  case K:                                                                                                   \
    step_all<T, bool(K & 8), bool(K & 4), bool(K & 2), bool(K & 1)>(x, eps, coefs, prev, g, noise, has_seed, \
                                                                    seed, offset, xs, x0, batch, n, threads); \
    break;
  switch (key) {
    DS_STEP_CASE(0) DS_STEP_CASE(1) DS_STEP_CASE(2) DS_STEP_CASE(3) DS_STEP_CASE(4) DS_STEP_CASE(5)
    DS_STEP_CASE(6) DS_STEP_CASE(7) DS_STEP_CASE(8) DS_STEP_CASE(9) DS_STEP_CASE(10) DS_STEP_CASE(11)
    DS_STEP_CASE(12) DS_STEP_CASE(13) DS_STEP_CASE(14) DS_STEP_CASE(15)
  }
#undef DS_STEP_CASE
}

template <class T>
void diagonal_posterior_step(const T* mean, const T* precision, const T* diag, i64 diag_sb, i64 diag_sc,
                             const T* target, const T* noise_precision, const T* noise1, const T* noise2,
                             bool has_seed, u64 seed, u64 offset, T* out, i64 batch, i64 channels, i64 hw,
                             int threads) {
  const i64 chunks = (hw + kChunk - 1) / kChunk;
  const u64 numel = static_cast<u64>(batch * channels * hw);
  const bool noisy = has_seed || noise1 != nullptr;
  parallel_for(batch * channels * chunks, threads, (has_seed ? 12 : 6) * kChunk, [&](i64 item) {
    const i64 plane = item / chunks, lo = (item % chunks) * kChunk, len = std::min(kChunk, hw - lo);
    const i64 b = plane / channels, ch = plane % channels, at = plane * hw + lo;
    const T c = precision[b], w = noise_precision[b];
    const T sc = std::sqrt(c), sw = std::sqrt(w);
    const T* __restrict d = diag + b * diag_sb + ch * diag_sc + lo;
    const T* __restrict m = mean + at;
    const T* __restrict t = target + at;
    T* __restrict o = out + at;
    alignas(64) T e1[kChunk];
    alignas(64) T e2[kChunk];
    const T* z1 = noise1 ? noise1 + at : e1;
    const T* z2 = noise2 ? noise2 + at : e2;
    if (has_seed) {
      fill_normal_best(e1, offset + static_cast<u64>(at), len, seed);
      fill_normal_best(e2, offset + numel + static_cast<u64>(at), len, seed);
    }
    if (noisy) {
      for (i64 i = 0; i < len; ++i)
        o[i] = (c * m[i] + w * d[i] * t[i] + (sc * z1[i] + sw * d[i] * z2[i])) / (c + w * d[i] * d[i]);
    } else {
      for (i64 i = 0; i < len; ++i) o[i] = (c * m[i] + w * d[i] * t[i]) / (c + w * d[i] * d[i]);
    }
  });
}

#define DS_INSTANTIATE(T)                                                                                      \
  template void fused_step<T>(const T*, const T*, const T*, const T*, const T*, const T*, bool, u64, u64, T*, T*, \
                              i64, i64, int);                                                                 \
  template void diagonal_posterior_step<T>(const T*, const T*, const T*, i64, i64, const T*, const T*, const T*,  \
                                           const T*, bool, u64, u64, T*, i64, i64, i64, int);
DS_INSTANTIATE(float)
DS_INSTANTIATE(double)
#undef DS_INSTANTIATE

}  // namespace ds
