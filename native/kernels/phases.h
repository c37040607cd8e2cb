// The kernels of one ISA (namespace simdnorm::SIMDNORM_ISA; see simd.h), one per phase, as
// stats.cpp, forward.cpp, backward.cpp and running.cpp define them for x[outer][channels][inner]
// with the statistics and γ/β both indexed by the channel (README "Numerics" for what each
// computes). entry.cpp maps the descriptor's phases onto them; nothing else calls them.
#pragma once

#include "batchnorm.h"
#include "simd.h"

namespace simdnorm {
namespace SIMDNORM_ISA {

// mean and biased variance per channel (NaN where M == 0).
template <typename T>
void channelMoments(const T* x, Geometry g, T* mean, T* variance);

// Batch Renormalization (flag renorm, README "BatchNorm variants"): per channel, from the batch
// statistics and the running ones as they are before this call's update,
//   r = clip(sqrt(var + eps) / sqrt(runningVar + eps), 1/rmax, rmax),
//   d = clip((mean - runningMean) / sqrt(runningVar + eps), -dmax, dmax),
// written (rounded to T) to r and d, and y normalised with gamma * r for gamma and beta + gamma * d
// for beta (each rounded to T, beta itself where d is 0): rmax 1, dmax 0 is BatchNorm bit for bit.
template <typename T>
struct Renorm {
  double rmax, dmax;
  const T *runningMean, *runningVar;
  T *r, *d;
};

// Statistics, y (relu when asked), and the running update when runningMean/runningVar are given;
// returns whether the running stats were written. residual (flag residual; may be y): y = act(BN(x)
// + residual), the normalised value rounded to T before the add. batchMeanOut/batchVarOut (both or neither; when
// given, `channels` doubles each): the batch mean and biased variance in double as the running
// update takes them (only when g has elements); null changes nothing.
template <typename T>
bool trainForward(const T* x, Geometry g, const T* gamma, const T* beta, double eps, bool relu, T* y, T* mean,
                  T* invStd, T* runningMean, T* runningVar, RunningUpdate update, double* batchMeanOut = nullptr,
                  double* batchVarOut = nullptr, const Renorm<T>* renorm = nullptr,
                  const T* residual = nullptr);

template <typename T>
void inferForward(const T* x, Geometry g, const T* runningMean, const T* runningVar, const T* gamma,
                  const T* beta, double eps, bool relu, T* y, const T* residual = nullptr);

// dz (flag residual; may be dy): the gradient of the residual, g = dy masked by y > 0 when y is
// given, written in the dx pass.
template <typename T>
void backward(const T* dy, const T* x, Geometry g, const T* mean, const T* invStd, const T* gamma, const T* y,
              bool training, T* dx, T* dgamma, T* dbeta, T* dz = nullptr);

// The running update from a batch mean of either type and a double batch variance.
template <typename T, typename Mean>
bool updateRunning(T* runningMean, T* runningVar, const Mean* batchMean, const double* batchVar,
                   int64_t channels, double factor, double varScale, bool skipNonFinite);

}  // namespace SIMDNORM_ISA
}  // namespace simdnorm
