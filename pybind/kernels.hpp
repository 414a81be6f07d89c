// Declarations of the diffsolve CPU kernels (one template per op, instantiated for float and double).
// Shapes follow docs/kernels.md; all buffers are contiguous, `threads` is torch.get_num_threads().
#pragma once

#include "common.hpp"

namespace ds {

// step.cpp: x_s = c_x x + c_e e + c_g g + c_z z, x0 = d_x x + d_e e + d_g g, e = gamma eps + (1-gamma) eps_prev.
// x, eps, eps_prev, guidance, noise, xs, x0: (B, n); coefs (B, 8). Null pointers are absent terms.
template <class T>
void fused_step(const T* x, const T* eps, const T* coefs, const T* eps_prev, const T* guidance, const T* noise,
                bool has_seed, u64 seed, u64 offset, T* xs, T* x0, i64 batch, i64 n, int threads);

// step.cpp: diagonal C-DPS posterior; mean/target/noise (B, C, HW), diag with batch/channel strides
// (0 where broadcast), precision c and noise precision w (B,).
template <class T>
void diagonal_posterior_step(const T* mean, const T* precision, const T* diag, i64 diag_sb, i64 diag_sc,
                             const T* target, const T* noise_precision, const T* noise1, const T* noise2,
                             bool has_seed, u64 seed, u64 offset, T* out, i64 batch, i64 channels, i64 hw,
                             int threads);

// correlate.cpp: images (N, H, W) with N = B*C; taps (du, dv, value) of a (kh, kw) kernel.
template <class T>
void correlate2d(const T* x, const T* kernel, i64 kh, i64 kw, int boundary, bool adjoint, T* out, i64 planes,
                 i64 h, i64 w, int threads);
template <class T>
void separable_correlate2d(const T* x, const T* k_h, i64 lh, const T* k_w, i64 lw, int boundary, bool adjoint,
                           T* out, i64 planes, i64 h, i64 w, int threads);

// resample.cpp: y = M_h x M_w^T (forward, x (N, H, W) -> (N, h, w)) or x = M_h^T y M_w (adjoint).
template <class T>
void resample(const T* in, const T* m_h, const T* m_w, i64 h_out, i64 h_in, i64 w_out, i64 w_in, bool adjoint,
              T* out, i64 planes, int threads);
template <class T>
void avg_pool(const T* in, i64 factor, bool adjoint, T* out, i64 planes, i64 h_small, i64 w_small, int threads);

// cg.cpp
template <class T>
void cg_dots(const T* r, const T* gr, const T* shift, const T* scale, T* dots, i64 batch, i64 n, int threads,
             const T* z = nullptr);
template <class T>
void cg_update(T* x, T* r, T* p, T* s, const T* gr, const T* shift, const T* scale, const T* dots, T* state,
               double tol2, i64 batch, i64 n, int threads, const T* z = nullptr);

}  // namespace ds
