// Forward normalisation, one element-wise formula with four per-channel coefficients:
//   y = ((x - hi) - lo) * scale + shift, then max(y, 0) when relu
// Training:  mean, var = channel moments of x, invStd = 1/sqrt(var + eps),
//            hi + lo = mean split in two T (x - mean keeps its precision at 1e4 +- 1),
//            scale = gamma * invStd, shift = beta.
// Inference: hi = runningMean, lo = 0, scale = gamma / sqrt(runningVar + eps), shift = beta.
// Not x * scale + (beta - mean * scale): in float that loses everything for a mean of 1e7.
// A channel with a non-finite mean, scale or shift (+-Inf or NaN in x or the parameters), and a
// float channel whose scale is not a normal float (gamma ~ 1e37: it overflows while y does not),
// is computed as (x - mean) * scale + beta in double instead (normalizeChannel, blocking.h's
// plainChannel); the other channels are untouched.
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

// The vector formula's coefficients for a channel computed by normalizeChannel: they give y = x
// exactly (-0 included), so that pass can read y whether or not it is x.
template <typename T>
Coefficients<T> identity() {
  return {{T(0), T(0), T(1), T(-0.0)}};
}

// y = (x - mean) * scale + shift over channel c, in double (the reference's formula), then relu.
// Per element read then write: src may be y.
template <typename T>
void normalizeChannel(const T* src, const Plan& plan, int64_t c, double mean, double scale, double shift,
                      bool relu, T* y) {
  forEachOfChannel(plan.g, c, [&](int64_t i) {
    const double v = (static_cast<double>(src[i]) - mean) * scale + shift;
    y[i] = static_cast<T>(relu && v < 0 ? 0 : v);
  });
}

// After normalizeAll without relu (the identity for the wide channels): the wide channels by
// normalizeChannel from y, and relu over the others (max(y, 0) of the rounded y: the same bits as
// the vector path's relu).
template <typename T>
void finishWide(const Plan& plan, const bool* wide, const double* mean, const double* scale, const T* beta,
                bool relu, T* y) {
  const Geometry& g = plan.g;
  parallelFor(g.channels, g.elements(), [&](int64_t c) {
    if (wide[c]) {
      normalizeChannel(y, plan, c, mean[c], scale[c], beta ? static_cast<double>(beta[c]) : 0.0, relu, y);
    } else if (relu) {
      forEachOfChannel(g, c, [&](int64_t i) {
        if (y[i] < 0) y[i] = 0;
      });
    }
  });
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
  double *batchMean, *batchVar, *scale, *partials;
  bool* wide;
  T* columns[4];
  const auto scratchLayout = [&](Carver& s) {
    s.take(m, channels);
    s.take(coef, channels);
    s.take(batchMean, channels);
    s.take(batchVar, channels);
    s.take(scale, channels);
    s.take(wide, channels);
    s.take(partials, momentPartials(plan));
    takeColumns(s, plan, columns);
  };
  if (!carveScratch(scratchLayout)) return false;  // out of memory: nothing written
  auto finish = [&](int64_t c) {
    const double shift = beta ? static_cast<double>(beta[c]) : 0.0;
    const double var = m[c].m2 / m[c].n, inv = 1 / __builtin_sqrt(var + eps);
    batchMean[c] = m[c].mean;
    batchVar[c] = var;
    mean[c] = static_cast<T>(m[c].mean);
    invStd[c] = static_cast<T>(inv);
    scale[c] = (gamma ? static_cast<double>(gamma[c]) : 1.0) * inv;
    wide[c] = plainChannel<T>({}, {m[c].mean, shift}, {scale[c]});
    coef[c] = wide[c] ? identity<T>() : normalization(m[c].mean, scale[c], beta, c);
  };
  if (!plan.rows && plan.fused) {
    // One task per channel: its statistics, then its y while the channel is still in cache.
    const bool stream = streams<T>(plan);
    const int64_t blocks = plan.blocksPerChannel;
    withFlag(relu, [&](auto useRelu) {
      const Normalize<T, decltype(useRelu)::value> op{x};
      parallelFor(channels, g.elements(), [&](int64_t c) {
        Moments mc{};
        for (int64_t b = 0; b < blocks; b++) merge(mc, blockMoments(x, plan, c, b));
        m[c] = finiteOrPlain(x, g, c, mc);
        finish(c);
        if (wide[c]) {
          normalizeChannel(x, plan, c, m[c].mean, scale[c], beta ? static_cast<double>(beta[c]) : 0.0, relu, y);
          return;
        }
        // Backwards: the blocks read last are the ones still in L2.
        for (int64_t b = blocks - 1; b >= 0; b--) applyBlock(y, plan, c, b, coef[c], stream, op);
      });
    });
  } else {
    channelMomentsOf(x, plan, m, partials);
    bool anyWide = false;
    for (int64_t c = 0; c < channels; c++) {
      finish(c);
      anyWide = anyWide || wide[c];
    }
    normalizeAll(x, plan, coef, relu && !anyWide, y, columns);
    if (anyWide) finishWide(plan, wide, batchMean, scale, beta, relu, y);
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
  double *mean, *scale;
  bool* wide;
  T* columns[4];
  const auto scratchLayout = [&](Carver& s) {
    s.take(coef, g.channels);
    s.take(mean, g.channels);
    s.take(scale, g.channels);
    s.take(wide, g.channels);
    takeColumns(s, plan, columns);
  };
  if (!carveScratch(scratchLayout)) return;  // out of memory: nothing written
  bool anyWide = false;
  for (int64_t c = 0; c < g.channels; c++) {
    mean[c] = static_cast<double>(runningMean[c]);
    scale[c] = (gamma ? static_cast<double>(gamma[c]) : 1.0) /
               __builtin_sqrt(static_cast<double>(runningVar[c]) + eps);
    wide[c] = plainChannel<T>({}, {mean[c], beta ? static_cast<double>(beta[c]) : 0.0}, {scale[c]});
    anyWide = anyWide || wide[c];
    coef[c] = wide[c] ? identity<T>() : normalization(mean[c], scale[c], beta, c);
  }
  normalizeAll(x, plan, coef, relu && !anyWide, y, columns);
  if (anyWide) finishWide(plan, wide, mean, scale, beta, relu, y);
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
