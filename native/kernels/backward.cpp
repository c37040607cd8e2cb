// Backward, with g = dy masked by (y > 0) when the relu's output y is given:
//   dbeta = sum(g),  dgamma = invStd * sum(g * (x - mean))        (one pass, sums in double)
//   training: dx = g * k - (x - mean) * (k * dgamma * invStd / M) - k * dbeta / M,  k = gamma * invStd
//             (= gamma * invStd / M * (M * g - dbeta - xhat * dgamma), xhat = (x - mean) * invStd)
//   eval:     dx = g * k                                             (one more pass)
// A channel with a non-finite input (+-Inf or NaN in dy, x, mean, invStd or gamma: its sums are
// then not finite or not IEEE's) gets its sums and dx from the SPEC's formulas in double, as the
// reference computes them (plainSums, gradChannel). So does a channel whose k, k * dbeta / M or
// k * dgamma * invStd / M is not finite or, in float, not a normal float (gamma ~ 1e37, data std
// above ~1e19: invStd^2 underflows). The other channels are untouched.
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
  const double n = static_cast<double>(plan.count), k = gamma * inv / n;
  forEachOfChannel(plan.g, c, [&](int64_t i) {
    const double grad = y && !(y[i] > 0) ? 0.0 : static_cast<double>(src[i]);
    const double xhat = (static_cast<double>(x[i]) - mean) * inv;
    dx[i] = static_cast<T>(training ? k * (n * grad - dbeta - xhat * dgamma) : grad * gamma * inv);
  });
}

struct GradSums {
  double g, gx;  // sum(g), sum(g * (x - mean)); or dbeta, dgamma once finished
  void operator+=(GradSums o) {
    g += o.g;
    gx += o.gx;
  }
};

// dbeta = sum(g) and dgamma = sum(g * (x - mean) * invStd) of channel c as lib/reference.ts's
// backward computes them, g = dy masked by (y > 0) when y is given.
template <typename T>
GradSums plainSums(const T* dy, const T* x, const T* y, const Geometry& g, int64_t c, double mean, double inv) {
  GradSums s{0, 0};
  forEachOfChannel(g, c, [&](int64_t i) {
    const double grad = y && !(y[i] > 0) ? 0.0 : static_cast<double>(dy[i]);
    s.g += grad;
    s.gx += grad * (static_cast<double>(x[i]) - mean) * inv;
  });
  return s;
}

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
  bool* plain;          // per channel: its sums too (plainSums)
  GradSums* blockSums;  // planes path with few channels: per block
  double* rowSums;      // rows path: per row block, sum(g) of each column, then sum(g (x - mean))
  T* columns[4];
  const auto scratchLayout = [&](Carver& s) {
    s.take(coef, channels);
    s.take(sums, channels);
    s.take(wide, channels);
    s.take(plain, channels);
    s.take(blockSums, !plan.rows && !plan.fused ? channels * blocks : 0);
    s.take(rowSums, plan.rows ? 2 * plan.rowBlocks * period : 0);
    for (int q = 0; q < 4; q++) s.take(columns[q], columnEntries(plan, lanes<T>()));
  };
  if (!carveScratch(scratchLayout)) return;  // out of memory: nothing written
  auto finish = [&](int64_t c, GradSums s) {
    const double mu = static_cast<double>(mean[c]), inv = static_cast<double>(invStd[c]);
    const double gam = gamma ? static_cast<double>(gamma[c]) : 1.0, n = static_cast<double>(plan.count);
    GradSums d{s.g, s.gx * inv};  // dbeta, dgamma
    plain[c] = plainChannel<T>({d.g, d.gx, mu, inv, gam}, {}, {});
    if (plain[c]) d = plainSums(dy, x, y, g, c, mu, inv);
    dbeta[c] = static_cast<T>(d.g);
    dgamma[c] = static_cast<T>(d.gx);
    sums[c] = d;
    const double k = gam * inv, p2 = k * d.g / n, p3 = k * d.gx * inv / n;
    wide[c] = plain[c] || (training ? plainChannel<T>({}, {mu, p2}, {k, p3}) : plainChannel<T>({}, {}, {k}));
    // The identity coefficients give dx = g exactly where x is finite (every channel but the plain ones).
    coef[c] = wide[c] ? Coefficients<T>{{T(0), T(1), T(0), T(0)}}
                      : Coefficients<T>{{mean[c], static_cast<T>(k), static_cast<T>(p2), static_cast<T>(p3)}};
  };
  // A wide channel from src (dy with the mask y, or dx holding g).
  auto wideChannel = [&](int64_t c, const T* src, const T* mask) {
    gradChannel(src, x, mask, plan, c, static_cast<double>(mean[c]), static_cast<double>(invStd[c]),
                gamma ? static_cast<double>(gamma[c]) : 1.0, sums[c].g, sums[c].gx, training, dx);
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
  // Before the vector pass of the unfused paths: in training, the identity coefficients turn a
  // non-finite x into NaN, so with a plain channel every channel's dx comes from dy by
  // gradChannel instead (per element read then write, so dx may be dy). Returns whether it did.
  auto allPlain = [&] {
    bool any = false;
    for (int64_t c = 0; c < channels; c++) any = any || plain[c];
    if (!training || !any) return false;
    parallelFor(channels, g.elements(), [&](int64_t c) { wideChannel(c, dy, y); });
    return true;
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
                           [](VFloat s1, VFloat s2, float) SIMDNORM_LAMBDA_INLINE {
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
        if (allPlain()) return;
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
        if (allPlain()) return;
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
