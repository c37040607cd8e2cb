// The general kernel's LayerNorm / RMSNorm-shaped backward (general_internal.h): float rows
// (rows of at most kRowsMaxInner) and the wide rows path.
#include "general_internal.h"

namespace simdnorm {
namespace SIMDNORM_ISA {
namespace general {

namespace {

// ---- the wide rows path of backward: LayerNorm / RMSNorm rows longer than kRowsMaxInner (one
// segment per statistic, γ/β by the element, one γ/β group), where a row and the per-task partial
// arrays no longer stay in cache. Σh, Σh x̂ per (row, piece) merged per row in piece order; then
// tasks of column strips sweep every row (row-major within the strip), writing dx and adding
// Σg, Σg x̂ to their own columns' dgamma/dbeta in row order: no partial arrays to merge. ----

constexpr int64_t kWideStrip = 2048;          // columns per task of the wide path's sweep


// Per-row coefficients of rows from `first` on (row r at [r - first]): mean (rms 0), invStd,
// invStd / M, Σh (rms 0), Σh x̂.
struct RowCoefficients {
  const double *mu, *inv, *c, *sumH, *sumHX;
  int64_t first;
};

template <typename T, bool Relu>
SIMDNORM_INLINE void rowSums(const T* dy, const T* x, const T* y, const T* gamma, int64_t base, int64_t D, double mu,
                             double inv, double& sumH, double& sumHX) {
  const VDouble vmu = splat<VDouble>(mu), vinv = splat<VDouble>(inv);
  VDouble a1{}, a2{}, b1{}, b2{};
  auto terms = [&](int64_t j, int64_t k, VDouble& s1, VDouble& s2) SIMDNORM_LAMBDA_INLINE {
    const VDouble g = gradOf<T, Relu>(dy, y, base + j, k);
    const VDouble xh = (loadDoubleLanes(x + base + j, k) - vmu) * vinv;
    const VDouble h = gamma ? g * loadDoubleLanes(gamma + j, k) : g;
    const VDouble hx = h * xh;
    if (k < kDoubleLanes) {
      s1 += keepLanes(h, k);
      s2 += keepLanes(hx, k);
    } else {
      s1 += h;
      s2 += hx;
    }
  };
  int64_t j = 0;
  for (; j + 2 * kDoubleLanes <= D; j += 2 * kDoubleLanes) {
    terms(j, kDoubleLanes, a1, a2);
    terms(j + kDoubleLanes, kDoubleLanes, b1, b2);
  }
  for (; j + kDoubleLanes <= D; j += kDoubleLanes) terms(j, kDoubleLanes, a1, a2);
  if (j < D) terms(j, D - j, b1, b2);
  sumH = sumLanes(a1 + b1);
  sumHX = sumLanes(a2 + b2);
}

// dx of rows [r0, r1) and columns [j0, j1); Σg, Σg x̂ of each column over those rows added to
// pb[j], pg[j] in row order. Row-major over chunks of `chunk` columns (the chunk's partials stay
// in L1 while every row passes; each row's piece is contiguous for the prefetcher).
template <typename T, bool Relu, bool Training>
void sweepRows(const BackwardTensors<T>& args, int64_t D, int64_t r0, int64_t r1, int64_t j0, int64_t j1, int64_t chunk,
               const RowCoefficients& rc, double* pg, double* pb, bool stream) {
  const T *dy = args.dy, *x = args.x, *y = args.y, *gamma = args.gamma;
  T* dx = args.dx;
  const VDouble vm = splat<VDouble>(static_cast<double>(D));
  for (int64_t c0 = j0; c0 < j1; c0 += chunk) {
    const int64_t c1 = minOf(j1, c0 + chunk);
    for (int64_t r = r0; r < r1; r++) {
      const int64_t q = r - rc.first, base = r * D;
      const VDouble vinv = splat<VDouble>(rc.inv[q]), vmu = splat<VDouble>(rc.mu[q]), vc = splat<VDouble>(rc.c[q]),
                    vsh = splat<VDouble>(rc.sumH[q]), vshx = splat<VDouble>(rc.sumHX[q]);
      auto at = [&](int64_t j, int64_t k, auto S) SIMDNORM_LAMBDA_INLINE {
        const int64_t i = base + j;
        const VDouble g = gradOf<T, Relu>(dy, y, i, k);
        const VDouble xh = (loadDoubleLanes(x + i, k) - vmu) * vinv;
        const VDouble h = gamma ? g * loadDoubleLanes(gamma + j, k) : g;
        const VDouble v = Training ? vc * ((vm * h - vsh) - xh * vshx) : h * vinv;
        putLanes<decltype(S)::value>(dx + i, v, k);
        if (k == kDoubleLanes) {
          store(pb + j, load<VDouble>(pb + j) + g);
          store(pg + j, load<VDouble>(pg + j) + g * xh);
        } else {
          storeLanesAs(pb + j, loadDoubleLanes(pb + j, k) + g, k);
          storeLanesAs(pg + j, loadDoubleLanes(pg + j, k) + g * xh, k);
        }
      };
      forStreamRun<kDoubleLanes>(dx + base + c0, c1 - c0, stream,
                                 [&](int64_t j, int64_t k, auto S) SIMDNORM_LAMBDA_INLINE { at(c0 + j, k, S); });
    }
  }
}

}  // namespace

template <typename T>
int32_t rowsBackward(const sn_norm& n) {
  const Shape sh(n);
  const int64_t K = sh.K, D = sh.inner;
  const BackwardTensors<T> args(n);
  // locals: the lambdas below read them once, not through args after each store (WASM: 300 bytes gzipped)
  const T *dy = args.dy, *x = args.x, *mean = args.mean, *invStd = args.invStd, *gamma = args.gamma, *y = args.y;
  T *dx = args.dx, *dgamma = args.dgamma, *dbeta = args.dbeta;
  const bool rms = args.rms, training = args.training;
  const double m = static_cast<double>(D);
  const bool stream = streamsOutput(dx, K * D);
  auto sweep = [&](int64_t r0, int64_t r1, int64_t j0, int64_t j1, int64_t chunk, const RowCoefficients& rc,
                   double* pg, double* pb) {
    if (y != nullptr || !kFlagCopies) {
      if (training) sweepRows<T, true, true>(args, D, r0, r1, j0, j1, chunk, rc, pg, pb, stream);
      else sweepRows<T, true, false>(args, D, r0, r1, j0, j1, chunk, rc, pg, pb, stream);
    } else {
      if (training) sweepRows<T, false, true>(args, D, r0, r1, j0, j1, chunk, rc, pg, pb, stream);
      else sweepRows<T, false, false>(args, D, r0, r1, j0, j1, chunk, rc, pg, pb, stream);
    }
  };
  auto sums = [&](int64_t r, int64_t j0, int64_t j1, double mu, double inv, double& sH, double& sHX) {
    const T* g = gamma ? gamma + j0 : nullptr;
    const int64_t base = r * D + j0, length = j1 - j0;
    if (y != nullptr || !kFlagCopies) rowSums<T, true>(dy, x, y, g, base, length, mu, inv, sH, sHX);
    else rowSums<T, false>(dy, x, y, g, base, length, mu, inv, sH, sHX);
  };
  {
    const int64_t pieces = ceilDiv(D, kRowsMaxInner), pieceLength = ceilDiv(D, pieces);
    const int64_t strips = ceilDiv(D, kWideStrip);
    double *mu, *inv, *c, *sumH, *sumHX, *pieceH, *pieceHX, *pg, *pb;
    if (!carveScratch([&](Carver& s) {
          s.take(mu, K);
          s.take(inv, K);
          s.take(c, K);
          s.take(sumH, K);
          s.take(sumHX, K);
          s.take(pieceH, training ? K * pieces : 0);
          s.take(pieceHX, training ? K * pieces : 0);
          s.take(pg, D);
          s.take(pb, D);
        })) {
      return noMemory();
    }
    for (int64_t r = 0; r < K; r++) {
      mu[r] = rms ? 0.0 : static_cast<double>(mean[r]);
      inv[r] = static_cast<double>(invStd[r]);
      c[r] = inv[r] / m;
    }
    if (training) {
      parallelFor(K * pieces, K * D, [&](int64_t t) {
        const int64_t r = t / pieces, j0 = t % pieces * pieceLength;
        sums(r, j0, minOf(D, j0 + pieceLength), mu[r], inv[r], pieceH[t], pieceHX[t]);
      });
      for (int64_t r = 0; r < K; r++) {
        double a = 0, b = 0;
        for (int64_t p = 0; p < pieces; p++) {
          a += pieceH[r * pieces + p];
          b += pieceHX[r * pieces + p];
        }
        sumH[r] = rms ? 0.0 : a;
        sumHX[r] = b;
      }
    }
    const RowCoefficients rc{mu, inv, c, sumH, sumHX, 0};
    parallelFor(strips, K * D, [&](int64_t t) {
      const int64_t j0 = t * kWideStrip, j1 = minOf(D, j0 + kWideStrip);
      for (int64_t j = j0; j < j1; j++) pg[j] = pb[j] = 0;
      sweep(0, K, j0, j1, kWideStrip, rc, pg, pb);
      for (int64_t j = j0; j < j1; j++) {
        dgamma[j] = static_cast<T>(pg[j]);
        dbeta[j] = static_cast<T>(pb[j]);
      }
    });
    return 0;
  }
  return 0;
}

namespace {

// ---- LayerNorm-shaped backward of float data in float lanes (one segment per statistic, γ/β by
// the element, one γ/β group), as the BatchNorm kernels' backward (backward.cpp) does it: Σh and
// Σh (x - mean) over float runs (accumulate, runs checked by GradSumsOk), then
// dx = h invStd - ((x - mean) c3 + c2) in float, c2 = invStd Σh / M (rms: 0), c3 = invStd Σh x̂ / M
// (= backwardStatistic's formula expanded). The per-column Σg, Σg x̂ of a task go in float over
// runs of kFloatRun rows (fixed by the geometry), each run added to the task's double partials
// where GradSumsOk holds for its vector of columns, else those columns of the run's rows again in
// double (so dx must not be dy: those rows' g are read again). A row whose sums or coefficients are not finite or not normal floats goes by
// backwardStatistic (in double; its partials straight to the double arrays). ----


// The row's Σh and Σh (x - mean) (mean mu: a float, also as muD).
template <bool Relu>
Sums rowGradSums(const float* dy, const float* x, const float* y, const float* g0, int64_t D, float mu) {
  const double muD = mu;
  Sums sums;
  auto term = [&](int64_t i, int64_t k) SIMDNORM_LAMBDA_INLINE {
    VDouble g = loadDoubleLanes(dy + i, k);
    if (masks<Relu>(y)) g = (VDouble)((VDoubleMask)g & (VDoubleMask)(loadDoubleLanes(y + i, k) > VDouble{}));
    const VDouble h = g0 ? g * loadDoubleLanes(g0 + i, k) : g;
    return Terms{h, h * (loadDoubleLanes(x + i, k) - muD)};
  };
  accumulate(D, 0, term, sums, [&](int64_t i) SIMDNORM_LAMBDA_INLINE {
    prefetchAhead(dy + i);
    prefetchAhead(x + i);
    VFloat g = load<VFloat>(dy + i);
    if (masks<Relu>(y)) g = (VFloat)((VFloatMask)g & (VFloatMask)(load<VFloat>(y + i) > VFloat{}));
    const VFloat h = g0 ? g * load<VFloat>(g0 + i) : g;
    return FloatTerms{h, h * (load<VFloat>(x + i) - mu)};
  }, GradSumsOk{});
  return sums;
}

// Float per-column partials of a task's current run of rows.
struct FloatRun {
  float *g, *gx;    // Σg, Σg x̂ per column (padded to whole vectors)
  int64_t first;     // the run's first row
  uint64_t rows;     // bit r - first: row r went in float
};

// dx of row k in float, and its Σg, Σg x̂ added to run's float partials.
template <bool Relu, bool Training>
void rowGradFloat(const float* dy, const float* x, const float* y, const float* g0, int64_t D, float mu, float inv,
                  float c2, float c3, float* dx, const FloatRun& run, bool stream) {
  using VF = VFloat;
  constexpr int64_t L = kFloatLanes;
  const VF vmu = splat<VF>(mu), vinv = splat<VF>(inv), vc2 = splat<VF>(c2), vc3 = splat<VF>(c3);
  forStreamRun<L>(dx, D, stream, [&](int64_t j, int64_t k, auto S) SIMDNORM_LAMBDA_INLINE {
    VF g = loadLanes(dy + j, k);
    if (masks<Relu>(y)) g = select(loadLanes(y + j, k) > VF{}, g, VF{});
    const VF h = g0 ? g * loadLanes(g0 + j, k) : g;
    const VF xm = loadLanes(x + j, k) - vmu;
    putVector<decltype(S)::value>(dx + j, Training ? mulAdd(h, vinv, -mulAdd(xm, vc3, vc2)) : h * vinv, k);
    // lanes past k: g = 0 (a vector may reach past D, into the padding: floatRowsPadded)
    store(run.g + j, load<VF>(run.g + j) + g);
    store(run.gx + j, load<VF>(run.gx + j) + g * (xm * vinv));
  });
}

// Adds the run's float partials to partG/partB (double), or where GradSumsOk fails for a vector
// of columns, those columns of the run's float rows in double; clears the float partials.
template <bool Relu>
void flushRun(const float* dy, const float* x, const float* y, const float* mean, const float* invStd, bool rms,
              int64_t D, FloatRun& run, double* partG, double* partB) {
  constexpr int64_t L = kFloatLanes;
  for (int64_t j = 0; j < D; j += L) {
    const VFloat sg = load<VFloat>(run.g + j), sgx = load<VFloat>(run.gx + j);
    if (allLanes(GradSumsOk{}(sg, sgx, 0))) {
      VDouble lo, hi;
      double gs[L], gxs[L];
      toDoubles(sg, lo, hi);
      store(gs, lo);
      store(gs + L / 2, hi);
      toDoubles(sgx, lo, hi);
      store(gxs, lo);
      store(gxs + L / 2, hi);
      for (int64_t c = j, e = minOf(D, j + L); c < e; c++) {
        partB[c] += gs[c - j];
        partG[c] += gxs[c - j];
      }
    } else {
      for (int64_t r = 0; r < 64; r++) {
        if ((run.rows >> r & 1) == 0) continue;
        const int64_t base = (run.first + r) * D;
        const double mu = rms ? 0.0 : static_cast<double>(mean[run.first + r]);
        const double inv = static_cast<double>(invStd[run.first + r]);
        for (int64_t c = j, e = minOf(D, j + L); c < e; c++) {
          const double g = y && !(y[base + c] > 0) ? 0.0 : static_cast<double>(dy[base + c]);
          partB[c] += g;
          partG[c] += g * ((static_cast<double>(x[base + c]) - mu) * inv);
        }
      }
    }
    store(run.g + j, VFloat{});
    store(run.gx + j, VFloat{});
  }
  run.rows = 0;
}

// Rows [k0, k1) of a float LayerNorm-shaped backward (useFloatRows), partials to partG/partB;
// floats: 2 * floatRowsPadded zeroed floats of scratch.
template <bool Relu>
void floatRowsTaskIn(const float* dy, const float* x, const float* y, const float* gamma, const float* mean,
                     const float* invStd, const Shape& sh, int64_t k0, int64_t k1, bool training, bool rms, float* dx,
                     double* partG, double* partB, float* floats, bool stream) {
  const int64_t D = sh.inner;
  FloatRun run{floats, floats + floatRowsPadded(sh), k0, 0};
  const double m = static_cast<double>(D);
  for (int64_t k = k0; k < k1; k++) {
    if (k - run.first == kFloatRun) {
      flushRun<Relu>(dy, x, y, mean, invStd, rms, D, run, partG, partB);
      run.first = k;
    }
    const int64_t base = k * D;
    const float mu = rms ? 0.0f : mean[k], inv = invStd[k];
    const float* yr = y ? y + base : nullptr;
    double c2 = 0, c3 = 0;
    bool ok = floatCoefficient(inv) && __builtin_isfinite(mu);
    if (training && ok) {
      const Sums sums = rowGradSums<Relu>(dy + base, x + base, yr, gamma, D, mu);
      const double c = static_cast<double>(inv) / m, sumHX = static_cast<double>(inv) * sums.sumV();
      c2 = rms ? 0.0 : c * sums.sumU();
      c3 = static_cast<double>(inv) * c * sumHX;
      ok = __builtin_isfinite(sums.sumU()) && floatCoefficient(c2) && floatCoefficient(c3);
    }
    if (!ok) {
      backwardStatistic<float, Relu || !kFlagCopies>(dy, x, y, gamma, sh, k, mu, inv, training, rms, dx, partG, partB);
      continue;
    }
    run.rows |= uint64_t{1} << (k - run.first);
    if (training) {
      rowGradFloat<Relu, true>(dy + base, x + base, yr, gamma, D, mu, inv, static_cast<float>(c2),
                               static_cast<float>(c3), dx + base, run, stream);
    } else {
      rowGradFloat<Relu, false>(dy + base, x + base, yr, gamma, D, mu, inv, 0, 0, dx + base, run, stream);
    }
  }
  flushRun<Relu>(dy, x, y, mean, invStd, rms, D, run, partG, partB);
}
}  // namespace

// (floatRowsTaskIn only where kFloatRuns holds: its float runs need four-lane vectors.)
template <bool Relu>
void floatRowsTask(const BackwardTensors<float>& args, const Shape& sh, int64_t k0, int64_t k1, double* partG,
                   double* partB, float* floats, bool stream) {
  if constexpr (kFloatRuns) {
    floatRowsTaskIn<Relu>(args.dy, args.x, args.y, args.gamma, args.mean, args.invStd, sh, k0, k1, args.training,
                          args.rms, args.dx, partG, partB, floats, stream);
  }
}

template int32_t rowsBackward<float>(const sn_norm&);
template int32_t rowsBackward<double>(const sn_norm&);
template void floatRowsTask<true>(const BackwardTensors<float>&, const Shape&, int64_t, int64_t, double*, double*, float*,
                                  bool);
template void floatRowsTask<false>(const BackwardTensors<float>&, const Shape&, int64_t, int64_t, double*, double*,
                                   float*, bool);

}  // namespace general
}  // namespace SIMDNORM_ISA
}  // namespace simdnorm
