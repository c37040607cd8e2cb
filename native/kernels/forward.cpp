// Forward normalisation, one element-wise formula with four per-channel coefficients:
//   y = ((x - hi) - lo) * scale + shift, then max(y, 0) when relu
// Training:  mean, var = channel moments of x, invStd = 1/sqrt(var + eps),
//            hi + lo = mean split in two T (x - mean keeps its precision at 1e4 +- 1),
//            scale = gamma * invStd, shift = beta.
// Inference: hi = runningMean, lo = 0, scale = gamma / sqrt(runningVar + eps), shift = beta.
// Not x * scale + (beta - mean * scale): in float that loses everything for a mean of 1e7.
#include "blocking.h"

namespace simdnorm {
namespace SIMDNORM_ISA {

namespace {

template <typename T, bool Relu>
struct Normalize {
  const T* x;
  Vec<T> operator()(int64_t offset, int64_t k, const Vec<T>* p) const {
    Vec<T> y = mulAdd((loadLanes(x + offset, k) - p[0]) - p[1], p[2], p[3]);
    return Relu ? relu(y) : y;
  }
};

template <typename T>
Coefficients<T> normalization(double mean, double scale, const T* beta, int64_t c) {
  const T hi = static_cast<T>(mean);
  return {{hi, static_cast<T>(mean - static_cast<double>(hi)), static_cast<T>(scale),
           beta ? beta[c] : T(0)}};
}

template <typename T>
bool streams(const Plan& plan) {
  return plan.g.elements() * static_cast<int64_t>(sizeof(T)) >= kStreamBytes;
}

// y from per-channel coefficients, on the plan's path (columns: rows-path scratch). Last task
// first: after a statistics pass, the end of x is what is still in cache.
template <typename T>
void normalizeAll(const T* x, const Plan& plan, const Coefficients<T>* coef, bool relu, T* y,
                  T* const* columns) {
  const bool stream = streams<T>(plan);
  withFlag(relu, [&](auto useRelu) {
    const Normalize<T, decltype(useRelu)::value> op{x};
    if (plan.rows) {
      spreadToColumns(plan, coef, columns);
      parallelFor(plan.rowTasks(), plan.g.elements(), [&](int64_t t) {
        applyRows(y, plan, plan.rowTasks() - 1 - t, columns, stream, op);
      });
    } else {
      const int64_t last = plan.orderTasks() - 1;
      parallelFor(last + 1, plan.g.elements(),
                  [&](int64_t t) { applyInOrder(y, plan, last - t, coef, stream, op); });
    }
  });
}

template <typename T>
void takeColumns(Carver& s, const Plan& plan, T** columns) {
  for (int q = 0; q < 4; q++) s.take(columns[q], columnEntries(plan, lanes<T>()));
}

}  // namespace

template <typename T>
bool trainForward(const T* x, Geometry g, const T* gamma, const T* beta, double eps, bool relu,
                  T* y, T* mean, T* invStd, T* runningMean, T* runningVar, RunningUpdate update) {
  const int64_t channels = g.channels;
  if (g.elements() == 0) {
    for (int64_t c = 0; c < channels; c++) mean[c] = invStd[c] = static_cast<T>(__builtin_nan(""));
    return false;
  }
  const Plan plan = makePlan<T>(g);
  Moments* m;
  Coefficients<T>* coef;
  double *batchMean, *batchVar, *partials;
  T* columns[4];
  carveScratch([&](Carver& s) {
    s.take(m, channels);
    s.take(coef, channels);
    s.take(batchMean, channels);
    s.take(batchVar, channels);
    s.take(partials, momentPartials(plan));
    takeColumns(s, plan, columns);
  });
  auto finish = [&](int64_t c) {
    const double var = m[c].m2 / m[c].n, inv = 1 / __builtin_sqrt(var + eps);
    batchMean[c] = m[c].mean;
    batchVar[c] = var;
    mean[c] = static_cast<T>(m[c].mean);
    invStd[c] = static_cast<T>(inv);
    coef[c] = normalization(m[c].mean, (gamma ? static_cast<double>(gamma[c]) : 1.0) * inv, beta, c);
  };
  if (!plan.rows && plan.fused) {
    // One task per channel: its statistics, then its y while the channel is still in cache.
    const bool stream = streams<T>(plan);
    const int64_t blocks = plan.blocksPerChannel;
    withFlag(relu, [&](auto useRelu) {
      const Normalize<T, decltype(useRelu)::value> op{x};
      parallelFor(channels, g.elements(), [&](int64_t c) {
        Moments mc{0, 0, 0};
        for (int64_t b = 0; b < blocks; b++) merge(mc, blockMoments(x, plan, c, b));
        m[c] = mc;
        finish(c);
        // Backwards: the blocks read last are the ones still in L2.
        for (int64_t b = blocks - 1; b >= 0; b--) applyBlock(y, plan, c, b, coef[c], stream, op);
      });
    });
  } else {
    channelMomentsOf(x, plan, m, partials);
    for (int64_t c = 0; c < channels; c++) finish(c);
    normalizeAll(x, plan, coef, relu, y, columns);
  }
  if (runningMean == nullptr || runningVar == nullptr) return false;
  return updateRunning(runningMean, runningVar, batchMean, batchVar, channels, update.factor,
                       update.varScale, update.skipNonFinite);
}

template <typename T>
void inferForward(const T* x, Geometry g, const T* runningMean, const T* runningVar,
                  const T* gamma, const T* beta, double eps, bool relu, T* y) {
  if (g.elements() == 0) return;
  const Plan plan = makePlan<T>(g);
  Coefficients<T>* coef;
  T* columns[4];
  carveScratch([&](Carver& s) {
    s.take(coef, g.channels);
    takeColumns(s, plan, columns);
  });
  for (int64_t c = 0; c < g.channels; c++) {
    const double scale = (gamma ? static_cast<double>(gamma[c]) : 1.0) /
                         __builtin_sqrt(static_cast<double>(runningVar[c]) + eps);
    coef[c] = normalization(static_cast<double>(runningMean[c]), scale, beta, c);
  }
  normalizeAll(x, plan, coef, relu, y, columns);
}

#define SIMDNORM_INSTANTIATE(T)                                                                \
  template bool trainForward<T>(const T*, Geometry, const T*, const T*, double, bool, T*, T*, T*, \
                                T*, T*, RunningUpdate);                                        \
  template void inferForward<T>(const T*, Geometry, const T*, const T*, const T*, const T*,     \
                                double, bool, T*);
SIMDNORM_INSTANTIATE(float)
SIMDNORM_INSTANTIATE(double)
#undef SIMDNORM_INSTANTIATE

}  // namespace SIMDNORM_ISA
}  // namespace simdnorm
