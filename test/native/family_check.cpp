// Standalone check of every normalization family through the C ABI (sn_prepare / sn_execute,
// native/kernels/norm.h) against a plain double reference written here with the formulas of
// lib/backends/js.ts (rms included): LayerNorm, RMSNorm, GroupNorm (both layouts), InstanceNorm
// (both layouts), ghost BatchNorm, γ/β tiled over statistics; with and without γ/β, relu,
// float and double, the running pair, every phase. Plus: bitwise identical results at 1, 2 and
// 3 threads, data far from zero, constant statistics, NaN/Inf inputs, a failed scratch
// allocation (nothing written). On x86-64 it runs for AVX2 and then the portable kernels.
// Last line: "N passed, N failed"; exit code 1 on failure.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "batchnorm.h"
#include "norm.h"

namespace {

int passed = 0, failed = 0;
std::mt19937_64 rng(2024);
double worstRatio[2] = {0, 0};

void report(bool ok, const std::string& what) {
  if (ok) {
    passed++;
  } else {
    failed++;
    if (failed <= 60) std::printf("FAIL %s\n", what.c_str());
  }
}

// A descriptor's scalars (norm.h).
struct Desc {
  std::string name;
  int64_t samples, outer, stats, inner, groups, size, run;
  uint32_t flags = 0;
  double eps = 1e-5, factor = 0.1, varScale = 1;
  int64_t K() const { return samples * stats; }
  int64_t M() const { return outer * inner; }
  int64_t elements() const { return K() * M(); }
  int64_t affine() const { return groups * size; }
  bool rms() const { return (flags & SN_FLAG_RMS) != 0; }
  // f(element index, γ/β index) over statistic k, in memory order (js.ts's Walk.each).
  template <typename F>
  void each(int64_t k, F f) const {
    const int64_t n = k / stats, s = k % stats, group = (s % groups) * size;
    for (int64_t o = 0; o < outer; o++) {
      const int64_t start = ((n * outer + o) * stats + s) * inner;
      for (int64_t j = 0; j < inner; j++) f(start + j, group + (j / run) % size);
    }
  }
};

Desc layerNorm(int64_t rows, int64_t d, bool rms = false) {
  Desc r{(rms ? "RMSNorm [" : "LayerNorm [") + std::to_string(rows) + "," + std::to_string(d) + "]", 1, 1, rows, d, 1, d, 1};
  if (rms) r.flags |= SN_FLAG_RMS;
  return r;
}
// GroupNorm NC(spatial) with G groups: samples N, outer 1, stats G, inner C/G * spatial.
Desc groupNormFirst(int64_t n, int64_t c, int64_t spatial, int64_t g) {
  return {"GroupNorm NC [" + std::to_string(n) + "," + std::to_string(c) + "," + std::to_string(spatial) + "] G" +
              std::to_string(g),
          n, 1, g, c / g * spatial, g, c / g, spatial};
}
Desc groupNormLast(int64_t n, int64_t c, int64_t spatial, int64_t g) {
  return {"GroupNorm N.C [" + std::to_string(n) + "," + std::to_string(spatial) + "," + std::to_string(c) + "] G" +
              std::to_string(g),
          n, spatial, g, c / g, g, c / g, 1};
}
Desc instanceFirst(int64_t n, int64_t c, int64_t spatial) {
  return {"InstanceNorm NC [" + std::to_string(n) + "," + std::to_string(c) + "," + std::to_string(spatial) + "]", n, 1,
          c, spatial, c, 1, 1};
}
Desc instanceLast(int64_t n, int64_t c, int64_t spatial) {
  return {"InstanceNorm N.C [" + std::to_string(n) + "," + std::to_string(spatial) + "," + std::to_string(c) + "]", n,
          spatial, c, 1, c, 1, 1};
}
// Ghost BatchNorm of virtual batch v over NC(spatial): samples N / v, outer v, stats C.
Desc ghost(int64_t n, int64_t v, int64_t c, int64_t spatial, bool last) {
  const std::string name = "ghost BN v" + std::to_string(v) + (last ? " N.C [" : " NC [") + std::to_string(n) + "," +
                           std::to_string(c) + "," + std::to_string(spatial) + "]";
  if (last) return {name, n / v, v * spatial, c, 1, c, 1, 1};
  return {name, n / v, v, c, spatial, c, 1, 1};
}

// ---- the reference: lib/backends/js.ts in double ----

struct Ref {
  std::vector<double> y, mean, invStd, variance, runningMean, runningVar, dx, dgamma, dbeta;
  int32_t result = 0;
};

void refStatistic(const Desc& d, const std::vector<double>& x, int64_t k, double& mean, double& variance) {
  const double count = static_cast<double>(d.M());
  if (d.rms()) {
    double squares = 0;
    d.each(k, [&](int64_t i, int64_t) { squares += x[i] * x[i]; });
    mean = 0;
    variance = squares / count;
    return;
  }
  double sum = 0;
  d.each(k, [&](int64_t i, int64_t) { sum += x[i]; });
  double m = sum / count, residual = 0, squares = 0;
  d.each(k, [&](int64_t i, int64_t) {
    const double dv = x[i] - m;
    residual += dv;
    squares += dv * dv;
  });
  if (std::isfinite(residual)) {
    m += residual / count;
    squares -= residual * (residual / count);
  }
  mean = m;
  variance = (squares < 0 ? 0 : squares) / count;
}

bool refUpdate(const Desc& d, std::vector<double>& rm, std::vector<double>& rv, const std::vector<double>& bm,
               const std::vector<double>& bv) {
  std::vector<double> m = bm, v = bv;
  if (d.samples != 1) {
    m.assign(d.stats, 0);
    v.assign(d.stats, 0);
    for (int64_t k = 0; k < d.K(); k++) {
      m[k % d.stats] += bm[k] / static_cast<double>(d.samples);
      v[k % d.stats] += bv[k] / static_cast<double>(d.samples);
    }
  }
  if (d.flags & SN_FLAG_SKIP_NON_FINITE) {
    for (int64_t c = 0; c < d.stats; c++) {
      if (!std::isfinite(m[c]) || !std::isfinite(v[c] * d.varScale)) return false;
    }
  }
  for (int64_t c = 0; c < d.stats; c++) {
    rm[c] = (1 - d.factor) * rm[c] + d.factor * m[c];
    rv[c] = (1 - d.factor) * rv[c] + d.factor * v[c] * d.varScale;
  }
  return true;
}

double reluOf(double v) { return v < 0 ? 0 : v; }

void refTrain(const Desc& d, const std::vector<double>& x, const std::vector<double>* gamma,
              const std::vector<double>* beta, bool running, Ref& r) {
  const int64_t K = d.K();
  r.y.assign(d.elements(), 0);
  r.mean.assign(K, 0);
  r.invStd.assign(K, 0);
  std::vector<double> bm(K), bv(K);
  for (int64_t k = 0; k < K; k++) {
    double mu, var;
    refStatistic(d, x, k, mu, var);
    const double inv = 1 / std::sqrt(var + d.eps);
    r.mean[k] = mu;
    r.invStd[k] = inv;
    bm[k] = mu;
    bv[k] = var;
    d.each(k, [&](int64_t i, int64_t a) {
      const double v = (x[i] - mu) * ((gamma ? (*gamma)[a] : 1) * inv) + (beta ? (*beta)[a] : 0);
      r.y[i] = (d.flags & SN_FLAG_RELU) ? reluOf(v) : v;
    });
  }
  r.result = 0;
  if (!running || d.M() * K == 0) return;
  r.result = refUpdate(d, r.runningMean, r.runningVar, bm, bv) ? 1 : 0;
}

void refInfer(const Desc& d, const std::vector<double>& x, const std::vector<double>& rm,
              const std::vector<double>& rv, const std::vector<double>* gamma, const std::vector<double>* beta,
              Ref& r) {
  r.y.assign(d.elements(), 0);
  for (int64_t k = 0; k < d.K(); k++) {
    const int64_t c = k % d.stats;
    const double m = rm[c], root = std::sqrt(rv[c] + d.eps);
    d.each(k, [&](int64_t i, int64_t a) {
      const double v = (x[i] - m) * ((gamma ? (*gamma)[a] : 1) / root) + (beta ? (*beta)[a] : 0);
      r.y[i] = (d.flags & SN_FLAG_RELU) ? reluOf(v) : v;
    });
  }
}

void refBackward(const Desc& d, const std::vector<double>& dy, const std::vector<double>& x,
                 const std::vector<double>& mean, const std::vector<double>& invStd,
                 const std::vector<double>* gamma, const std::vector<double>* y, Ref& r) {
  const bool training = (d.flags & SN_FLAG_TRAINING) != 0, rms = d.rms();
  const bool perStatistic = d.size == 1 && !rms;
  const double m = static_cast<double>(d.M());
  auto grad = [&](int64_t i) { return y && !((*y)[i] > 0) ? 0.0 : dy[i]; };
  auto gammaOf = [&](int64_t a) { return gamma ? (*gamma)[a] : 1.0; };
  r.dx.assign(d.elements(), 0);
  r.dgamma.assign(d.affine(), 0);
  r.dbeta.assign(d.affine(), 0);
  for (int64_t k = 0; k < d.K(); k++) {
    const double mu = rms ? 0 : mean[k], inv = invStd[k];
    double sumG = 0, sumGX = 0, sumH = 0, sumHX = 0;
    d.each(k, [&](int64_t i, int64_t a) {
      const double g = grad(i), xhat = (x[i] - mu) * inv;
      sumG += g;
      sumGX += g * (x[i] - mu) * inv;
      if (!perStatistic) {
        r.dbeta[a] += g;
        r.dgamma[a] += g * xhat;
        sumH += g * gammaOf(a);
        sumHX += g * gammaOf(a) * xhat;
      }
    });
    if (perStatistic) {
      const int64_t a = (k % d.stats) % d.groups;
      r.dbeta[a] += sumG;
      r.dgamma[a] += sumGX;
      const double gm = gammaOf(a);
      d.each(k, [&](int64_t i, int64_t) {
        const double xhat = (x[i] - mu) * inv;
        r.dx[i] = training ? ((gm * inv) / m) * (m * grad(i) - sumG - xhat * sumGX) : grad(i) * gm * inv;
      });
    } else {
      d.each(k, [&](int64_t i, int64_t a) {
        const double xhat = (x[i] - mu) * inv, h = grad(i) * gammaOf(a);
        r.dx[i] = training ? (inv / m) * (m * h - (rms ? 0 : sumH) - xhat * sumHX) : h * inv;
      });
    }
  }
}

// ---- calls through the C ABI ----

template <typename T>
struct Tensors {
  std::vector<T> x, y, dy, dx, gamma, beta, mean, invStd, variance, runningMean, runningVar, dgamma, dbeta, r, d,
      residual, dz;
  std::vector<T>* slot(int s) {
    std::vector<T>* all[] = {&x, &y, &dy, &dx, &gamma, &beta, &mean, &invStd, &variance,
                             &runningMean, &runningVar, &dgamma, &dbeta, &r, &d, &residual, &dz};
    static_assert(sizeof(all) / sizeof(all[0]) == SN_SLOT_COUNT, "one vector per slot of abi_table.h");
    return all[s];
  }
};

uint64_t slotLength(const Desc& d, int slot) {
  switch (sn_slot_size[slot]) {
    case SN_SIZE_ELEMENTS: return d.elements();
    case SN_SIZE_STATISTICS: return d.K();
    case SN_SIZE_CHANNELS: return d.stats;
    default: return d.affine();
  }
}

// sn_prepare + sn_execute with the given slots (a slot given when its vector is in `use`).
template <typename T>
int32_t call(const Desc& d, int phase, Tensors<T>& t, std::initializer_list<int> use, uint32_t extraFlags = 0,
             bool expectOk = true) {
  double s[SN_SCALAR_COUNT] = {};
  s[SN_SCALAR_PHASE] = phase;
  s[SN_SCALAR_DTYPE] = sizeof(T) == 4 ? SN_DTYPE_F32 : SN_DTYPE_F64;
  s[SN_SCALAR_SAMPLES] = static_cast<double>(d.samples);
  s[SN_SCALAR_OUTER] = static_cast<double>(d.outer);
  s[SN_SCALAR_STATS] = static_cast<double>(d.stats);
  s[SN_SCALAR_INNER] = static_cast<double>(d.inner);
  s[SN_SCALAR_AFFINE_GROUPS] = static_cast<double>(d.groups);
  s[SN_SCALAR_AFFINE_SIZE] = static_cast<double>(d.size);
  s[SN_SCALAR_AFFINE_RUN] = static_cast<double>(d.run);
  s[SN_SCALAR_FLAGS] = static_cast<double>(d.flags | extraFlags);
  s[SN_SCALAR_EPS] = d.eps;
  s[SN_SCALAR_FACTOR] = d.factor;
  s[SN_SCALAR_VAR_SCALE] = d.varScale;
  void* tensors[SN_SLOT_COUNT] = {};
  uint64_t bytes[SN_SLOT_COUNT] = {};
  for (int slot : use) {
    std::vector<T>* v = t.slot(slot);
    v->resize(slotLength(d, slot));
    tensors[slot] = v->data();
    bytes[slot] = v->size() * sizeof(T);
    if (v->empty()) tensors[slot] = nullptr;
  }
  sn_norm norm;
  const int32_t prepared = sn_prepare(s, tensors, bytes, &norm);
  if (prepared != 0) {
    report(false, d.name + " " + sn_phase_names[phase] + ": sn_prepare " + std::to_string(prepared));
    return prepared;
  }
  const int32_t r = sn_execute(&norm);
  if (r < 0 && expectOk) report(false, d.name + " " + sn_phase_names[phase] + ": sn_execute " + std::to_string(r));
  return r;
}

template <typename T>
std::vector<double> wide(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

template <typename T>
const char* typeName() {
  return sizeof(T) == 4 ? "float" : "double";
}

// got against ref: NaN where ref is NaN, the same infinity where ref is one, else
// |got - ref| / (scale + |ref|) <= tol with scale the RMS of ref's finite values (at least floor:
// the size of the terms, where they cancel to ~0).
template <typename T>
void expectClose(const std::vector<T>& got, const std::vector<double>& ref, double tol, const std::string& what,
                 double floor = 0) {
  if (got.size() != ref.size()) return report(false, what + " size");
  double sq = 0;
  int64_t n = 0;
  for (double r : ref) {
    if (std::isfinite(r)) sq += r * r, n++;
  }
  double scale = n ? std::sqrt(sq / n) + 1e-300 : 1;
  if (scale < floor) scale = floor;
  double worst = 0;
  bool ok = true;
  for (size_t i = 0; i < ref.size(); i++) {
    const double g = static_cast<double>(got[i]), r = ref[i];
    if (std::isnan(r)) {
      ok = ok && std::isnan(g);
    } else if (std::isinf(r) || (sizeof(T) == 4 && std::fabs(r) > 3.4e38)) {
      ok = ok && (static_cast<double>(static_cast<T>(r)) == g);
    } else {
      const double e = std::fabs(g - r) / (scale + std::fabs(r));
      if (!(e <= worst)) worst = e;
    }
  }
  double& w = worstRatio[sizeof(T) == 8];
  if (worst / tol > w) w = worst / tol;
  char buf[64];
  std::snprintf(buf, sizeof buf, " error %.3g", worst);
  report(ok && worst <= tol, what + buf + (ok ? "" : " (non-finite mismatch)"));
}

double rmsOf(const std::vector<double>& v) {
  double sq = 0;
  int64_t n = 0;
  for (double e : v) {
    if (std::isfinite(e)) sq += e * e, n++;
  }
  return n ? std::sqrt(sq / n) : 0;
}

template <typename T>
double tolerance() {
  return sizeof(T) == 4 ? 1e-5 : 1e-12;
}

template <typename T>
std::vector<T> randomVector(int64_t n, double lo, double hi) {
  std::uniform_real_distribution<double> u(lo, hi);
  std::vector<T> v(n);
  for (auto& e : v) e = static_cast<T>(u(rng));
  return v;
}

// Data: x = offset + spread * U(-1, 1), with optional special values.
struct Data {
  double offset = 0, spread = 1;
  bool constant = false;  // statistic 0 holds one value
  bool special = false;   // NaN / Inf in a few statistics
};

template <typename T>
std::vector<T> makeX(const Desc& d, const Data& data) {
  std::vector<T> x = randomVector<T>(d.elements(), data.offset - data.spread, data.offset + data.spread);
  if (data.constant && d.K() > 0) d.each(0, [&](int64_t i, int64_t) { x[i] = static_cast<T>(data.offset + 0.375); });
  if (data.special && d.K() > 1 && d.M() > 0) {
    bool first = true;
    d.each(1, [&](int64_t i, int64_t) {
      if (first) x[i] = static_cast<T>(NAN);
      first = false;
    });
    if (d.K() > 2) {
      first = true;
      d.each(2, [&](int64_t i, int64_t) {
        if (first) x[i] = static_cast<T>(INFINITY);
        first = false;
      });
    }
    if (d.K() > 3) {
      int c = 0;
      d.each(3, [&](int64_t i, int64_t) {
        if (c == 0) x[i] = static_cast<T>(INFINITY);
        if (c == 1) x[i] = static_cast<T>(-INFINITY);
        c++;
      });
    }
  }
  return x;
}

// Every phase of d on data, against the reference. affine: γ and β given; running: the pair.
template <typename T>
void checkDesc(const Desc& d0, bool affine, bool relu, bool running, const Data& data = {}) {
  Desc d = d0;
  if (relu) d.flags |= SN_FLAG_RELU;
  const double tol = tolerance<T>();
  std::string what = std::string(typeName<T>()) + " " + d.name + (affine ? " affine" : "") + (relu ? " relu" : "") +
                     (running ? " running" : "") + (data.offset != 0 ? " offset " + std::to_string(data.offset) : "") +
                     (data.constant ? " constant" : "") + (data.special ? " nan/inf" : "");
  Tensors<T> t;
  t.x = makeX<T>(d, data);
  t.gamma = randomVector<T>(d.affine(), 0.5, 1.5);
  t.beta = randomVector<T>(d.affine(), -1, 1);
  t.runningMean = randomVector<T>(d.stats, -0.5, 0.5);
  t.runningVar = randomVector<T>(d.stats, 0.5, 2);
  const std::vector<double> x = wide(t.x), gamma = wide(t.gamma), beta = wide(t.beta);
  const std::vector<double>* g = affine ? &gamma : nullptr;
  const std::vector<double>* b = affine ? &beta : nullptr;

  // moments
  {
    Ref r;
    r.mean.resize(d.K());
    r.variance.resize(d.K());
    for (int64_t k = 0; k < d.K(); k++) refStatistic(d, x, k, r.mean[k], r.variance[k]);
    call<T>(d, SN_PHASE_MOMENTS, t, {SN_SLOT_X, SN_SLOT_MEAN, SN_SLOT_VARIANCE});
    expectClose(t.mean, r.mean, tol, what + " moments mean");
    expectClose(t.variance, r.variance, tol, what + " moments variance");
    if (data.constant && d.K() > 0 && d.M() > 0 && !d.rms()) {
      report(t.variance[0] == 0 && t.mean[0] == static_cast<T>(data.offset + 0.375), what + " constant moments exact");
    }
  }
  // train
  Ref tr;
  tr.runningMean = wide(t.runningMean);
  tr.runningVar = wide(t.runningVar);
  refTrain(d, x, g, b, running, tr);
  Tensors<T> tt = t;
  int32_t result;
  {
    std::initializer_list<int> base = {SN_SLOT_X, SN_SLOT_Y, SN_SLOT_MEAN, SN_SLOT_INV_STD};
    std::initializer_list<int> withAffine = {SN_SLOT_X, SN_SLOT_Y, SN_SLOT_MEAN, SN_SLOT_INV_STD, SN_SLOT_GAMMA, SN_SLOT_BETA};
    std::initializer_list<int> withRunning = {SN_SLOT_X, SN_SLOT_Y, SN_SLOT_MEAN, SN_SLOT_INV_STD, SN_SLOT_RUNNING_MEAN, SN_SLOT_RUNNING_VAR};
    std::initializer_list<int> all = {SN_SLOT_X, SN_SLOT_Y, SN_SLOT_MEAN, SN_SLOT_INV_STD, SN_SLOT_GAMMA, SN_SLOT_BETA, SN_SLOT_RUNNING_MEAN, SN_SLOT_RUNNING_VAR};
    result = call<T>(d, SN_PHASE_TRAIN, tt, affine ? (running ? all : withAffine) : (running ? withRunning : base));
  }
  expectClose(tt.y, tr.y, tol, what + " train y");
  expectClose(tt.mean, tr.mean, tol, what + " train mean");
  expectClose(tt.invStd, tr.invStd, tol, what + " train invStd");
  if (running) {
    report(result == tr.result, what + " train result " + std::to_string(result));
    expectClose(tt.runningMean, tr.runningMean, tol, what + " train runningMean");
    expectClose(tt.runningVar, tr.runningVar, tol, what + " train runningVar");
  }
  if (data.constant && d.K() > 0 && d.M() > 0 && !d.rms() && !relu) {
    bool exact = true;
    d.each(0, [&](int64_t i, int64_t a) { exact = exact && tt.y[i] == static_cast<T>(affine ? beta[a] + 0.0 : 0.0); });
    report(exact, what + " constant statistic: y = beta");
  }
  // infer
  {
    Ref r;
    refInfer(d, x, wide(t.runningMean), wide(t.runningVar), g, b, r);
    Tensors<T> ti = t;
    if (affine) {
      call<T>(d, SN_PHASE_INFER, ti, {SN_SLOT_X, SN_SLOT_Y, SN_SLOT_RUNNING_MEAN, SN_SLOT_RUNNING_VAR, SN_SLOT_GAMMA, SN_SLOT_BETA});
    } else {
      call<T>(d, SN_PHASE_INFER, ti, {SN_SLOT_X, SN_SLOT_Y, SN_SLOT_RUNNING_MEAN, SN_SLOT_RUNNING_VAR});
    }
    expectClose(ti.y, r.y, tol, what + " infer y");
  }
  // backward, training and eval, from the train outputs (y: the relu mask)
  for (bool training : {true, false}) {
    Tensors<T> tb = t;
    tb.dy = randomVector<T>(d.elements(), -1, 1);
    tb.mean = tt.mean;
    tb.invStd = tt.invStd;
    tb.y = tt.y;
    Ref r;
    Desc db = d;
    if (training) db.flags |= SN_FLAG_TRAINING;
    // the reference's relu mask from the kernel's y (the reference's agrees but for values ~0)
    {
      std::vector<double> yk = wide(tt.y);
      refBackward(db, wide(tb.dy), x, wide(tb.mean), wide(tb.invStd), g, relu ? &yk : nullptr, r);
    }
    const int f = training ? SN_FLAG_TRAINING : 0;
    if (affine && relu) {
      call<T>(d, SN_PHASE_BACKWARD, tb, {SN_SLOT_DY, SN_SLOT_X, SN_SLOT_MEAN, SN_SLOT_INV_STD, SN_SLOT_GAMMA, SN_SLOT_Y, SN_SLOT_DX, SN_SLOT_DGAMMA, SN_SLOT_DBETA}, f);
    } else if (affine) {
      call<T>(d, SN_PHASE_BACKWARD, tb, {SN_SLOT_DY, SN_SLOT_X, SN_SLOT_MEAN, SN_SLOT_INV_STD, SN_SLOT_GAMMA, SN_SLOT_DX, SN_SLOT_DGAMMA, SN_SLOT_DBETA}, f);
    } else if (relu) {
      call<T>(d, SN_PHASE_BACKWARD, tb, {SN_SLOT_DY, SN_SLOT_X, SN_SLOT_MEAN, SN_SLOT_INV_STD, SN_SLOT_Y, SN_SLOT_DX, SN_SLOT_DGAMMA, SN_SLOT_DBETA}, f);
    } else {
      call<T>(d, SN_PHASE_BACKWARD, tb, {SN_SLOT_DY, SN_SLOT_X, SN_SLOT_MEAN, SN_SLOT_INV_STD, SN_SLOT_DX, SN_SLOT_DGAMMA, SN_SLOT_DBETA}, f);
    }
    const std::string bw = what + (training ? " backward train" : " backward eval");
    expectClose(tb.dx, r.dx, tol, bw + " dx", rmsOf(wide(tb.dy)) * rmsOf(wide(tb.invStd)));
    expectClose(tb.dgamma, r.dgamma, tol, bw + " dgamma");
    expectClose(tb.dbeta, r.dbeta, tol, bw + " dbeta");
  }
  // update alone, from statistics-sized batch mean and variance
  if (running) {
    Tensors<T> tu = t;
    tu.mean = randomVector<T>(d.K(), -1, 1);
    tu.variance = randomVector<T>(d.K(), 0, 2);
    Ref r;
    r.runningMean = wide(t.runningMean);
    r.runningVar = wide(t.runningVar);
    const bool written = refUpdate(d, r.runningMean, r.runningVar, wide(tu.mean), wide(tu.variance));
    const int32_t res = call<T>(d, SN_PHASE_UPDATE, tu, {SN_SLOT_MEAN, SN_SLOT_VARIANCE, SN_SLOT_RUNNING_MEAN, SN_SLOT_RUNNING_VAR});
    report(res == (written ? 1 : 0), what + " update result");
    expectClose(tu.runningMean, r.runningMean, tol, what + " update runningMean");
    expectClose(tu.runningVar, r.runningVar, tol, what + " update runningVar");
  }
}

// Every output of every phase bitwise the same at 1, 2 and 3 threads.
template <typename T>
void checkThreads(const Desc& d0, bool relu) {
  Desc d = d0;
  if (relu) d.flags |= SN_FLAG_RELU;
  Tensors<T> t;
  t.x = makeX<T>(d, {});
  t.gamma = randomVector<T>(d.affine(), 0.5, 1.5);
  t.beta = randomVector<T>(d.affine(), -1, 1);
  t.runningMean = randomVector<T>(d.stats, -0.5, 0.5);
  t.runningVar = randomVector<T>(d.stats, 0.5, 2);
  t.dy = randomVector<T>(d.elements(), -1, 1);
  std::vector<Tensors<T>> out;
  for (int threads : {1, 2, 3}) {
    simdnorm::setThreads(threads);
    Tensors<T> a = t;
    call<T>(d, SN_PHASE_MOMENTS, a, {SN_SLOT_X, SN_SLOT_MEAN, SN_SLOT_VARIANCE});
    Tensors<T> b = t;
    call<T>(d, SN_PHASE_TRAIN, b, {SN_SLOT_X, SN_SLOT_Y, SN_SLOT_MEAN, SN_SLOT_INV_STD, SN_SLOT_GAMMA, SN_SLOT_BETA, SN_SLOT_RUNNING_MEAN, SN_SLOT_RUNNING_VAR});
    Tensors<T> c = t;
    call<T>(d, SN_PHASE_INFER, c, {SN_SLOT_X, SN_SLOT_Y, SN_SLOT_RUNNING_MEAN, SN_SLOT_RUNNING_VAR, SN_SLOT_GAMMA, SN_SLOT_BETA});
    Tensors<T> e = t;
    e.mean = b.mean, e.invStd = b.invStd, e.y = b.y;
    call<T>(d, SN_PHASE_BACKWARD, e, {SN_SLOT_DY, SN_SLOT_X, SN_SLOT_MEAN, SN_SLOT_INV_STD, SN_SLOT_GAMMA, SN_SLOT_Y, SN_SLOT_DX, SN_SLOT_DGAMMA, SN_SLOT_DBETA}, SN_FLAG_TRAINING);
    Tensors<T> all;
    all.mean = a.mean, all.variance = a.variance;
    all.y = b.y, all.invStd = b.invStd, all.runningMean = b.runningMean, all.runningVar = b.runningVar;
    all.x = b.mean;  // train's mean
    all.dy = c.y;    // infer's y
    all.dx = e.dx, all.dgamma = e.dgamma, all.dbeta = e.dbeta;
    out.push_back(all);
  }
  simdnorm::setThreads(0);
  bool same = true;
  for (int i = 1; i < 3; i++) {
    for (int s = 0; s < SN_SLOT_COUNT; s++) {
      const std::vector<T>& p = *out[0].slot(s);
      const std::vector<T>& q = *out[i].slot(s);
      same = same && p.size() == q.size() && (p.empty() || std::memcmp(p.data(), q.data(), p.size() * sizeof(T)) == 0);
    }
  }
  report(same, std::string(typeName<T>()) + " " + d.name + (relu ? " relu" : "") + " bitwise the same at 1, 2, 3 threads");
}

// A failed scratch allocation: sn_execute returns SN_ERROR_NO_MEMORY and writes nothing.
template <typename T>
void checkOutOfMemory(const Desc& d) {
  Tensors<T> t;
  t.x = makeX<T>(d, {});
  t.gamma = randomVector<T>(d.affine(), 0.5, 1.5);
  t.beta = randomVector<T>(d.affine(), -1, 1);
  t.runningMean = randomVector<T>(d.stats, -0.5, 0.5);
  t.runningVar = randomVector<T>(d.stats, 0.5, 2);
  t.dy = randomVector<T>(d.elements(), -1, 1);
  t.mean = randomVector<T>(d.K(), -1, 1);
  t.invStd = randomVector<T>(d.K(), 0.5, 2);
  t.variance = randomVector<T>(d.K(), 0.5, 2);
  t.y = randomVector<T>(d.elements(), -1, 1);
  t.dx = randomVector<T>(d.elements(), -1, 1);
  t.dgamma = randomVector<T>(d.affine(), -1, 1);
  t.dbeta = randomVector<T>(d.affine(), -1, 1);
  const int32_t kNoMemory = -(SN_ERROR_NO_MEMORY << 8);
  auto same = [](const Tensors<T>& a, Tensors<T>& b) {
    for (int s = 0; s < SN_SLOT_COUNT; s++) {
      if (*const_cast<Tensors<T>&>(a).slot(s) != *b.slot(s)) return false;
    }
    return true;
  };
  simdnorm::setScratchLimit(1);
  bool ok = true;
  Tensors<T> a = t;
  ok = ok && call<T>(d, SN_PHASE_TRAIN, a, {SN_SLOT_X, SN_SLOT_Y, SN_SLOT_MEAN, SN_SLOT_INV_STD, SN_SLOT_GAMMA, SN_SLOT_BETA, SN_SLOT_RUNNING_MEAN, SN_SLOT_RUNNING_VAR}, 0, false) == kNoMemory;
  ok = ok && same(t, a);
  ok = ok && call<T>(d, SN_PHASE_BACKWARD, a, {SN_SLOT_DY, SN_SLOT_X, SN_SLOT_MEAN, SN_SLOT_INV_STD, SN_SLOT_GAMMA, SN_SLOT_DX, SN_SLOT_DGAMMA, SN_SLOT_DBETA}, SN_FLAG_TRAINING, false) == kNoMemory;
  ok = ok && same(t, a);
  ok = ok && call<T>(d, SN_PHASE_MOMENTS, a, {SN_SLOT_X, SN_SLOT_MEAN, SN_SLOT_VARIANCE}, 0, false) == kNoMemory;
  ok = ok && same(t, a);
  simdnorm::setScratchLimit(0);
  ok = ok && call<T>(d, SN_PHASE_TRAIN, a, {SN_SLOT_X, SN_SLOT_Y, SN_SLOT_MEAN, SN_SLOT_INV_STD, SN_SLOT_GAMMA, SN_SLOT_BETA, SN_SLOT_RUNNING_MEAN, SN_SLOT_RUNNING_VAR}) >= 0;
  ok = ok && a.y != t.y;
  report(ok, std::string(typeName<T>()) + " " + d.name + " a failed scratch allocation writes nothing");
}

std::vector<Desc> descriptors() {
  std::vector<Desc> v;
  for (int64_t dd : {1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33, 100, 257, 1000}) {
    v.push_back(layerNorm(5, dd));
    v.push_back(layerNorm(3, dd, true));
  }
  v.push_back(layerNorm(1, 1));
  v.push_back(layerNorm(64, 31));
  v.push_back(layerNorm(2, 40000));
  v.push_back(layerNorm(2, 40000, true));
  v.push_back(layerNorm(0, 8));
  v.push_back({"empty statistics [4,0] size 2", 1, 1, 4, 0, 1, 2, 1});
  v.push_back({"empty statistics ghost [2,3,0]", 2, 3, 3, 0, 3, 1, 1});
  v.push_back({"no samples", 0, 3, 3, 4, 3, 2, 1});
  for (int64_t g : {1, 2, 4, 8}) {
    for (int64_t spatial : {1, 2, 3, 5, 16, 49}) {
      v.push_back(groupNormFirst(3, 8, spatial, g));
      v.push_back(groupNormLast(3, 8, spatial, g));
    }
  }
  v.push_back(groupNormFirst(2, 6, 20000, 3));  // blocks in pieces of a segment
  v.push_back(groupNormLast(2, 6, 5000, 2));    // many segments per block
  for (int64_t spatial : {1, 3, 16, 49}) {
    v.push_back(instanceFirst(3, 5, spatial));
    v.push_back(instanceLast(3, 5, spatial));
  }
  v.push_back(ghost(8, 2, 3, 1, false));
  v.push_back(ghost(8, 4, 3, 10, false));
  v.push_back(ghost(6, 3, 5, 7, true));
  // γ/β tiled: one per statistic, affineGroups != stats
  v.push_back({"tiled stats 6 groups 3", 1, 4, 6, 5, 3, 1, 1});
  v.push_back({"tiled stats 4 groups 6", 2, 3, 4, 2, 6, 1, 1});
  // rms over BatchNorm's geometry, and γ/β patterns of the scalar path
  v.push_back({"rms channels [4,3,10]", 1, 4, 3, 10, 3, 1, 1, SN_FLAG_RMS});
  v.push_back({"rms instance [2,3,9]", 2, 1, 3, 9, 3, 1, 1, SN_FLAG_RMS});
  v.push_back({"periodic run 1 size 4 inner 12", 2, 3, 3, 12, 3, 4, 1});
  v.push_back({"periodic run 3 size 2 inner 13", 1, 2, 4, 13, 2, 2, 3});
  v.push_back({"rms GroupNorm N.C", 2, 5, 2, 4, 2, 4, 1, SN_FLAG_RMS});
  // the columns path (short segments, many of them)
  v.push_back({"rms GroupNorm N.C outer 20", 2, 20, 2, 4, 2, 4, 1, SN_FLAG_RMS});
  v.push_back({"columns run 3 size 2 inner 6", 2, 17, 3, 6, 3, 2, 3});
  v.push_back({"columns rms inner 1", 3, 40, 5, 1, 5, 1, 1, SN_FLAG_RMS});
  v.push_back({"columns LayerNorm-like inner 15", 1, 300, 2, 15, 1, 15, 1});
  // backward's rows path: several row blocks, blocks across tasks; the wide path (rows longer
  // than one piece: Σh in pieces, column strips)
  v.push_back(layerNorm(150, 37));
  v.push_back(layerNorm(70, 300, true));
  v.push_back(layerNorm(2, 20000));
  v.push_back(layerNorm(3, 16390, true));
  // outputs of at least 8 MB in float: streaming stores, on the whole 64-byte lines of each run
  // and plain stores at its ends (rows of 1027 values: every row starts at another offset in
  // its line; a run shorter than a line)
  v.push_back(layerNorm(2100, 1024));
  v.push_back(layerNorm(2050, 1027));
  v.push_back(layerNorm(2, 1100000));
  v.push_back(groupNormLast(2, 64, 16400, 8));
  v.push_back(groupNormFirst(3, 33, 21001, 3));
  v.push_back(groupNormFirst(2, 4, 270000, 2));
  v.push_back(instanceFirst(2, 130000, 9));
  return v;
}

void runChecks() {
  std::printf("simd %s, threads %d\n", simdnorm::simdLevel(), simdnorm::getThreads());
  worstRatio[0] = worstRatio[1] = 0;
  int variant = 0;
  for (const Desc& d : descriptors()) {
    for (int k = 0; k < 2; k++, variant++) {
      const bool affine = variant % 2 == 0, relu = variant / 2 % 2 == 1, running = variant / 4 % 2 == 0;
      checkDesc<float>(d, affine, relu, running);
      checkDesc<double>(d, !affine, !relu, running);
    }
  }
  // Numerics: far from zero with a small spread; constant statistics; NaN/Inf.
  for (const Desc& d : {layerNorm(4, 300), layerNorm(4, 300, true), groupNormFirst(2, 8, 40, 4), groupNormLast(2, 8, 40, 2),
                        instanceFirst(2, 4, 50), ghost(8, 2, 3, 20, false), layerNorm(3, 40000)}) {
    checkDesc<float>(d, true, false, true, Data{1e4, 1});
    checkDesc<double>(d, true, false, true, Data{1e8, 1});
    checkDesc<float>(d, true, false, true, Data{0, 1, true});
    checkDesc<double>(d, false, false, true, Data{5, 1, true});
    checkDesc<float>(d, true, true, true, Data{0, 1, false, true});
    checkDesc<double>(d, true, false, true, Data{0, 1, false, true});
  }
  // Determinism over sizes where the pool splits the work.
  for (const Desc& d : {layerNorm(300, 1000), layerNorm(64, 4096, true), layerNorm(3, 70000), groupNormFirst(4, 64, 1024, 8),
                        groupNormLast(4, 64, 1024, 16), instanceFirst(8, 32, 1024), ghost(32, 4, 16, 256, false),
                        layerNorm(20000, 7), layerNorm(5000, 96), layerNorm(6, 40000, true), layerNorm(700, 1030),
                        layerNorm(106, 20000, true), groupNormFirst(2, 64, 16400, 8)}) {
    checkThreads<float>(d, false);
    checkThreads<double>(d, true);
  }
  for (const Desc& d : {layerNorm(16, 100), groupNormFirst(2, 8, 16, 4), instanceFirst(3, 4, 20), ghost(8, 2, 3, 5, true),
                        layerNorm(3, 100, true)}) {
    checkOutOfMemory<float>(d);
    checkOutOfMemory<double>(d);
  }
  std::printf("largest error / tolerance: float %.3g, double %.3g\n", worstRatio[0], worstRatio[1]);
}

// Milliseconds: the median of `reps` calls of f (after one warm-up call); the best of them with
// SIMDNORM_BENCH_BEST set (steadier on a shared machine).
template <typename F>
double medianMs(int reps, F f) {
  f();
  std::vector<double> times;
  for (int i = 0; i < reps; i++) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    times.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  return std::getenv("SIMDNORM_BENCH_BEST") != nullptr ? times[0] : times[times.size() / 2];
}

// --bench [filter]: float train / infer / backward of the family's shapes, as multiples of a
// same-run copy of x (medians; each case interleaves copy and op per round so noise hits both).
int bench(const char* filter) {
  if (const char* threads = std::getenv("SIMDNORM_BENCH_THREADS")) simdnorm::setThreads(std::atoi(threads));
  std::printf("simd %s, threads %d\n", simdnorm::simdLevel(), simdnorm::getThreads());
  for (const Desc& d : {layerNorm(8192, 768), layerNorm(8192, 768, true), layerNorm(2048, 4096), layerNorm(2048, 4096, true),
                        layerNorm(64, 128), layerNorm(64, 128, true), layerNorm(8192, 1024), layerNorm(64, 100000),
                        groupNormFirst(8, 320, 4096, 32), groupNormLast(8, 320, 4096, 32), groupNormFirst(2, 64, 1024, 8),
                        groupNormLast(2, 64, 1024, 8), groupNormFirst(32, 64, 3136, 32), groupNormLast(32, 64, 3136, 32),
                        instanceFirst(1, 64, 65536), instanceFirst(16, 3, 50176), instanceLast(16, 3, 50176),
                        ghost(32, 8, 64, 3136, false)}) {
    if (filter != nullptr && d.name.find(filter) == std::string::npos) continue;
    Tensors<float> t;
    t.x = randomVector<float>(d.elements(), -1, 1);
    t.gamma = randomVector<float>(d.affine(), 0.5, 1.5);
    t.beta = randomVector<float>(d.affine(), -1, 1);
    t.runningMean = randomVector<float>(d.stats, -0.5, 0.5);
    t.runningVar = randomVector<float>(d.stats, 0.5, 2);
    t.dy = randomVector<float>(d.elements(), -1, 1);
    std::vector<float> copy(d.elements());
    const int reps = d.elements() < (1 << 16) ? 201 : d.elements() < (1 << 22) ? 31 : 11;
    std::vector<double> c, tr, in, bw, trMs, inMs, bwMs;
    for (int round = 0; round < 3; round++) {
      c.push_back(medianMs(reps, [&] { simdnorm::copyBytes(copy.data(), t.x.data(), d.elements() * 4, 0); }));
      tr.push_back(medianMs(reps, [&] {
        call<float>(d, SN_PHASE_TRAIN, t, {SN_SLOT_X, SN_SLOT_Y, SN_SLOT_MEAN, SN_SLOT_INV_STD, SN_SLOT_GAMMA, SN_SLOT_BETA, SN_SLOT_RUNNING_MEAN, SN_SLOT_RUNNING_VAR});
      }));
      trMs.push_back(tr.back());
      tr.back() /= c.back();
      in.push_back(medianMs(reps, [&] {
        call<float>(d, SN_PHASE_INFER, t, {SN_SLOT_X, SN_SLOT_Y, SN_SLOT_RUNNING_MEAN, SN_SLOT_RUNNING_VAR, SN_SLOT_GAMMA, SN_SLOT_BETA});
      }));
      inMs.push_back(in.back());
      in.back() /= c.back();
      bw.push_back(medianMs(reps, [&] {
        call<float>(d, SN_PHASE_BACKWARD, t, {SN_SLOT_DY, SN_SLOT_X, SN_SLOT_MEAN, SN_SLOT_INV_STD, SN_SLOT_GAMMA, SN_SLOT_DX, SN_SLOT_DGAMMA, SN_SLOT_DBETA}, SN_FLAG_TRAINING);
      }));
      bwMs.push_back(bw.back());
      bw.back() /= c.back();
    }
    for (auto* v : {&c, &tr, &in, &bw, &trMs, &inMs, &bwMs}) std::sort(v->begin(), v->end());
    std::printf("%-34s copy %7.3f ms  train %5.2fx %7.3f  infer %5.2fx %7.3f  backward %5.2fx %7.3f\n", d.name.c_str(),
                c[1], tr[1], trMs[1], in[1], inMs[1], bw[1], bwMs[1]);
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--bench") == 0) return bench(argc > 2 ? argv[2] : nullptr);
  const std::string dispatched = simdnorm::simdLevel();
  runChecks();
  if (dispatched == "avx2-fma") {
    simdnorm::usePortableKernels(true);
    runChecks();
    simdnorm::usePortableKernels(false);
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
