// The general kernel's backward (general_internal.h): statistic by statistic, from given sums,
// the sums alone; LayerNorm-shaped rows go to rows_backward.cpp, the columns path to columns.cpp.
#include "general_internal.h"

namespace simdnorm {
namespace SIMDNORM_ISA {
namespace general {

template <typename T, bool Relu>
void backwardStatistic(const T* dy, const T* x, const T* y, const T* gamma, const Shape& sh, int64_t k, double mu,
                       double inv, bool training, bool rms, T* dx, double* partG, double* partB) {
  const int64_t group = sh.group(k);
  const VDouble vmu = splat<VDouble>(mu), vinv = splat<VDouble>(inv);
  const bool perElement = sh.varies() && sh.perElement();
  // Pass 1: sums. Per γ/β entry (partB: Σg, partG: Σg x̂), per statistic Σh, Σh x̂.
  GradVectors s;
  // A span of elements with one entry a (γ value ga): its sums.
  auto constantSpan = [&](int64_t start, int64_t length, double ga, int64_t a) {
    const VDouble vg = splat<VDouble>(ga);
    VDouble sg{}, sgx{};
    forLanes(length, [&](int64_t j, int64_t lanesK) SIMDNORM_LAMBDA_INLINE {
      const VDouble g = gradOf<T, Relu>(dy, y, start + j, lanesK);
      const VDouble xh = (loadDoubleLanes(x + start + j, lanesK) - vmu) * vinv;
      const VDouble h = g * vg;
      const VDouble gxh = g * xh, hxh = h * xh;
      // lanes past lanesK: g = 0 (and x̂ finite or not: masked)
      if (lanesK < kDoubleLanes) {
        sg += keepLanes(g, lanesK);
        sgx += keepLanes(gxh, lanesK);
        s.h += keepLanes(h, lanesK);
        s.hx += keepLanes(hxh, lanesK);
      } else {
        sg += g;
        sgx += gxh;
        s.h += h;
        s.hx += hxh;
      }
    });
    partB[a] += sumLanes(sg);
    partG[a] += sumLanes(sgx);
  };
  for (int64_t o = 0; o < sh.outer; o++) {
    const int64_t base = sh.segment(k, o);
    if (!sh.varies()) {
      constantSpan(base, sh.inner, gamma ? static_cast<double>(gamma[group]) : 1.0, group);
    } else if (perElement) {
      const T* g0 = gamma ? gamma + group : nullptr;
      double* pb = partB + group;
      double* pg = partG + group;
      forLanes(sh.inner, [&](int64_t j, int64_t lanesK) SIMDNORM_LAMBDA_INLINE {
        const VDouble g = gradOf<T, Relu>(dy, y, base + j, lanesK);
        const VDouble xh = (loadDoubleLanes(x + base + j, lanesK) - vmu) * vinv;
        const VDouble h = g0 ? g * loadDoubleLanes(g0 + j, lanesK) : g * splat<VDouble>(1.0);
        const VDouble gxh = g * xh, hxh = h * xh;
        storeLanesAs(pb + j, loadDoubleLanes(pb + j, lanesK) + g, lanesK);
        storeLanesAs(pg + j, loadDoubleLanes(pg + j, lanesK) + gxh, lanesK);
        if (lanesK < kDoubleLanes) {
          s.h += keepLanes(h, lanesK);
          s.hx += keepLanes(hxh, lanesK);
        } else {
          s.h += h;
          s.hx += hxh;
        }
      });
    } else {
      for (int64_t j0 = 0, r = 0; j0 < sh.inner; j0 += sh.run, r++) {
        const int64_t a = group + r % sh.size;
        constantSpan(base + j0, minOf(sh.run, sh.inner - j0), gamma ? static_cast<double>(gamma[a]) : 1.0, a);
      }
    }
  }
  const double sumH = sumLanes(s.h), sumHX = sumLanes(s.hx);
  if (dx == nullptr) return;  // sumsOnly
  // Pass 2: dx.
  const double m = static_cast<double>(sh.M), c = inv / m;
  const VDouble vm = splat<VDouble>(m), vc = splat<VDouble>(c), vsh = splat<VDouble>(rms ? 0.0 : sumH),
                vshx = splat<VDouble>(sumHX);
  auto dxOf = [&](VDouble g, VDouble xh, VDouble gv) SIMDNORM_LAMBDA_INLINE {
    const VDouble h = g * gv;
    return training ? vc * ((vm * h - vsh) - xh * vshx) : h * vinv;
  };
  auto dxSpan = [&](int64_t start, int64_t length, double ga) {
    const VDouble gv = splat<VDouble>(ga);
    forLanes(length, [&](int64_t j, int64_t lanesK) SIMDNORM_LAMBDA_INLINE {
      const VDouble g = gradOf<T, Relu>(dy, y, start + j, lanesK);
      const VDouble xh = (loadDoubleLanes(x + start + j, lanesK) - vmu) * vinv;
      storeLanesAs(dx + start + j, dxOf(g, xh, gv), lanesK);
    });
  };
  for (int64_t o = 0; o < sh.outer; o++) {
    const int64_t base = sh.segment(k, o);
    if (!sh.varies()) {
      dxSpan(base, sh.inner, gamma ? static_cast<double>(gamma[group]) : 1.0);
    } else if (perElement) {
      const T* g0 = gamma ? gamma + group : nullptr;
      forLanes(sh.inner, [&](int64_t j, int64_t lanesK) SIMDNORM_LAMBDA_INLINE {
        const VDouble g = gradOf<T, Relu>(dy, y, base + j, lanesK);
        const VDouble xh = (loadDoubleLanes(x + base + j, lanesK) - vmu) * vinv;
        const VDouble gv = g0 ? loadDoubleLanes(g0 + j, lanesK) : splat<VDouble>(1.0);
        storeLanesAs(dx + base + j, dxOf(g, xh, gv), lanesK);
      });
    } else {
      for (int64_t j0 = 0, r = 0; j0 < sh.inner; j0 += sh.run, r++) {
        const int64_t a = group + r % sh.size;
        dxSpan(base + j0, minOf(sh.run, sh.inner - j0), gamma ? static_cast<double>(gamma[a]) : 1.0);
      }
    }
  }
}

namespace {

// ---- backward from given sums (flag givenSums; BatchNorm-shaped training backward, checked by
// sn_prepare): dgamma, dbeta hold Σg x̂ and Σg over a batch of M = sumsCount values per channel
// (e.g. every worker's shard); only dx = γ invStd / M · ((M g - Σg) - x̂ Σg x̂) is written, as
// js.ts. Element by element, so tasks of whole rows (outer) give the same bits for any thread
// count. ----

// Per channel in double: mean, invStd, c = γ invStd / M, Σg, Σg x̂ (5 arrays of `stats`).
struct GivenSums {
  const double *mu, *inv, *c, *sg, *sgx;
};

template <typename T, bool Relu>
void givenSumsRows(const T* dy, const T* x, const T* y, const Shape& sh, int64_t o0, int64_t o1, const GivenSums& p,
                   double m, T* dx) {
  const VDouble vm = splat<VDouble>(m);
  for (int64_t o = o0; o < o1; o++) {
    if (sh.inner == 1) {  // channels-last: a row holds every channel once
      const int64_t base = o * sh.stats;
      forLanes(sh.stats, [&](int64_t s, int64_t k) SIMDNORM_LAMBDA_INLINE {
        const VDouble g = gradOf<T, Relu>(dy, y, base + s, k);
        const VDouble xh = (loadDoubleLanes(x + base + s, k) - loadDoubleLanes(p.mu + s, k)) * loadDoubleLanes(p.inv + s, k);
        const VDouble v = loadDoubleLanes(p.c + s, k) *
                          ((vm * g - loadDoubleLanes(p.sg + s, k)) - xh * loadDoubleLanes(p.sgx + s, k));
        storeLanesAs(dx + base + s, v, k);
      });
      continue;
    }
    for (int64_t s = 0; s < sh.stats; s++) {
      const int64_t base = (o * sh.stats + s) * sh.inner;
      const VDouble mu = splat<VDouble>(p.mu[s]), inv = splat<VDouble>(p.inv[s]), c = splat<VDouble>(p.c[s]),
                    sg = splat<VDouble>(p.sg[s]), sgx = splat<VDouble>(p.sgx[s]);
      forLanes(sh.inner, [&](int64_t j, int64_t k) SIMDNORM_LAMBDA_INLINE {
        const VDouble g = gradOf<T, Relu>(dy, y, base + j, k);
        const VDouble xh = (loadDoubleLanes(x + base + j, k) - mu) * inv;
        storeLanesAs(dx + base + j, c * ((vm * g - sg) - xh * sgx), k);
      });
    }
  }
}

template <typename T>
int32_t givenSumsBackward(const sn_norm& n) {
  const Shape sh(n);
  const int64_t C = sh.stats;
  double* work;
  if (!carveScratch([&](Carver& s) { s.take(work, 5 * C); })) return noMemory();
  const T* mean = tensorOf<T>(n, SN_SLOT_MEAN);
  const T* invStd = tensorOf<T>(n, SN_SLOT_INV_STD);
  const T* gamma = tensorOf<T>(n, SN_SLOT_GAMMA);
  const T* sumGX = tensorOf<T>(n, SN_SLOT_DGAMMA);
  const T* sumG = tensorOf<T>(n, SN_SLOT_DBETA);
  const GivenSums p{work, work + C, work + 2 * C, work + 3 * C, work + 4 * C};
  const double m = n.sumsCount;
  for (int64_t s = 0; s < C; s++) {
    work[s] = static_cast<double>(mean[s]);
    work[C + s] = static_cast<double>(invStd[s]);
    work[2 * C + s] = ((gamma ? static_cast<double>(gamma[s]) : 1.0) * work[C + s]) / m;
    work[3 * C + s] = static_cast<double>(sumG[s]);
    work[4 * C + s] = static_cast<double>(sumGX[s]);
  }
  const T* dy = tensorOf<T>(n, SN_SLOT_DY);
  const T* x = tensorOf<T>(n, SN_SLOT_X);
  const T* y = (n.flags & SN_FLAG_RELU) != 0 ? tensorOf<T>(n, SN_SLOT_Y) : nullptr;
  T* dx = outputOf<T>(n, SN_SLOT_DX);
  const int64_t rowElements = maxOf(1, C * sh.inner);
  const int64_t rowsPerTask = maxOf(1, kTaskElements / rowElements);
  parallelFor(ceilDiv(sh.outer, rowsPerTask), sh.outer * rowElements, [&](int64_t t) {
    const int64_t o0 = t * rowsPerTask, o1 = minOf(sh.outer, o0 + rowsPerTask);
    if (y || !kFlagCopies) givenSumsRows<T, true>(dy, x, y, sh, o0, o1, p, m, dx);
    else givenSumsRows<T, false>(dy, x, y, sh, o0, o1, p, m, dx);
  });
  return 0;
}

// ---- backward's sums alone (flag sumsOnly, BatchNorm-shaped) outside the columns path: per
// channel dbeta = Σg and dgamma = invStd · Σg (x - mean) in double, each channel summed by one
// task in element order (two accumulators of whole vectors, then the tail): the same bits for any
// thread count. ----

template <typename T, bool Relu>
void channelGradSums(const T* dy, const T* x, const T* y, const Shape& sh, int64_t s, double mu, double& sumG,
                     double& sumGD) {
  const VDouble vmu = splat<VDouble>(mu);
  VDouble g0{}, g1{}, d0{}, d1{};
  for (int64_t o = 0; o < sh.outer; o++) {
    const int64_t base = (o * sh.stats + s) * sh.inner;
    int64_t j = 0;
    for (; j + 2 * kDoubleLanes <= sh.inner; j += 2 * kDoubleLanes) {
      const VDouble a = gradOf<T, Relu>(dy, y, base + j, kDoubleLanes);
      const VDouble b = gradOf<T, Relu>(dy, y, base + j + kDoubleLanes, kDoubleLanes);
      g0 += a;
      g1 += b;
      d0 += a * (loadDoubleLanes(x + base + j, kDoubleLanes) - vmu);
      d1 += b * (loadDoubleLanes(x + base + j + kDoubleLanes, kDoubleLanes) - vmu);
    }
    for (; j < sh.inner; j += kDoubleLanes) {
      const int64_t k = minOf(kDoubleLanes, sh.inner - j);
      const VDouble a = gradOf<T, Relu>(dy, y, base + j, k);
      const VDouble ad = a * (loadDoubleLanes(x + base + j, k) - vmu);
      g0 += k < kDoubleLanes ? keepLanes(a, k) : a;
      d0 += k < kDoubleLanes ? keepLanes(ad, k) : ad;
    }
  }
  sumG = sumLanes(g0 + g1);
  sumGD = sumLanes(d0 + d1);
}

template <typename T>
int32_t sumsOnlyBackward(const sn_norm& n) {
  const Shape sh(n);
  const BackwardTensors<T> args(n);
  parallelFor(sh.stats, sh.K * sh.M, [&](int64_t s) {
    const T *dy = args.dy, *x = args.x, *y = args.y;
    const double mu = static_cast<double>(args.mean[s]);
    double sumG, sumGD;
    if (y || !kFlagCopies) channelGradSums<T, true>(dy, x, y, sh, s, mu, sumG, sumGD);
    else channelGradSums<T, false>(dy, x, y, sh, s, mu, sumG, sumGD);
    args.dbeta[s] = static_cast<T>(sumG);
    args.dgamma[s] = static_cast<T>(static_cast<double>(args.invStd[s]) * sumGD);
  });
  return 0;
}

}  // namespace

namespace {

// ---- GroupNorm-shaped backward of float data in float lanes (PyTorch's group_norm backward:
// per-channel sums, then per-channel coefficients and one dx pass): one segment per statistic of
// spans of `run` elements with one γ/β entry each (GroupNorm channels-first: a channel's plane).
// Per span Σg and Σg (x - mean) over float runs (accumulate, runs checked by GradSumsOk, else in
// double); per statistic Σh, Σh (x - mean) from them in double; then per span
// dx = g (γ invStd) - ((x - mean) c3 + c2) in float, c2 = invStd Σh / M (rms: 0),
// c3 = invStd² Σh (x - mean) / M (backwardStatistic's formula expanded). A statistic whose sums or
// coefficients are not finite or not normal floats goes by backwardStatistic (decided before
// anything of it is written). ----

bool useFloatGroups(const Shape& sh) {
  return kFloatRuns && sh.outer == 1 && sh.varies() && !sh.perElement() && sh.run >= 2 * kFloatLanes &&
         sh.inner % sh.run == 0 && sh.M > 0;
}

// A span's Σg and Σg (x - mean).
template <bool Relu>
Sums spanGradSums(const float* dy, const float* x, const float* y, int64_t n, float mu) {
  const double muD = mu;
  Sums sums;
  auto term = [&](int64_t i, int64_t k) SIMDNORM_LAMBDA_INLINE {
    const VDouble g = gradOf<float, Relu>(dy, y, i, k);
    return Terms{g, g * (loadDoubleLanes(x + i, k) - muD)};
  };
  accumulate(n, 0, term, sums, [&](int64_t i) SIMDNORM_LAMBDA_INLINE {
    prefetchAhead(dy + i);  // as rowGradSums
    prefetchAhead(x + i);
    VFloat g = load<VFloat>(dy + i);
    if (masks<Relu>(y)) g = select(load<VFloat>(y + i) > VFloat{}, g, VFloat{});
    return FloatTerms{g, g * (load<VFloat>(x + i) - mu)};
  }, GradSumsOk{});
  return sums;
}

// dx of a span in float: g A - ((x - mean) c3 + c2) (training), else g A; A = γ invStd.
template <bool Relu, bool Training>
SIMDNORM_INLINE void spanGradFloat(const float* dy, const float* x, const float* y, int64_t n, float mu, float A,
                                   float c2, float c3, float* dx, bool stream) {
  using VF = VFloat;
  constexpr int64_t L = kFloatLanes;
  const VF vmu = splat<VF>(mu), vA = splat<VF>(A), vc2 = splat<VF>(c2), vc3 = splat<VF>(c3);
  forStreamRun<L>(dx, n, stream, [&](int64_t j, int64_t k, auto S) SIMDNORM_LAMBDA_INLINE {
    VF g = loadLanes(dy + j, k);
    if (masks<Relu>(y)) g = select(loadLanes(y + j, k) > VF{}, g, VF{});
    if constexpr (Training) {
      putVector<decltype(S)::value>(dx + j, mulAdd(g, vA, -mulAdd(loadLanes(x + j, k) - vmu, vc3, vc2)), k);
    } else {
      putVector<decltype(S)::value>(dx + j, g * vA, k);
    }
  });
}

// Statistic k on the float groups path; false (nothing written, no partial added) where it must go
// by backwardStatistic. work: 2 * (inner / run) doubles.
template <bool Relu>
bool groupGradFloat(const float* dy, const float* x, const float* y, const float* gamma, const Shape& sh, int64_t k,
                    float mu, float inv, bool training, bool rms, float* dx, double* partG, double* partB,
                    double* work, bool stream) {
  if (!__builtin_isfinite(mu) || !floatCoefficient(inv) || inv == 0) return false;
  const int64_t group = sh.group(k), base = sh.segment(k, 0), R = sh.run, spans = sh.inner / R;
  const double invD = inv;
  double sumH = 0, sumHD = 0;  // Σh, Σh (x - mean)
  for (int64_t r = 0; r < spans; r++) {
    const int64_t at = base + r * R;
    const Sums s = spanGradSums<Relu>(dy + at, x + at, y ? y + at : nullptr, R, mu);
    const double ga = gamma ? static_cast<double>(gamma[group + r % sh.size]) : 1.0;
    work[2 * r] = s.sumU();
    work[2 * r + 1] = s.sumV();
    sumH += ga * work[2 * r];
    sumHD += ga * work[2 * r + 1];
    if (!floatCoefficient(ga * invD)) return false;
  }
  const double c = invD / static_cast<double>(sh.M);
  const double c2 = rms ? 0.0 : c * sumH, c3 = invD * c * (invD * sumHD);
  if (!__builtin_isfinite(sumH) || !__builtin_isfinite(sumHD)) return false;
  if (training && (!floatCoefficient(c2) || !floatCoefficient(c3))) return false;
  for (int64_t r = 0; r < spans; r++) {
    const int64_t a = group + r % sh.size;
    partB[a] += work[2 * r];
    partG[a] += invD * work[2 * r + 1];
  }
  for (int64_t r = 0; r < spans; r++) {
    const int64_t at = base + r * R;
    const float A = static_cast<float>((gamma ? static_cast<double>(gamma[group + r % sh.size]) : 1.0) * invD);
    const float* ys = y ? y + at : nullptr;
    const float fc2 = static_cast<float>(c2), fc3 = static_cast<float>(c3);
    if (training) spanGradFloat<Relu, true>(dy + at, x + at, ys, R, mu, A, fc2, fc3, dx + at, stream);
    else spanGradFloat<Relu, false>(dy + at, x + at, ys, R, mu, A, fc2, fc3, dx + at, stream);
  }
  return true;
}

// groupGradFloat where kFloatRuns holds (a template: its float runs need four-lane vectors), and
// not in the SIMD128 WASM build (no kFlagCopies), whose size budget (README "Browsers and
// bundlers") it would break: there GroupNorm's backward keeps its double path.
template <bool Relu, typename T>
bool groupGrad(const BackwardTensors<T>& args, const Shape& sh, int64_t k, double* partG, double* partB, double* work,
               bool stream) {
  if constexpr (sizeof(T) == 4 && kFloatRuns && kFlagCopies) {
    const float mu = args.rms ? 0.0f : args.mean[k];
    return groupGradFloat<Relu>(args.dy, args.x, args.y, args.gamma, sh, k, mu, args.invStd[k], args.training,
                                args.rms, args.dx, partG, partB, work, stream);
  } else {
    return false;
  }
}

}  // namespace

template <typename T>
int32_t backward(const sn_norm& n) {
  if ((n.flags & SN_FLAG_GIVEN_SUMS) != 0) return givenSumsBackward<T>(n);
  if ((n.flags & SN_FLAG_SUMS_ONLY) != 0 && !useColumns(Shape(n))) return sumsOnlyBackward<T>(n);
  if (useColumns(Shape(n))) return columnBackward<T>(n);
  if (useRows(Shape(n))) return rowsBackward<T>(n);
  const Shape sh(n);
  const int64_t affine = sh.affine();
  const Tasks tasks = statisticTasks(sh, maxOf(1, minOf(kMaxGradTasks, kMaxPartialDoubles / maxOf(1, 2 * affine))));
  const BackwardTensors<T> args(n);
  // dx in place of dy: a run that fails GradSumsOk could no longer read its g (see floatRowsTask)
  const bool floatRows = sizeof(T) == 4 && args.dx != nullptr && static_cast<const void*>(args.dx) != args.dy &&
                         useFloatRows(sh);
  const int64_t floatsPerTask = floatRows ? floatRowsPadded(sh) : 0;  // 2 arrays of floats: as doubles
  const bool floatGroups = sizeof(T) == 4 && args.dx != nullptr && useFloatGroups(sh);
  const int64_t groupWork = floatGroups ? 2 * (sh.inner / sh.run) : 0;
  double *part, *floats, *groupSums;
  if (!carveScratch([&](Carver& s) {
        s.take(part, 2 * affine * tasks.count);
        s.take(floats, floatsPerTask * tasks.count);
        s.take(groupSums, groupWork * tasks.count);
      })) {
    return noMemory();
  }
  const bool stream = args.dx != nullptr && streamsOutput(args.dx, sh.K * sh.M);
  parallelFor(tasks.count, sh.K * sh.M, [&](int64_t t) {
    double* partG = part + 2 * affine * t;
    double* partB = partG + affine;
    for (int64_t a = 0; a < 2 * affine; a++) partG[a] = 0;
    if constexpr (sizeof(T) == 4 && kFloatRuns) {
      if (floatRows) {
        float* f = reinterpret_cast<float*>(floats + floatsPerTask * t);
        for (int64_t i = 0; i < 2 * floatsPerTask; i++) f[i] = 0;
        const int64_t k0 = t * tasks.per, k1 = minOf(sh.K, k0 + tasks.per);
        if (args.y != nullptr) {  // both copies: LayerNorm's hot loops, no flag read per vector
          floatRowsTask<true>(args, sh, k0, k1, partG, partB, f, stream);
        } else {
          floatRowsTask<false>(args, sh, k0, k1, partG, partB, f, stream);
        }
        return;
      }
    }
    for (int64_t k = t * tasks.per, end = minOf(sh.K, k + tasks.per); k < end; k++) {
      if (sh.M == 0) continue;
      if (floatGroups) {
        double* w = groupSums + groupWork * t;
        if (args.y != nullptr || !kFlagCopies) {
          if (groupGrad<true>(args, sh, k, partG, partB, w, stream)) continue;
        } else if (groupGrad<false>(args, sh, k, partG, partB, w, stream)) {
          continue;
        }
      }
      const double mu = args.rms ? 0.0 : static_cast<double>(args.mean[k]), inv = static_cast<double>(args.invStd[k]);
      auto inDouble = [&](auto relu) {
        backwardStatistic<T, decltype(relu)::value>(args.dy, args.x, args.y, args.gamma, sh, k, mu, inv, args.training,
                                                    args.rms, args.dx, partG, partB);
      };
      if (args.y != nullptr || !kFlagCopies) inDouble(std::true_type{});
      else inDouble(std::false_type{});
    }
  });
  for (int64_t a = 0; a < affine; a++) {
    double g = 0, b = 0;
    for (int64_t t = 0; t < tasks.count; t++) {
      g += part[2 * affine * t + a];
      b += part[2 * affine * t + affine + a];
    }
    args.dgamma[a] = static_cast<T>(g);
    args.dbeta[a] = static_cast<T>(b);
  }
  return 0;
}
template void backwardStatistic<float, true>(const float*, const float*, const float*, const float*, const Shape&, int64_t,
                                              double, double, bool, bool, float*, double*, double*);
template void backwardStatistic<float, false>(const float*, const float*, const float*, const float*, const Shape&, int64_t,
                                               double, double, bool, bool, float*, double*, double*);
template void backwardStatistic<double, true>(const double*, const double*, const double*, const double*, const Shape&,
                                               int64_t, double, double, bool, bool, double*, double*, double*);
template void backwardStatistic<double, false>(const double*, const double*, const double*, const double*, const Shape&,
                                                int64_t, double, double, bool, bool, double*, double*, double*);
template int32_t backward<float>(const sn_norm&);
template int32_t backward<double>(const sn_norm&);

}  // namespace general
}  // namespace SIMDNORM_ISA
}  // namespace simdnorm
