// The descriptor's phases (norm.h) on this ISA's kernels (phases.h); compiled once per ISA and
// called by sn_execute (core.cpp) after sn_prepare has checked the descriptor.
#include "norm.h"
#include "parallel.h"
#include "phases.h"

namespace simdnorm {
namespace SIMDNORM_ISA {

namespace {

// Whether the kernels of phases.h compute this descriptor: one sample, γ/β by the statistic.
bool channelsShaped(const sn_norm& n) {
  return n.samples == 1 && (n.stats == 0 || (n.affineGroups == n.stats && n.affineSize == 1));
}

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
    case SN_PHASE_TRAIN:
      result = SIMDNORM_ISA::trainForward<T>(tensor<T>(n, SN_SLOT_X), g, tensor<T>(n, SN_SLOT_GAMMA), tensor<T>(n, SN_SLOT_BETA),
                               n.eps, relu, tensor<T>(n, SN_SLOT_Y), tensor<T>(n, SN_SLOT_MEAN),
                               tensor<T>(n, SN_SLOT_INV_STD), tensor<T>(n, SN_SLOT_RUNNING_MEAN),
                               tensor<T>(n, SN_SLOT_RUNNING_VAR), update);
      break;
    case SN_PHASE_INFER:
      SIMDNORM_ISA::inferForward<T>(tensor<T>(n, SN_SLOT_X), g, tensor<T>(n, SN_SLOT_RUNNING_MEAN), tensor<T>(n, SN_SLOT_RUNNING_VAR),
                      tensor<T>(n, SN_SLOT_GAMMA), tensor<T>(n, SN_SLOT_BETA), n.eps, relu, tensor<T>(n, SN_SLOT_Y));
      break;
    case SN_PHASE_BACKWARD:
      SIMDNORM_ISA::backward<T>(tensor<T>(n, SN_SLOT_DY), tensor<T>(n, SN_SLOT_X), g, tensor<T>(n, SN_SLOT_MEAN),
                  tensor<T>(n, SN_SLOT_INV_STD), tensor<T>(n, SN_SLOT_GAMMA), relu ? tensor<T>(n, SN_SLOT_Y) : nullptr,
                  (n.flags & SN_FLAG_TRAINING) != 0, tensor<T>(n, SN_SLOT_DX), tensor<T>(n, SN_SLOT_DGAMMA),
                  tensor<T>(n, SN_SLOT_DBETA));
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

}  // namespace

int32_t execute(const sn_norm& n) {
  if (!channelsShaped(n)) return snError(SN_ERROR_UNSUPPORTED, 0);
  return n.dtype == SN_DTYPE_F32 ? run<float>(n) : run<double>(n);
}

}  // namespace SIMDNORM_ISA
}  // namespace simdnorm
