// The descriptor's phases (norm.h) on this ISA's kernels; compiled once per ISA and called by
// sn_execute (core.cpp) after sn_prepare has checked the descriptor. Routing:
//  1. channels-shaped (one sample, γ/β one per statistic, no rms: BatchNorm): the BatchNorm
//     kernels of phases.h, as they are (run); the only route of flag renorm (sn_prepare);
//  2. γ/β one per statistic otherwise (samples > 1: InstanceNorm, ghost BatchNorm; or
//     affineGroups != stats), no rms: the same kernels sample by sample (runPerSample), γ/β tiled
//     to the statistics, the running update once from the double statistics (trainForward's
//     batchMeanOut/batchVarOut, no pass of its own) averaged over samples,
//     dgamma/dbeta summed over samples and tiles in a fixed order;
//  3. everything else (γ/β varying inside a statistic: LayerNorm, GroupNorm; every rms
//     descriptor) and backward's halves for SyncBatchNorm (flags sumsOnly, givenSums): the
//     general kernel (general.h).
// The update phase alone needs no kernel of x: one sample goes to phases.h's update as it is,
// several to the general kernel's update averaged over samples.
#include <cstdlib>
#include <new>

#include "general.h"
#include "norm.h"
#include "parallel.h"
#include "phases.h"
#include "scratch.h"

namespace simdnorm {
namespace SIMDNORM_ISA {

namespace {

// Whether the kernels of phases.h compute this descriptor: one sample, γ/β by the statistic.
bool channelsShaped(const sn_norm& n) {
  return n.samples == 1 && (n.flags & SN_FLAG_RMS) == 0 &&
         (n.stats == 0 || (n.affineGroups == n.stats && n.affineSize == 1));
}

// Whether phases.h's kernels compute it sample by sample: γ/β one per statistic, no rms.
bool perStatistic(const sn_norm& n) { return n.affineSize == 1 && (n.flags & SN_FLAG_RMS) == 0; }

template <typename T>
T* tensor(const sn_norm& n, int slot) {
  return static_cast<T*>(n.tensor[slot]);
}

template <typename T>
int32_t run(const sn_norm& n) {
  const Geometry g{n.outer, n.stats, n.inner};
  const bool relu = (n.flags & SN_FLAG_RELU) != 0;
  const RunningUpdate update{n.factor, n.varScale, (n.flags & SN_FLAG_SKIP_NON_FINITE) != 0};
  int32_t result = 0;
  switch (n.phase) {
    case SN_PHASE_MOMENTS:
      SIMDNORM_ISA::channelMoments<T>(tensor<T>(n, SN_SLOT_X), g, tensor<T>(n, SN_SLOT_MEAN), tensor<T>(n, SN_SLOT_VARIANCE));
      break;
    case SN_PHASE_TRAIN: {
      // Batch Renormalization (flag renorm; sn_prepare routes it only here): r/d from the running stats.
      const Renorm<T> renorm{n.rmax, n.dmax, tensor<T>(n, SN_SLOT_RUNNING_MEAN), tensor<T>(n, SN_SLOT_RUNNING_VAR),
                             tensor<T>(n, SN_SLOT_R), tensor<T>(n, SN_SLOT_D)};
      result = SIMDNORM_ISA::trainForward<T>(tensor<T>(n, SN_SLOT_X), g, tensor<T>(n, SN_SLOT_GAMMA), tensor<T>(n, SN_SLOT_BETA),
                               n.eps, relu, tensor<T>(n, SN_SLOT_Y), tensor<T>(n, SN_SLOT_MEAN),
                               tensor<T>(n, SN_SLOT_INV_STD), tensor<T>(n, SN_SLOT_RUNNING_MEAN),
                               tensor<T>(n, SN_SLOT_RUNNING_VAR), update, nullptr, nullptr,
                               (n.flags & SN_FLAG_RENORM) != 0 ? &renorm : nullptr, tensor<T>(n, SN_SLOT_RESIDUAL));
      break;
    }
    case SN_PHASE_INFER:
      SIMDNORM_ISA::inferForward<T>(tensor<T>(n, SN_SLOT_X), g, tensor<T>(n, SN_SLOT_RUNNING_MEAN), tensor<T>(n, SN_SLOT_RUNNING_VAR),
                      tensor<T>(n, SN_SLOT_GAMMA), tensor<T>(n, SN_SLOT_BETA), n.eps, relu, tensor<T>(n, SN_SLOT_Y),
                      tensor<T>(n, SN_SLOT_RESIDUAL));
      break;
    case SN_PHASE_BACKWARD:
      SIMDNORM_ISA::backward<T>(tensor<T>(n, SN_SLOT_DY), tensor<T>(n, SN_SLOT_X), g, tensor<T>(n, SN_SLOT_MEAN),
                  tensor<T>(n, SN_SLOT_INV_STD), tensor<T>(n, SN_SLOT_GAMMA), relu ? tensor<T>(n, SN_SLOT_Y) : nullptr,
                  (n.flags & SN_FLAG_TRAINING) != 0, tensor<T>(n, SN_SLOT_DX), tensor<T>(n, SN_SLOT_DGAMMA),
                  tensor<T>(n, SN_SLOT_DBETA), tensor<T>(n, SN_SLOT_DZ));
      break;
    case SN_PHASE_UPDATE: {
      // The batch variance in double, as the training forward hands it over.
      const T* variance = tensor<T>(n, SN_SLOT_VARIANCE);
      const double* wide;
      if constexpr (sizeof(T) == sizeof(double)) {
        wide = variance;
      } else {
        double* widened = static_cast<double*>(scratch(static_cast<size_t>(n.stats) * sizeof(double) + 8));
        if (widened == nullptr) break;
        for (int64_t c = 0; c < n.stats; c++) widened[c] = variance[c];
        wide = widened;
      }
      result = SIMDNORM_ISA::updateRunning<T, T>(tensor<T>(n, SN_SLOT_RUNNING_MEAN), tensor<T>(n, SN_SLOT_RUNNING_VAR),
                                   tensor<T>(n, SN_SLOT_MEAN), wide, n.stats, n.factor, n.varScale,
                                   update.skipNonFinite);
      break;
    }
    default:
      return snError(SN_ERROR_UNSUPPORTED, 0);
  }
  return scratchFailed() ? snError(SN_ERROR_NO_MEMORY, 0) : result;
}

// Memory of the per-sample route that lives across the kernels' calls (each carves the thread's
// scratch() anew, so it cannot be there): per thread, grown as needed and kept.
struct SideMemory {
  void* p = nullptr;
  size_t bytes = 0;
  ~SideMemory() { std::free(p); }
};

void* sideMemory(size_t bytes) {
  static thread_local SideMemory m;
  if (bytes < 64) bytes = 64;
  if (bytes <= m.bytes) return m.p;
  void* p = std::malloc(bytes);
  if (p == nullptr) return nullptr;
  std::free(m.p);
  m.p = p;
  m.bytes = bytes;
  return p;
}

// carveScratch (scratch.h) in sideMemory.
template <typename Layout>
bool carveSide(Layout layout) {
  Carver sizing{nullptr, 0};
  layout(sizing);
  Carver carver{static_cast<char*>(sideMemory(sizing.used)), 0};
  if (carver.base == nullptr) return false;
  layout(carver);
  return true;
}

// Route 2: phases.h's kernels sample by sample (sample i: x + i * slice, statistics + i * stats).
// Memory is taken before anything is written; the kernels' scratch is the same for every sample
// (same geometry), so only the first sample's call can fail, before anything is written.
template <typename T>
int32_t runPerSample(const sn_norm& n) {
  const int64_t samples = n.samples, stats = n.stats, groups = n.affineGroups;
  const int64_t slice = n.outer * stats * n.inner, K = samples * stats, M = n.outer * n.inner;
  const Geometry g{n.outer, stats, n.inner};
  const bool relu = (n.flags & SN_FLAG_RELU) != 0;
  const bool tile = groups != stats;
  const T* gamma = tensor<T>(n, SN_SLOT_GAMMA);
  const T* beta = tensor<T>(n, SN_SLOT_BETA);
  const bool running = n.phase == SN_PHASE_TRAIN && tensor<T>(n, SN_SLOT_RUNNING_MEAN) != nullptr && K * M > 0;
  const bool grad = n.phase == SN_PHASE_BACKWARD;
  T *gammaTiled, *betaTiled, *dgammaSample, *dbetaSample;
  double *batchMean, *batchVar, *work, *sumGamma, *sumBeta;
  const auto layout = [&](Carver& s) {
    s.take(gammaTiled, tile && gamma ? stats : 0);
    s.take(betaTiled, tile && beta ? stats : 0);
    s.take(dgammaSample, grad ? stats : 0);
    s.take(dbetaSample, grad ? stats : 0);
    s.take(sumGamma, grad ? groups : 0);
    s.take(sumBeta, grad ? groups : 0);
    s.take(batchMean, running ? K : 0);
    s.take(batchVar, running ? K : 0);
    s.take(work, running ? 2 * stats : 0);
  };
  if (!carveSide(layout)) return snError(SN_ERROR_NO_MEMORY, 0);
  if (tile) {
    for (int64_t s = 0; s < stats; s++) {
      if (gamma) gammaTiled[s] = gamma[s % groups];
      if (beta) betaTiled[s] = beta[s % groups];
    }
    gamma = gamma ? gammaTiled : nullptr;
    beta = beta ? betaTiled : nullptr;
  }
  const T* x = tensor<T>(n, SN_SLOT_X);
  T* mean = tensor<T>(n, SN_SLOT_MEAN);
  T* invStd = tensor<T>(n, SN_SLOT_INV_STD);
  T* y = tensor<T>(n, SN_SLOT_Y);
  const T* residual = tensor<T>(n, SN_SLOT_RESIDUAL);  // flag residual: sample i at + i * slice, as x
  T* dz = tensor<T>(n, SN_SLOT_DZ);
  const RunningUpdate none{n.factor, n.varScale, false};
  if (grad) {
    for (int64_t a = 0; a < groups; a++) sumGamma[a] = sumBeta[a] = 0;
  }
  for (int64_t i = 0; i < samples; i++) {
    const int64_t at = i * slice, st = i * stats;
    switch (n.phase) {
      case SN_PHASE_MOMENTS:
        SIMDNORM_ISA::channelMoments<T>(x + at, g, mean + st, tensor<T>(n, SN_SLOT_VARIANCE) + st);
        break;
      case SN_PHASE_TRAIN:
        SIMDNORM_ISA::trainForward<T>(x + at, g, gamma, beta, n.eps, relu, y + at, mean + st, invStd + st, nullptr,
                                      nullptr, none, running ? batchMean + st : nullptr,
                                      running ? batchVar + st : nullptr, nullptr, residual ? residual + at : nullptr);
        break;
      case SN_PHASE_INFER:
        SIMDNORM_ISA::inferForward<T>(x + at, g, tensor<T>(n, SN_SLOT_RUNNING_MEAN), tensor<T>(n, SN_SLOT_RUNNING_VAR),
                                      gamma, beta, n.eps, relu, y + at, residual ? residual + at : nullptr);
        break;
      case SN_PHASE_BACKWARD:
        SIMDNORM_ISA::backward<T>(tensor<T>(n, SN_SLOT_DY) + at, x + at, g, mean + st, invStd + st, gamma,
                                  relu && y ? y + at : nullptr, (n.flags & SN_FLAG_TRAINING) != 0,
                                  tensor<T>(n, SN_SLOT_DX) + at, dgammaSample, dbetaSample, dz ? dz + at : nullptr);
        for (int64_t s = 0; s < stats; s++) {
          sumGamma[s % groups] += static_cast<double>(dgammaSample[s]);
          sumBeta[s % groups] += static_cast<double>(dbetaSample[s]);
        }
        break;
      default:
        return snError(SN_ERROR_UNSUPPORTED, 0);
    }
    if (scratchFailed()) return snError(SN_ERROR_NO_MEMORY, 0);
  }
  if (grad) {
    T* dgamma = tensor<T>(n, SN_SLOT_DGAMMA);
    T* dbeta = tensor<T>(n, SN_SLOT_DBETA);
    for (int64_t a = 0; a < groups; a++) {
      dgamma[a] = static_cast<T>(sumGamma[a]);
      dbeta[a] = static_cast<T>(sumBeta[a]);
    }
  }
  // The running update from the statistics in double, as trainForward handed them over (its
  // batchMeanOut/batchVarOut) sample by sample.
  if (running) return updateFromStatistics<T, double>(n, batchMean, batchVar, work) ? 1 : 0;
  return 0;
}

}  // namespace

int32_t execute(const sn_norm& n) {
  const bool f32 = n.dtype == SN_DTYPE_F32;
  if (n.phase == SN_PHASE_UPDATE) {  // no x: by samples alone
    if (n.samples == 1) return f32 ? run<float>(n) : run<double>(n);
    return executeGeneral(n);
  }
  if ((n.flags & (SN_FLAG_GIVEN_SUMS | SN_FLAG_SUMS_ONLY)) != 0) return executeGeneral(n);
  if (channelsShaped(n)) {
    const int32_t result = f32 ? run<float>(n) : run<double>(n);
    if (n.phase == SN_PHASE_BACKWARD && n.stats == 0 && result >= 0) {
      // No statistic: dgamma/dbeta (affineGroups * affineSize entries) are 0, as js.ts.
      for (int64_t a = 0; a < n.affineGroups * n.affineSize; a++) {
        if (f32) tensor<float>(n, SN_SLOT_DGAMMA)[a] = tensor<float>(n, SN_SLOT_DBETA)[a] = 0;
        else tensor<double>(n, SN_SLOT_DGAMMA)[a] = tensor<double>(n, SN_SLOT_DBETA)[a] = 0;
      }
    }
    return result;
  }
  if (perStatistic(n)) return f32 ? runPerSample<float>(n) : runPerSample<double>(n);
  return executeGeneral(n);
}

}  // namespace SIMDNORM_ISA
}  // namespace simdnorm
