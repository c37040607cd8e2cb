// Backward, with g = dy masked by (y > 0) when the relu's output y is given:
//   dbeta = sum(g),  dgamma = invStd * sum(g * (x - mean))        (one pass, sums in double)
//   training: dx = g * k - (x - mean) * (k * dgamma * invStd / M) - k * dbeta / M,  k = gamma * invStd
//             (= gamma * invStd / M * (M * g - dbeta - xhat * dgamma), xhat = (x - mean) * invStd)
//   eval:     dx = g * k                                             (one more pass)
// A float channel whose k, k * dbeta / M or k * dgamma * invStd / M is not a normal float
// (gamma ~ 1e37, data std above ~1e19: invStd^2 underflows) is computed by the SPEC's formula in
// double instead (gradChannel); the other channels are untouched.
#include "blocking.h"

namespace simdnorm {
namespace SIMDNORM_ISA {

namespace {

// (g, g * (x - mean)) of k elements at offset, in double.
template <typename T, bool Relu>
inline Terms gradTerms(const T* dy, const T* x, const T* y, int64_t offset, int64_t k, VDouble mean) {
  VDouble g = loadDoubleLanes(dy + offset, k);
  if (Relu) g = select(loadDoubleLanes(y + offset, k) > VDouble{}, g, VDouble{});
  return {g, g * (loadDoubleLanes(x + offset, k) - mean)};
}

// dx from the coefficients (mean, k, k * dbeta / M, k * dgamma * invStd / M).
template <typename T, bool Relu, bool Training>
struct InputGrad {
  const T *dy, *x, *y;
  Vec<T> operator()(int64_t offset, int64_t k, const Vec<T>* p) const {
    Vec<T> g = loadLanes(dy + offset, k);
    if (Relu) g = select(loadLanes(y + offset, k) > Vec<T>{}, g, Vec<T>{});
    if (!Training) return g * p[1];
    return mulAdd(g, p[1], -mulAdd(loadLanes(x + offset, k) - p[0], p[3], p[2]));
  }
};

// dx over channel c by the SPEC's formula in double, with g = src masked by (y > 0) when y is
// given. Per element read then write: src may be dx.
template <typename T>
void gradChannel(const T* src, const T* x, const T* y, const Plan& plan, int64_t c, double mean, double inv,
                 double gamma, double dbeta, double dgamma, bool training, T* dx) {
  const Geometry& g = plan.g;
  const double n = static_cast<double>(plan.count), k = gamma * inv / n;
  for (int64_t o = 0; o < g.outer; o++) {
    for (int64_t i = (o * g.channels + c) * g.inner, end = i + g.inner; i < end; i++) {
      const double grad = y && !(y[i] > 0) ? 0.0 : static_cast<double>(src[i]);
      const double xhat = (static_cast<double>(x[i]) - mean) * inv;
      dx[i] = static_cast<T>(training ? k * (n * grad - dbeta - xhat * dgamma) : grad * gamma * inv);
    }
  }
}

struct GradSums {
  double g, gx;  // sum(g), sum(g * (x - mean))
  void operator+=(GradSums o) {
    g += o.g;
    gx += o.gx;
  }
};

}  // namespace

template <typename T>
void backward(const T* dy, const T* x, Geometry g, const T* mean, const T* invStd, const T* gamma,
              const T* y, bool training, T* dx, T* dgamma, T* dbeta) {
  const int64_t channels = g.channels;
  if (g.elements() == 0) {
    for (int64_t c = 0; c < channels; c++) dgamma[c] = dbeta[c] = 0;
    return;
  }
  const Plan plan = makePlan<T>(g);
  const bool stream = g.elements() * static_cast<int64_t>(sizeof(T)) >= kStreamBytes;
  const int64_t blocks = plan.blocksPerChannel, period = plan.period;
  Coefficients<T>* coef;
  GradSums* sums;       // per channel
  bool* wide;           // per channel: computed by gradChannel
  GradSums* blockSums;  // planes path with few channels: per block
  double* rowSums;      // rows path: per row block, sum(g) of each column, then sum(g (x - mean))
  T* columns[4];
  carveScratch([&](Carver& s) {
    s.take(coef, channels);
    s.take(sums, channels);
    s.take(wide, channels);
    s.take(blockSums, !plan.rows && !plan.fused ? channels * blocks : 0);
    s.take(rowSums, plan.rows ? 2 * plan.rowBlocks * period : 0);
    for (int q = 0; q < 4; q++) s.take(columns[q], columnEntries(plan, lanes<T>()));
  });
  auto finish = [&](int64_t c, GradSums s) {
    const double inv = static_cast<double>(invStd[c]), dg = s.gx * inv, n = static_cast<double>(plan.count);
    const double k = (gamma ? static_cast<double>(gamma[c]) : 1.0) * inv;
    dbeta[c] = static_cast<T>(s.g);
    dgamma[c] = static_cast<T>(dg);
    sums[c] = s;
    const double p2 = k * s.g / n, p3 = k * dg * inv / n;
    // Training: only where all three are finite (then x, mean and the sums are); a non-finite one
    // gives the vector formula's non-finite dx. The identity coefficients give dx = g exactly.
    wide[c] = training ? __builtin_isfinite(k) && __builtin_isfinite(p2) && __builtin_isfinite(p3) &&
                             (outsideCoefficientRange<T>(k) || outsideCoefficientRange<T>(p2) ||
                              outsideCoefficientRange<T>(p3))
                       : outsideCoefficientRange<T>(k);
    coef[c] = wide[c] ? Coefficients<T>{{T(0), T(1), T(0), T(0)}}
                      : Coefficients<T>{{mean[c], static_cast<T>(k), static_cast<T>(p2), static_cast<T>(p3)}};
  };
  // A wide channel from src (dy with the mask y, or dx holding g).
  auto wideChannel = [&](int64_t c, const T* src, const T* mask) {
    gradChannel(src, x, mask, plan, c, static_cast<double>(mean[c]), static_cast<double>(invStd[c]),
                gamma ? static_cast<double>(gamma[c]) : 1.0, sums[c].g,
                sums[c].gx * static_cast<double>(invStd[c]), training, dx);
  };
  // After the vector pass (dx = g on the wide channels): the wide channels from dx.
  auto finishWide = [&] {
    bool any = false;
    for (int64_t c = 0; c < channels; c++) any = any || wide[c];
    if (!any) return;
    parallelFor(channels, g.elements(), [&](int64_t c) {
      if (wide[c]) wideChannel(c, dx, nullptr);
    });
  };
  withFlag(y != nullptr, [&](auto relu) {
    constexpr bool Relu = decltype(relu)::value;
    // Planes path: the sums of block b of channel c.
    auto sumBlock = [&](int64_t c, int64_t b) {
      const VDouble mu = splat<VDouble>(static_cast<double>(mean[c]));
      Sums sums;
      plan.forEachSpan(c, b, [&](int64_t start, int64_t length) SIMDNORM_LAMBDA_INLINE {
        accumulate(length, [&](int64_t i, int64_t k) SIMDNORM_LAMBDA_INLINE {
          return gradTerms<T, Relu>(dy, x, y, start + i, k, mu);
        }, sums);
      });
      return GradSums{sums.sumU(), sums.sumV()};
    };
    withFlag(training, [&](auto train) {
      const InputGrad<T, Relu, decltype(train)::value> op{dy, x, y};
      if (plan.rows) {
        plan.forEachColumnFrom(0, period, [&](int64_t p, int64_t c) { columns[0][p] = mean[c]; });
        parallelFor(plan.rowTasks(), g.elements(), [&](int64_t task) {
          double* sums = rowSums + task / plan.tiles * 2 * period;
          auto term = [&](int64_t offset, int64_t column, int64_t k) SIMDNORM_LAMBDA_INLINE {
            return gradTerms<T, Relu>(dy, x, y, offset, k, loadDoubleLanes(columns[0] + column, k));
          };
          if constexpr (sizeof(T) == 4 && kFloatRuns) {
            accumulateRows(plan, task, sums, sums + period, term,
                           [&](int64_t offset, int64_t column) SIMDNORM_LAMBDA_INLINE {
                             VFloat g = load<VFloat>(dy + offset);
                             if (Relu) g = select(load<VFloat>(y + offset) > VFloat{}, g, VFloat{});
                             return FloatTerms{g, g * (load<VFloat>(x + offset) - load<VFloat>(columns[0] + column))};
                           },
                           [](VFloat s1, VFloat s2) SIMDNORM_LAMBDA_INLINE {
                             // Finite, and s2 not small enough that products may have underflowed
                             // (0 with s1 == 0: all of g is 0, exact).
                             const VFloat big = VFloat{} + 0x1.fffffep127f;
                             const VFloat a1 = select(s1 < VFloat{}, -s1, s1), a2 = select(s2 < VFloat{}, -s2, s2);
                             return (VFloatMask)(a1 <= big) & (VFloatMask)(a2 <= big) &
                                    ((VFloatMask)(a2 >= 0x1p-100f) | ((VFloatMask)(s1 == 0) & (VFloatMask)(s2 == 0)));
                           });
          } else {
            accumulateRows(plan, task, sums, sums + period, term);
          }
        });
        parallelFor(channels, g.elements(), [&](int64_t c) {
          GradSums s{0, 0};
          for (int64_t rb = 0; rb < plan.rowBlocks; rb++) {
            const double* sums = rowSums + rb * 2 * period;
            plan.forEachColumnOf(rb, c, [&](int64_t p, int64_t) { s += GradSums{sums[p], sums[period + p]}; });
          }
          finish(c, s);
        });
        spreadToColumns(plan, coef, columns);
        parallelFor(plan.rowTasks(), g.elements(), [&](int64_t t) {
          applyRows(dx, plan, plan.rowTasks() - 1 - t, columns, stream, op);  // cache-warm end first
        });
        finishWide();
      } else if (plan.fused) {
        // One task per channel: its sums, then its dx while dy and x are still in cache.
        parallelFor(channels, g.elements(), [&](int64_t c) {
          GradSums s{0, 0};
          for (int64_t b = 0; b < blocks; b++) s += sumBlock(c, b);
          finish(c, s);
          if (wide[c]) return wideChannel(c, dy, y);
          for (int64_t b = blocks - 1; b >= 0; b--) applyBlock(dx, plan, c, b, coef[c], stream, op);
        });
      } else {
        // Spread the blocks, add them up in the same order, then dx in memory order.
        parallelFor(channels * blocks, g.elements(),
                    [&](int64_t t) { blockSums[t] = sumBlock(t / blocks, t % blocks); });
        for (int64_t c = 0; c < channels; c++) {
          GradSums s{0, 0};
          for (int64_t b = 0; b < blocks; b++) s += blockSums[c * blocks + b];
          finish(c, s);
        }
        const int64_t last = plan.orderTasks() - 1;
        parallelFor(last + 1, g.elements(), [&](int64_t t) { applyInOrder(dx, plan, last - t, coef, stream, op); });
        finishWide();
      }
    });
  });
}

template void backward<float>(const float*, const float*, Geometry, const float*, const float*,
                              const float*, const float*, bool, float*, float*, float*);
template void backward<double>(const double*, const double*, Geometry, const double*, const double*,
                               const double*, const double*, bool, double*, double*, double*);

}  // namespace SIMDNORM_ISA
}  // namespace simdnorm
