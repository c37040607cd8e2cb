// Standalone check of native/kernels against a straightforward double-precision reference
// (no framework), through the kernels' one C ABI (native/kernels/norm.h: sn_prepare, then
// sn_execute, with BatchNorm descriptors): every phase on many geometries, float and double, with
// and without gamma/beta, relu, in place, running updates, 1 vs 2 vs 3 threads bitwise, and the
// far-from-zero numerics of README "Numerics"; then sn_prepare's refusals of bad descriptors.
// Each ISA's run ends with its largest error / tolerance (float, double: NEON's against SSE2's,
// say). Last line: "N passed, N failed"; exit code 1 on failure. On x86-64 it checks AVX2+FMA,
// then the portable SSE2 kernels; built with cmake/aarch64-linux-gnu.cmake, the NEON kernels (run
// under qemu-aarch64: .ci/run).
//
//   kernel_check            run the checks
//   kernel_check --bench    time train/infer/backward on float32 NCHW [32,64,56,56] and
//                           NHWC [32,56,56,64] at 1 and 2 threads against a same-run copy
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include "batchnorm.h"  // threads, scratch limit, ISA choice and the probes (not the kernels)
#include "norm.h"       // the kernels: sn_prepare, sn_execute

#if !defined(__EMSCRIPTEN__) || defined(__EMSCRIPTEN_PTHREADS__)
#include <thread>
#define SIMDNORM_CHECK_THREADS 1
#endif

namespace {

// A BatchNorm tensor seen as x[outer][channels][inner] (row-major, contiguous):
//   channels-first NC..., rank r: outer = N, inner = product of the spatial dims;
//   channels-last  N...C:         outer = N * product of the spatial dims, inner = 1.
struct Geometry {
  int64_t outer;
  int64_t channels;
  int64_t inner;
  int64_t perChannel() const { return outer * inner; }
  int64_t elements() const { return outer * channels * inner; }
};

// The running update of a training forward: factor (weight of the new batch), varScale (M/(M-1)
// or 1), skipNonFinite (SN_FLAG_SKIP_NON_FINITE).
struct Running {
  double factor;
  double varScale;
  bool skipNonFinite;
};

int passed = 0, failed = 0;
std::mt19937_64 rng(12345);

void fail(const std::string& what) {
  failed++;
  if (failed <= 40) std::printf("FAIL %s\n", what.c_str());
}

void report(bool ok, const std::string& what) {
  if (ok) {
    passed++;
  } else {
    fail(what);
  }
}

std::string describe(const char* type, Geometry g, const char* extra = "") {
  char buf[200];
  std::snprintf(buf, sizeof buf, "%s [%lld,%lld,%lld] %s", type, (long long)g.outer,
                (long long)g.channels, (long long)g.inner, extra);
  return buf;
}

// Largest |got - ref| / (scale + |ref|) over n values, with scale the data's typical magnitude.
template <typename T>
double worstError(const T* got, const std::vector<double>& ref, double scale) {
  double worst = 0;
  for (size_t i = 0; i < ref.size(); i++) {
    double e = std::fabs(static_cast<double>(got[i]) - ref[i]) / (scale + std::fabs(ref[i]));
    if (!(e <= worst)) worst = e;  // NaN counts as the worst
  }
  return worst;
}

template <typename T>
double tolerance();

// The largest error / tolerance of the checks with a tolerance so far, float [0] and double [1]
// (runChecks prints it: how close each ISA comes to the bar, e.g. NEON against SSE2).
double worstRatio[2] = {0, 0};
template <typename T>
void noteError(double e, double tol) {
  double& w = worstRatio[sizeof(T) == 8];
  if (e / tol > w) w = e / tol;
}

template <typename T>
void expectClose(const T* got, const std::vector<double>& ref, double tol, double scale,
                 const std::string& what) {
  double e = worstError(got, ref, scale);
  noteError<T>(e, tol);
  report(e <= tol, what + " error " + std::to_string(e));
}

// The same with a scale per value (the magnitude of the terms that make it up).
template <typename T>
void expectClose(const T* got, const std::vector<double>& ref, double tol, const std::vector<double>& scale,
                 const std::string& what) {
  double worst = 0;
  for (size_t i = 0; i < ref.size(); i++) {
    double e = std::fabs(static_cast<double>(got[i]) - ref[i]) / scale[i];
    if (!(e <= worst)) worst = e;
  }
  noteError<T>(worst, tol);
  report(worst <= tol, what + " error " + std::to_string(worst));
}

template <typename T>
bool sameBits(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

template <typename T>
const char* typeName() {
  return sizeof(T) == 4 ? "float" : "double";
}
template <typename T>
double tolerance() {
  return sizeof(T) == 4 ? 1e-5 : 1e-11;
}

int64_t index(Geometry g, int64_t o, int64_t c, int64_t i) { return (o * g.channels + c) * g.inner + i; }

// ---- the C ABI (native/kernels/norm.h) ------------------------------------------------------

// A call's result as text: the value, or "error <code> (<the scalar or slot it names>)".
std::string resultText(int32_t r) {
  if (r >= 0) return std::to_string(r);
  const int code = (-r) >> 8, argument = (-r) & 255;
  std::string text = "error " + std::to_string(code);
  if (argument == 0) return text;
  const bool scalar = code == SN_ERROR_BAD_SCALAR || code == SN_ERROR_TOO_LARGE;
  const int count = scalar ? static_cast<int>(SN_SCALAR_COUNT) : static_cast<int>(SN_SLOT_COUNT);
  const char* name = argument <= count ? (scalar ? sn_scalar_names : sn_slot_names)[argument - 1] : "?";
  return text + " (" + name + ")";
}

// While set (checkOutOfMemory), an sn_execute error is what the check expects, not a failure.
bool executeMayFail = false;

// One call through the C ABI as the N-API addon and the wasm module make it: the scalars on the
// wire (float64 each), the tensor table, and the bytes behind each tensor. batchNorm<T>() fills in
// BatchNorm's descriptor (samples 1, outer, stats = channels, inner, affineGroups = channels,
// affineSize 1, affineRun 1, eps 1e-5, factor 0, varScale 1, no flags, no tensors); tensor()
// gives a slot a pointer (nullptr: none) with the bytes the slot's length needs on the scalars
// set so far (so set the geometry first); the rest override single values.
struct Call {
  double scalars[SN_SCALAR_COUNT] = {};
  void* tensors[SN_SLOT_COUNT] = {};
  uint64_t bytes[SN_SLOT_COUNT] = {};
  std::string what;  // for failure lines

  template <typename T>
  static Call batchNorm(int phase, Geometry g) {
    Call c;
    c.scalars[SN_SCALAR_PHASE] = phase;
    c.scalars[SN_SCALAR_DTYPE] = sizeof(T) == 4 ? SN_DTYPE_F32 : SN_DTYPE_F64;
    c.scalars[SN_SCALAR_SAMPLES] = 1;
    c.scalars[SN_SCALAR_OUTER] = static_cast<double>(g.outer);
    c.scalars[SN_SCALAR_STATS] = static_cast<double>(g.channels);
    c.scalars[SN_SCALAR_INNER] = static_cast<double>(g.inner);
    c.scalars[SN_SCALAR_AFFINE_GROUPS] = static_cast<double>(g.channels);
    c.scalars[SN_SCALAR_AFFINE_SIZE] = 1;
    c.scalars[SN_SCALAR_AFFINE_RUN] = 1;
    c.scalars[SN_SCALAR_FLAGS] = 0;
    c.scalars[SN_SCALAR_EPS] = 1e-5;
    c.scalars[SN_SCALAR_FACTOR] = 0;
    c.scalars[SN_SCALAR_VAR_SCALE] = 1;
    char buf[200];
    std::snprintf(buf, sizeof buf, "%s [%lld,%lld,%lld] %s", sizeof(T) == 4 ? "float" : "double",
                  (long long)g.outer, (long long)g.channels, (long long)g.inner, sn_phase_names[phase]);
    c.what = buf;
    return c;
  }

  // The slot's length in elements (as abi_table.h's sn_slot_size says) by the current scalars.
  uint64_t length(int slot) const {
    auto count = [&](int scalar) { return static_cast<uint64_t>(scalars[scalar]); };
    switch (sn_slot_size[slot]) {
      case SN_SIZE_ELEMENTS:
        return count(SN_SCALAR_SAMPLES) * count(SN_SCALAR_OUTER) * count(SN_SCALAR_STATS) * count(SN_SCALAR_INNER);
      case SN_SIZE_STATISTICS: return count(SN_SCALAR_SAMPLES) * count(SN_SCALAR_STATS);
      case SN_SIZE_CHANNELS: return count(SN_SCALAR_STATS);
      default: return count(SN_SCALAR_AFFINE_GROUPS) * count(SN_SCALAR_AFFINE_SIZE);
    }
  }
  Call& tensor(int slot, const void* p) {
    tensors[slot] = const_cast<void*>(p);
    bytes[slot] = p == nullptr ? 0 : length(slot) * (scalars[SN_SCALAR_DTYPE] == SN_DTYPE_F32 ? 4 : 8);
    return *this;
  }
  Call& byteCount(int slot, uint64_t n) {
    bytes[slot] = n;
    return *this;
  }
  Call& set(int scalar, double value) {
    scalars[scalar] = value;
    return *this;
  }
  Call& flag(int f, bool on = true) {
    if (on) scalars[SN_SCALAR_FLAGS] = static_cast<double>(static_cast<uint32_t>(scalars[SN_SCALAR_FLAGS]) | f);
    return *this;
  }
  Call& running(Running r) {
    return set(SN_SCALAR_FACTOR, r.factor)
        .set(SN_SCALAR_VAR_SCALE, r.varScale)
        .flag(SN_FLAG_SKIP_NON_FINITE, r.skipNonFinite);
  }

  int32_t prepare(sn_norm* out) const { return sn_prepare(scalars, tensors, bytes, out); }

  // sn_prepare (a failure unless it accepts: every call of the checks is valid) then sn_execute
  // (a failure when it errs, but where executeMayFail); sn_execute's result.
  int32_t run() const {
    sn_norm norm;
    const int32_t prepared = prepare(&norm);
    if (prepared != 0) {
      fail(what + ": sn_prepare returned " + resultText(prepared));
      return prepared;
    }
    const int32_t result = sn_execute(&norm);
    if (result < 0 && !executeMayFail) fail(what + ": sn_execute returned " + resultText(result));
    return result;
  }
};

const int32_t kNoMemory = -(SN_ERROR_NO_MEMORY << 8);

// The phases of a BatchNorm call, with the arguments the old C++ kernels took (nullptr: a tensor
// not given); each returns sn_execute's result (train, update: 1 when the running stats were
// written).
namespace abi {

template <typename T>
int32_t moments(const T* x, Geometry g, T* mean, T* variance) {
  return Call::batchNorm<T>(SN_PHASE_MOMENTS, g)
      .tensor(SN_SLOT_X, x)
      .tensor(SN_SLOT_MEAN, mean)
      .tensor(SN_SLOT_VARIANCE, variance)
      .run();
}

// y may be x (in place).
template <typename T>
int32_t train(const T* x, Geometry g, const T* gamma, const T* beta, double eps, bool relu, T* y, T* mean,
              T* invStd, T* runningMean, T* runningVar, Running update) {
  return Call::batchNorm<T>(SN_PHASE_TRAIN, g)
      .set(SN_SCALAR_EPS, eps)
      .flag(SN_FLAG_RELU, relu)
      .running(update)
      .tensor(SN_SLOT_X, x)
      .tensor(SN_SLOT_GAMMA, gamma)
      .tensor(SN_SLOT_BETA, beta)
      .tensor(SN_SLOT_Y, y)
      .tensor(SN_SLOT_MEAN, mean)
      .tensor(SN_SLOT_INV_STD, invStd)
      .tensor(SN_SLOT_RUNNING_MEAN, runningMean)
      .tensor(SN_SLOT_RUNNING_VAR, runningVar)
      .run();
}

// y may be x (in place).
template <typename T>
int32_t infer(const T* x, Geometry g, const T* runningMean, const T* runningVar, const T* gamma, const T* beta,
              double eps, bool relu, T* y) {
  return Call::batchNorm<T>(SN_PHASE_INFER, g)
      .set(SN_SCALAR_EPS, eps)
      .flag(SN_FLAG_RELU, relu)
      .tensor(SN_SLOT_X, x)
      .tensor(SN_SLOT_RUNNING_MEAN, runningMean)
      .tensor(SN_SLOT_RUNNING_VAR, runningVar)
      .tensor(SN_SLOT_GAMMA, gamma)
      .tensor(SN_SLOT_BETA, beta)
      .tensor(SN_SLOT_Y, y)
      .run();
}

// y: the fused ReLU's forward output (dy masked by y > 0), or nullptr for none. dx may be dy.
template <typename T>
int32_t backward(const T* dy, const T* x, Geometry g, const T* mean, const T* invStd, const T* gamma, const T* y,
                 bool training, T* dx, T* dgamma, T* dbeta) {
  return Call::batchNorm<T>(SN_PHASE_BACKWARD, g)
      .flag(SN_FLAG_RELU, y != nullptr)
      .flag(SN_FLAG_TRAINING, training)
      .tensor(SN_SLOT_DY, dy)
      .tensor(SN_SLOT_X, x)
      .tensor(SN_SLOT_MEAN, mean)
      .tensor(SN_SLOT_INV_STD, invStd)
      .tensor(SN_SLOT_GAMMA, gamma)
      .tensor(SN_SLOT_Y, y)
      .tensor(SN_SLOT_DX, dx)
      .tensor(SN_SLOT_DGAMMA, dgamma)
      .tensor(SN_SLOT_DBETA, dbeta)
      .run();
}

// The running update alone, from a batch mean and biased variance of `channels` values.
template <typename T>
int32_t update(T* runningMean, T* runningVar, const T* batchMean, const T* batchVar, int64_t channels,
               Running r) {
  return Call::batchNorm<T>(SN_PHASE_UPDATE, Geometry{1, channels, 1})
      .running(r)
      .tensor(SN_SLOT_MEAN, batchMean)
      .tensor(SN_SLOT_VARIANCE, batchVar)
      .tensor(SN_SLOT_RUNNING_MEAN, runningMean)
      .tensor(SN_SLOT_RUNNING_VAR, runningVar)
      .run();
}

}  // namespace abi

// ---- the float64 reference ------------------------------------------------------------------

template <typename T>
void referenceMoments(const std::vector<T>& x, Geometry g, std::vector<double>& mean,
                      std::vector<double>& var) {
  const double m = static_cast<double>(g.perChannel());
  mean.assign(g.channels, 0);
  var.assign(g.channels, 0);
  for (int64_t c = 0; c < g.channels; c++) {
    double s = 0, q = 0;
    for (int64_t o = 0; o < g.outer; o++)
      for (int64_t i = 0; i < g.inner; i++) s += x[index(g, o, c, i)];
    mean[c] = s / m;
    // Corrected by the residual r = sum(x - mean), as lib/reference.ts: a plain sum / M is off
    // where the sum rounds (double data at 1e-310 whose sum leaves the subnormal range).
    double r = 0;
    for (int64_t o = 0; o < g.outer; o++)
      for (int64_t i = 0; i < g.inner; i++) {
        r += x[index(g, o, c, i)] - mean[c];
        q += std::pow(x[index(g, o, c, i)] - mean[c], 2);
      }
    if (std::isfinite(r)) {
      mean[c] += r / m;
      q -= r * (r / m);
    }
    var[c] = std::max(q, 0.0) / m;
  }
}

// y = gamma * (x - mean) * invStd + beta, relu'd.
template <typename T>
std::vector<double> referenceNormalize(const std::vector<T>& x, Geometry g, const std::vector<double>& mean,
                                       const std::vector<double>& invStd, const T* gamma, const T* beta,
                                       bool relu) {
  std::vector<double> y(x.size());
  for (int64_t o = 0; o < g.outer; o++)
    for (int64_t c = 0; c < g.channels; c++)
      for (int64_t i = 0; i < g.inner; i++) {
        int64_t j = index(g, o, c, i);
        double v = (gamma ? gamma[c] : 1.0) * (x[j] - mean[c]) * invStd[c] + (beta ? beta[c] : 0.0);
        y[j] = relu && v < 0 ? 0 : v;
      }
  return y;
}

// ---- data ---------------------------------------------------------------------------------

template <typename T>
std::vector<T> randomVector(size_t n, double offset = 0, double scale = 1) {
  std::normal_distribution<double> normal(0, 1);
  std::vector<T> v(n);
  for (auto& e : v) e = static_cast<T>(offset + scale * normal(rng));
  return v;
}

// What channelData makes (checkFloatRuns changes it): its values times dataScale, and every
// outlierEvery-th value (0: none) an outlier of 1e4 times that.
double dataScale = 1;
int64_t outlierEvery = 0;

// Unit-scale data with a different offset per channel.
template <typename T>
std::vector<T> channelData(Geometry g) {
  std::vector<T> x = randomVector<T>(static_cast<size_t>(g.elements()));
  std::uniform_real_distribution<double> offset(-3, 3);
  std::vector<double> shift(g.channels);
  for (auto& s : shift) s = offset(rng);
  for (int64_t o = 0; o < g.outer; o++)
    for (int64_t c = 0; c < g.channels; c++)
      for (int64_t i = 0; i < g.inner; i++) x[index(g, o, c, i)] += static_cast<T>(shift[c]);
  for (size_t i = 0; i < x.size(); i++) {
    const bool outlier = outlierEvery > 0 && static_cast<int64_t>(i) % outlierEvery == 0;
    x[i] = static_cast<T>((outlier ? 1e4 : static_cast<double>(x[i])) * dataScale);
  }
  return x;
}

// ---- one geometry, every kernel -----------------------------------------------------------

template <typename T>
void checkGeometry(Geometry g, bool affine, bool relu, bool inPlace) {
  const double tol = tolerance<T>();
  const size_t n = static_cast<size_t>(g.elements()), C = static_cast<size_t>(g.channels);
  const double m = static_cast<double>(g.perChannel());
  char flags[80];
  std::snprintf(flags, sizeof flags, "%s%s%s", affine ? "affine " : "", relu ? "relu " : "",
                inPlace ? "in-place" : "");
  const std::string where = describe(typeName<T>(), g, flags);

  std::vector<T> x = channelData<T>(g);
  std::vector<T> gamma = randomVector<T>(C, 1, 0.5), beta = randomVector<T>(C);
  const T* gp = affine ? gamma.data() : nullptr;
  const T* bp = affine ? beta.data() : nullptr;
  std::vector<double> refMean, refVar;
  referenceMoments(x, g, refMean, refVar);
  const double eps = 1e-5;

  // moments
  std::vector<T> mean(C), var(C);
  abi::moments(x.data(), g, mean.data(), var.data());
  if (m > 0) {
    expectClose(mean.data(), refMean, tol, 1, where + " moments mean");
    expectClose(var.data(), refVar, tol, 1, where + " moments var");
  }

  // training forward with running stats
  std::vector<T> runMean = randomVector<T>(C), runVar = randomVector<T>(C, 2, 0.3);
  const std::vector<T> runMean0 = runMean, runVar0 = runVar;
  const double factor = 0.1, varScale = m > 1 ? m / (m - 1) : 1;
  std::vector<T> y(n, T(-7)), saveMean(C), invStd(C);
  if (inPlace) y = x;
  const bool wrote = abi::train(inPlace ? y.data() : x.data(), g, gp, bp, eps, relu, y.data(), saveMean.data(),
                                invStd.data(), runMean.data(), runVar.data(), {factor, varScale, true}) == 1;
  if (n == 0) {
    bool nan = true;
    for (size_t c = 0; c < C; c++) nan = nan && std::isnan(saveMean[c]) && std::isnan(invStd[c]);
    report(!wrote && nan && sameBits(runMean, runMean0) && sameBits(runVar, runVar0),
           where + " train M == 0");
  } else {
    std::vector<double> refInv(C), refRunMean(C), refRunVar(C);
    for (size_t c = 0; c < C; c++) {
      refInv[c] = 1 / std::sqrt(refVar[c] + eps);
      refRunMean[c] = (1 - factor) * runMean0[c] + factor * refMean[c];
      refRunVar[c] = (1 - factor) * runVar0[c] + factor * refVar[c] * varScale;
    }
    report(wrote, where + " train returns true");
    expectClose(saveMean.data(), refMean, tol, 1, where + " train mean");
    expectClose(invStd.data(), refInv, tol, 0, where + " train invStd");
    expectClose(y.data(), referenceNormalize(x, g, refMean, refInv, gp, bp, relu), tol, 1, where + " train y");
    expectClose(runMean.data(), refRunMean, tol, 1, where + " running mean");
    expectClose(runVar.data(), refRunVar, tol, 1, where + " running var");
  }

  // inference forward, from the running stats
  {
    std::vector<T> yi(n, T(-7));
    if (inPlace) yi = x;
    abi::infer(inPlace ? yi.data() : x.data(), g, runMean.data(), runVar.data(), gp, bp, eps,
               relu, yi.data());
    std::vector<double> rm(C), ri(C);
    for (size_t c = 0; c < C; c++) {
      rm[c] = runMean[c];
      ri[c] = 1 / std::sqrt(static_cast<double>(runVar[c]) + eps);
    }
    expectClose(yi.data(), referenceNormalize(x, g, rm, ri, gp, bp, relu), tol, 1, where + " infer y");
  }

  // backward, from the saved (T-typed) statistics; with relu, dy is masked by the forward y
  for (bool training : {true, false}) {
    if (n == 0) {
      std::vector<T> dgamma(C, T(5)), dbeta(C, T(5)), dx(n);
      abi::backward<T>(x.data(), x.data(), g, mean.data(), mean.data(), gp, nullptr, training,
                       dx.data(), dgamma.data(), dbeta.data());
      bool zero = true;
      for (size_t c = 0; c < C; c++) zero = zero && dgamma[c] == 0 && dbeta[c] == 0;
      report(zero, where + " backward M == 0");
      continue;
    }
    std::vector<T> dy = randomVector<T>(n), dx(n, T(-7)), dgamma(C), dbeta(C);
    if (inPlace) dx = dy;
    abi::backward(inPlace ? dx.data() : dy.data(), x.data(), g, saveMean.data(), invStd.data(), gp,
                  relu ? y.data() : nullptr, training, dx.data(), dgamma.data(), dbeta.data());
    // dx's terms can be much larger than dx (invStd is large when a channel barely varies).
    // dbeta and dgamma are sums of M terms: judged at the root-sum-square of their terms (the
    // size of a sum's rounding; lib/verify.ts's gradientSumScales), or at their own size if larger.
    std::vector<double> refDgamma(C, 0), refDbeta(C, 0), refDx(n), dxScale(n), dgScale(C, 0), dbScale(C, 0);
    auto gradAt = [&](int64_t j) { return relu && !(y[j] > 0) ? 0.0 : static_cast<double>(dy[j]); };
    for (int64_t c = 0; c < g.channels; c++) {
      for (int64_t o = 0; o < g.outer; o++)
        for (int64_t i = 0; i < g.inner; i++) {
          int64_t j = index(g, o, c, i);
          const double term = gradAt(j) * (x[j] - static_cast<double>(saveMean[c])) * invStd[c];
          refDbeta[c] += gradAt(j);
          refDgamma[c] += term;
          dbScale[c] += gradAt(j) * gradAt(j);
          dgScale[c] += term * term;
        }
      dbScale[c] = std::max({std::sqrt(dbScale[c]), std::fabs(refDbeta[c]), 1e-300});
      dgScale[c] = std::max({std::sqrt(dgScale[c]), std::fabs(refDgamma[c]), 1e-300});
      double k = (gp ? gp[c] : 1.0) * invStd[c];
      for (int64_t o = 0; o < g.outer; o++)
        for (int64_t i = 0; i < g.inner; i++) {
          int64_t j = index(g, o, c, i);
          double xhat = (x[j] - static_cast<double>(saveMean[c])) * invStd[c];
          refDx[j] = training ? k / m * (m * gradAt(j) - refDbeta[c] - xhat * refDgamma[c])
                              : gradAt(j) * k;
          dxScale[j] = 1 + std::fabs(k) * (std::fabs(gradAt(j)) + std::fabs(refDbeta[c]) / m +
                                           std::fabs(xhat * refDgamma[c]) / m);
        }
    }
    const std::string w = where + (training ? " backward(train)" : " backward(eval)");
    expectClose(dbeta.data(), refDbeta, tol, dbScale, w + " dbeta");
    expectClose(dgamma.data(), refDgamma, tol, dgScale, w + " dgamma");
    expectClose(dx.data(), refDx, tol, dxScale, w + " dx");
  }
}

// The reductions' float runs where a run's float sums are refused and it is summed again in
// double (reduce.h's accumulate and sumColumnsFloat, with one stream and with several in
// lockstep): squares that underflow float (1e-25) or whose sums overflow it (3e18; the variance
// itself stays a float), and blocks shifted by an outlier (a value of 1e4 among N(0,1): the
// float sums would cancel).
void checkFloatRuns(Geometry g) {
  for (double scale : {1e-25, 3e18, 1.0}) {
    dataScale = scale;
    outlierEvery = scale == 1.0 ? 97 : 0;
    checkGeometry<float>(g, true, false, false);
    checkGeometry<float>(g, false, true, false);
  }
  dataScale = 1;
  outlierEvery = 0;
}

// ---- subnormal data -------------------------------------------------------------------------

// T's subnormal spacing (its smallest positive value): the finest absolute precision of a T.
template <typename T>
double spacing() {
  return sizeof(T) == 4 ? 0x1p-149 : 0x1p-1074;
}

double rmsOf(const std::vector<double>& v) {
  double largest = 0, sum = 0;
  for (double e : v) largest = std::max(largest, std::fabs(e));
  if (largest == 0) return 0;
  for (double e : v) sum += (e / largest) * (e / largest);
  return largest * std::sqrt(sum / static_cast<double>(v.size()));
}

// lib/compare.ts's bar: |got - ref| <= tol * max(|ref|, scale) + spacing<T>(), with scale the RMS
// of ref or, where given, each value's own scale (the terms of a sum, a difference).
template <typename T>
void expectWithinSpacing(const T* got, const std::vector<double>& ref, const std::vector<double>* scales,
                         const std::string& what) {
  const double tol = tolerance<T>(), floor = spacing<T>() / tol, whole = rmsOf(ref);
  double worst = 0;
  for (size_t i = 0; i < ref.size(); i++) {
    const double d = std::fabs(static_cast<double>(got[i]) - ref[i]);
    const double e = d == 0 ? 0 : d / (std::max(std::fabs(ref[i]), scales ? (*scales)[i] : whole) + floor);
    if (!(e <= worst)) worst = e;
  }
  char text[40];
  std::snprintf(text, sizeof text, " error %.3g", worst);
  noteError<T>(worst, tol);
  report(worst <= tol, what + text);
}

// Data whose values, and outputs, are subnormal or nearly (float 1e-42 and 1e-44 with float's
// smallest normal 1.2e-38, double 1e-310): every kernel within the bar above. (Not much smaller
// doubles: a float64 reference then rounds its own products to the spacing, gamma * (x - mean)
// before * invStd here, and is itself off by more than the bar at 1e-316.) A float
// channel's mean is then not a float plus a float: its low part is below the subnormal spacing,
// and ((x - hi) - lo) * scale without it is off by up to 0.5 * invStd spacings (158 with eps 1e-5,
// 4e-4 of y's RMS at 1e-42: forward.cpp's storeCoefficients). pattern: x[i] = (i % 4) * scale,
// the data of the report, else channelData times scale.
template <typename T>
void checkSubnormal(Geometry g, double scale, bool pattern, bool affine, bool relu) {
  const size_t n = static_cast<size_t>(g.elements()), C = static_cast<size_t>(g.channels);
  const double m = static_cast<double>(g.perChannel()), eps = 1e-5;
  char extra[120];
  std::snprintf(extra, sizeof extra, "%s %g%s%s", pattern ? "(i % 4) *" : "data at", scale, affine ? " affine" : "",
                relu ? " relu" : "");
  const std::string where = describe(typeName<T>(), g, extra);
  dataScale = scale;
  std::vector<T> x = channelData<T>(g);
  dataScale = 1;
  if (pattern) {
    for (size_t i = 0; i < n; i++) x[i] = static_cast<T>(static_cast<double>(i % 4) * scale);
  }
  // beta at the data's scale, so that y stays that small.
  std::vector<T> gamma = randomVector<T>(C, 1, 0.5), beta = randomVector<T>(C, 0, scale);
  const T* gp = affine ? gamma.data() : nullptr;
  const T* bp = affine ? beta.data() : nullptr;
  std::vector<double> refMean, refVar, refInv(C);
  referenceMoments(x, g, refMean, refVar);
  for (size_t c = 0; c < C; c++) refInv[c] = 1 / std::sqrt(refVar[c] + eps);

  std::vector<T> mean(C), var(C), y(n), saveMean(C), invStd(C);
  abi::moments(x.data(), g, mean.data(), var.data());
  expectWithinSpacing(mean.data(), refMean, nullptr, where + " moments mean");
  expectWithinSpacing(var.data(), refVar, nullptr, where + " moments var");
  abi::train(x.data(), g, gp, bp, eps, relu, y.data(), saveMean.data(), invStd.data(), (T*)nullptr,
             (T*)nullptr, {0.1, 1, false});
  expectWithinSpacing(saveMean.data(), refMean, nullptr, where + " train mean");
  expectWithinSpacing(invStd.data(), refInv, nullptr, where + " train invStd");
  expectWithinSpacing(y.data(), referenceNormalize(x, g, refMean, refInv, gp, bp, relu), nullptr, where + " train y");

  // Inference from the saved statistics (a running variance of 0).
  std::vector<T> yi(n), zero(C, T(0));
  abi::infer(x.data(), g, saveMean.data(), zero.data(), gp, bp, eps, relu, yi.data());
  std::vector<double> rm(C), ri(C);
  for (size_t c = 0; c < C; c++) rm[c] = saveMean[c], ri[c] = 1 / std::sqrt(eps);
  expectWithinSpacing(yi.data(), referenceNormalize(x, g, rm, ri, gp, bp, relu), nullptr, where + " infer y");

  // Backward from the saved statistics, with dy of unit scale and at the data's scale.
  for (double dyScale : {1.0, scale}) {
    for (bool training : {true, false}) {
      std::vector<T> dy = randomVector<T>(n, 0, dyScale), dx(n), dgamma(C), dbeta(C);
      abi::backward(dy.data(), x.data(), g, saveMean.data(), invStd.data(), gp, relu ? y.data() : nullptr,
                    training, dx.data(), dgamma.data(), dbeta.data());
      auto gradAt = [&](int64_t j) { return relu && !(y[j] > 0) ? 0.0 : static_cast<double>(dy[j]); };
      std::vector<double> refDgamma(C, 0), refDbeta(C, 0), refDx(n), gScale(C, 0), gxScale(C, 0), terms(n);
      for (int64_t c = 0; c < g.channels; c++) {
        const double mu = saveMean[c], inv = invStd[c], k = (gp ? gp[c] : 1.0) * inv;
        for (int64_t o = 0; o < g.outer; o++)
          for (int64_t i = 0; i < g.inner; i++) {
            const int64_t j = index(g, o, c, i);
            refDbeta[c] += gradAt(j);
            refDgamma[c] += gradAt(j) * (x[j] - mu) * inv;
            gScale[c] += gradAt(j) * gradAt(j);
            gxScale[c] += std::pow(gradAt(j) * (x[j] - mu) * inv, 2);
            terms[j] = static_cast<double>(dy[j]) * k;
          }
        for (int64_t o = 0; o < g.outer; o++)
          for (int64_t i = 0; i < g.inner; i++) {
            const int64_t j = index(g, o, c, i);
            const double xhat = (x[j] - mu) * inv;
            refDx[j] = training ? k / m * (m * gradAt(j) - refDbeta[c] - xhat * refDgamma[c]) : gradAt(j) * k;
          }
        gScale[c] = std::sqrt(gScale[c]);
        gxScale[c] = std::sqrt(gxScale[c]);
      }
      // dx at the RMS of its terms dy * gamma * invStd (lib/verify.ts), the sums at the
      // root-sum-square of theirs.
      const std::vector<double> dxScale(n, rmsOf(terms));
      const std::string w = where + (training ? " backward(train)" : " backward(eval)") +
                            (dyScale == 1.0 ? " dy ~ 1" : " dy at the data's scale");
      expectWithinSpacing(dx.data(), refDx, &dxScale, w + " dx");
      expectWithinSpacing(dgamma.data(), refDgamma, &gxScale, w + " dgamma");
      expectWithinSpacing(dbeta.data(), refDbeta, &gScale, w + " dbeta");
    }
  }
}

// ---- bitwise the same for any thread count ------------------------------------------------

template <typename T>
void checkThreads(Geometry g) {
  const size_t n = static_cast<size_t>(g.elements()), C = static_cast<size_t>(g.channels);
  std::vector<T> x = channelData<T>(g), dy = randomVector<T>(n);
  std::vector<T> gamma = randomVector<T>(C, 1, 0.5), beta = randomVector<T>(C);
  struct Outputs {
    std::vector<T> mean, var, y, saveMean, invStd, runMean, runVar, yi, dx, dgamma, dbeta;
  };
  auto run = [&](int threads) {
    simdnorm::setThreads(threads);
    Outputs o{std::vector<T>(C), std::vector<T>(C), std::vector<T>(n), std::vector<T>(C),
              std::vector<T>(C), std::vector<T>(C, T(0.5)), std::vector<T>(C, T(2)), std::vector<T>(n),
              std::vector<T>(n), std::vector<T>(C), std::vector<T>(C)};
    abi::moments(x.data(), g, o.mean.data(), o.var.data());
    abi::train(x.data(), g, gamma.data(), beta.data(), 1e-5, true, o.y.data(), o.saveMean.data(),
               o.invStd.data(), o.runMean.data(), o.runVar.data(), {0.1, 1.0, false});
    abi::infer(x.data(), g, o.runMean.data(), o.runVar.data(), gamma.data(), beta.data(), 1e-5,
               false, o.yi.data());
    abi::backward(dy.data(), x.data(), g, o.saveMean.data(), o.invStd.data(), gamma.data(), o.y.data(),
                  true, o.dx.data(), o.dgamma.data(), o.dbeta.data());
    return o;
  };
  Outputs one = run(1);
  for (int threads : {2, 3}) {
    Outputs more = run(threads);
    const std::string w = describe(typeName<T>(), g, ("threads 1 vs " + std::to_string(threads)).c_str());
    report(sameBits(one.mean, more.mean) && sameBits(one.var, more.var), w + " moments");
    report(sameBits(one.y, more.y) && sameBits(one.saveMean, more.saveMean) &&
               sameBits(one.invStd, more.invStd) && sameBits(one.runMean, more.runMean) &&
               sameBits(one.runVar, more.runVar),
           w + " train");
    report(sameBits(one.yi, more.yi), w + " infer");
    report(sameBits(one.dx, more.dx) && sameBits(one.dgamma, more.dgamma) && sameBits(one.dbeta, more.dbeta),
           w + " backward");
  }
  simdnorm::setThreads(0);
}

// Fills a stretch of this thread's stack with `value`, for the next call to find in whatever
// it leaves uninitialized.
__attribute__((noinline)) void dirtyStack(double value) {
  volatile double junk[1 << 14];
  for (int i = 0; i < (1 << 14); i++) junk[i] = value;
}

// A kernel's result must not depend on what its stack held before: the lanes of a chunk's last
// vector past its channels may be uninitialized, and must not change the other lanes (the
// float invStd was once chosen for the whole vector, so a huge value there switched real lanes
// to double: results then differed with the thread that ran the chunk).
template <typename T>
void checkStackGarbage(Geometry g) {
  const size_t n = static_cast<size_t>(g.elements()), C = static_cast<size_t>(g.channels);
  std::vector<T> x = channelData<T>(g), dy = randomVector<T>(n);
  std::vector<T> gamma = randomVector<T>(C, 1, 0.5), beta = randomVector<T>(C);
  simdnorm::setThreads(1);
  auto run = [&](double garbage) {
    std::vector<T> y(n), mean(C), invStd(C), runMean(C, T(0.5)), runVar(C, T(2)), yi(n), dx(n), dgamma(C), dbeta(C);
    dirtyStack(garbage);
    abi::train(x.data(), g, gamma.data(), beta.data(), 1e-5, false, y.data(), mean.data(), invStd.data(),
               runMean.data(), runVar.data(), {0.1, 1.0, false});
    dirtyStack(garbage);
    abi::infer(x.data(), g, runMean.data(), runVar.data(), gamma.data(), beta.data(), 1e-5, false,
               yi.data());
    dirtyStack(garbage);
    abi::backward(dy.data(), x.data(), g, mean.data(), invStd.data(), gamma.data(), static_cast<const T*>(nullptr), true, dx.data(),
                  dgamma.data(), dbeta.data());
    std::vector<T> all;
    for (const auto* v : {&y, &mean, &invStd, &runMean, &runVar, &yi, &dx, &dgamma, &dbeta}) all.insert(all.end(), v->begin(), v->end());
    return all;
  };
  const std::vector<T> clean = run(0.0);
  for (double garbage : {1e300, -1e300, 1e-300, __builtin_nan("")}) {
    char what[64];
    std::snprintf(what, sizeof what, "a stack holding %g", garbage);
    report(sameBits(clean, run(garbage)), describe(typeName<T>(), g, what));
  }
  simdnorm::setThreads(0);
}

// Calls from several threads at once (as node's libuv workers make them) share the pool: each
// must get the result it gets alone. Prepared on this thread, executed on the callers (as the
// addon does).
void checkConcurrentCalls() {
#ifdef SIMDNORM_CHECK_THREADS
  const Geometry shapes[4] = {{8, 16, 3000}, {30000, 8, 1}, {4, 3, 50000}, {3000, 40, 3}};
  std::vector<float> x[4], expected[4], got[4], mean[4], invStd[4];
  for (int i = 0; i < 4; i++) {
    x[i] = channelData<float>(shapes[i]);
    expected[i].resize(x[i].size());
    got[i].resize(x[i].size());
    mean[i].resize(shapes[i].channels);
    invStd[i].resize(shapes[i].channels);
  }
  bool same = true;
  auto prepare = [&](int i, std::vector<float>& y, sn_norm* norm) {
    const Call call = Call::batchNorm<float>(SN_PHASE_TRAIN, shapes[i])
                          .tensor(SN_SLOT_X, x[i].data())
                          .tensor(SN_SLOT_Y, y.data())
                          .tensor(SN_SLOT_MEAN, mean[i].data())
                          .tensor(SN_SLOT_INV_STD, invStd[i].data());
    const int32_t prepared = call.prepare(norm);
    if (prepared != 0) fail(call.what + ": sn_prepare returned " + resultText(prepared));
    same = same && prepared == 0;
  };
  sn_norm calls[4];
  for (int i = 0; i < 4; i++) {
    prepare(i, expected[i], &calls[i]);
    same = same && sn_execute(&calls[i]) == 0;
    prepare(i, got[i], &calls[i]);
  }
  for (int round = 0; round < 20 && same; round++) {
    int32_t results[4] = {-1, -1, -1, -1};
    std::vector<std::thread> callers;
    for (int i = 0; i < 4; i++) callers.emplace_back([&, i] { results[i] = sn_execute(&calls[i]); });
    for (auto& t : callers) t.join();
    for (int i = 0; i < 4; i++) same = same && results[i] == 0 && sameBits(got[i], expected[i]);
  }
  report(same, "concurrent calls from 4 threads");
#endif
}

// ---- far from zero (README "Numerics") ----------------------------------------------------

void checkLargeOffset(Geometry g) {
  const size_t n = static_cast<size_t>(g.elements()), C = static_cast<size_t>(g.channels);
  std::vector<float> x = randomVector<float>(n, 1e4, 1);
  // Channel 0 is the constant 1e7.
  for (int64_t o = 0; o < g.outer; o++)
    for (int64_t i = 0; i < g.inner; i++) x[index(g, o, 0, i)] = 1e7f;
  std::vector<float> beta = randomVector<float>(C), gamma = randomVector<float>(C, 1, 0.5);
  std::vector<double> refMean, refVar;
  referenceMoments(x, g, refMean, refVar);
  std::vector<float> mean(C), var(C), y(n), saveMean(C), invStd(C);
  abi::moments(x.data(), g, mean.data(), var.data());
  abi::train<float>(x.data(), g, gamma.data(), beta.data(), 1e-5, false, y.data(), saveMean.data(),
                    invStd.data(), nullptr, nullptr, {0.1, 1, false});
  const std::string w = describe("float", g, "1e4 + N(0,1), channel 0 = 1e7");
  double worstMean = 0, worstVar = 0;
  for (size_t c = 0; c < C; c++) {
    worstMean = std::max(worstMean, std::fabs(mean[c] - refMean[c]) / std::fabs(refMean[c]));
    worstMean = std::max(worstMean, std::fabs(saveMean[c] - refMean[c]) / std::fabs(refMean[c]));
    double scale = c == 0 ? 1 : refVar[c];  // the constant channel's variance must be ~0
    worstVar = std::max(worstVar, std::fabs(var[c] - refVar[c]) / scale);
  }
  report(worstMean <= 1e-5, w + " mean rel err " + std::to_string(worstMean));
  report(worstVar <= 1e-5, w + " var rel err " + std::to_string(worstVar));
  std::vector<double> refInv(C);
  for (size_t c = 0; c < C; c++) refInv[c] = 1 / std::sqrt(refVar[c] + 1e-5);
  std::vector<double> refY = referenceNormalize(x, g, refMean, refInv, gamma.data(), beta.data(), false);
  double worstY = 0, worstConst = 0;
  for (int64_t o = 0; o < g.outer; o++)
    for (int64_t c = 0; c < g.channels; c++)
      for (int64_t i = 0; i < g.inner; i++) {
        int64_t j = index(g, o, c, i);
        if (c == 0) worstConst = std::max(worstConst, std::fabs(static_cast<double>(y[j]) - beta[0]));
        else worstY = std::max(worstY, std::fabs(y[j] - refY[j]) / (1 + std::fabs(refY[j])));
      }
  report(worstY <= 1e-5, w + " y rel err " + std::to_string(worstY));
  report(worstConst <= 1e-5, w + " constant channel |y - beta| " + std::to_string(worstConst));
}

// ---- running-stat update and the probes ---------------------------------------------------

template <typename T>
void checkRunning() {
  const int64_t C = 5;
  std::vector<T> rm = randomVector<T>(C), rv = randomVector<T>(C, 2, 0.1), bm = randomVector<T>(C);
  std::vector<T> bv = {1, 2, 3, 4, 5};
  const std::vector<T> rm0 = rm, rv0 = rv;
  bool wrote = abi::update(rm.data(), rv.data(), bm.data(), bv.data(), C, {0.25, 1.5, true}) == 1;
  std::vector<double> refM(C), refV(C);
  for (int64_t c = 0; c < C; c++) {
    refM[c] = 0.75 * rm0[c] + 0.25 * bm[c];
    refV[c] = 0.75 * rv0[c] + 0.25 * bv[c] * 1.5;
  }
  report(wrote, std::string(typeName<T>()) + " update returns 1");
  expectClose(rm.data(), refM, tolerance<T>(), 1, std::string(typeName<T>()) + " update mean");
  expectClose(rv.data(), refV, tolerance<T>(), 1, std::string(typeName<T>()) + " update var");
  // A non-finite batch value: skipped with skipNonFinite, written without.
  const std::vector<T> rm1 = rm, rv1 = rv;
  bv[3] = NAN;
  wrote = abi::update(rm.data(), rv.data(), bm.data(), bv.data(), C, {0.25, 1.5, true}) == 1;
  report(!wrote && sameBits(rm, rm1) && sameBits(rv, rv1), std::string(typeName<T>()) + " skipNonFinite skips");
  wrote = abi::update(rm.data(), rv.data(), bm.data(), bv.data(), C, {0.25, 1.5, false}) == 1;
  report(wrote && std::isnan(rv[3]) && !std::isnan(rv[2]), std::string(typeName<T>()) + " non-finite written");

  // Through the training forward: a NaN in channel 1 of x.
  Geometry g{4, 3, 100};
  std::vector<T> x = channelData<T>(g), y(x.size()), mean(3), inv(3), r1(3, T(1)), r2(3, T(1));
  x[index(g, 2, 1, 17)] = NAN;
  wrote = abi::train(x.data(), g, (const T*)nullptr, (const T*)nullptr, 1e-5, false, y.data(), mean.data(),
                     inv.data(), r1.data(), r2.data(), {0.1, 1, true}) == 1;
  report(!wrote && r1[0] == 1 && r1[1] == 1 && r2[1] == 1 && std::isnan(mean[1]) && !std::isnan(mean[0]),
         std::string(typeName<T>()) + " train skipNonFinite");
  wrote = abi::train(x.data(), g, (const T*)nullptr, (const T*)nullptr, 1e-5, false, y.data(), mean.data(),
                     inv.data(), r1.data(), r2.data(), {0.1, 1, false}) == 1;
  report(wrote && std::isnan(r1[1]) && r1[0] != 1, std::string(typeName<T>()) + " train non-finite written");
}

// Batch Renormalization (flag renorm, README "BatchNorm variants") on the training forward's
// paths: rmax 1, dmax 0 is the plain call bit for bit (y, mean, invStd, the running update); with
// clips, r and d against a double reference, and y against the reference's formula with
// gamma' = gamma * r and beta' = beta + gamma * d rounded to T (as the kernel states); the running
// statistics are updated as without renorm, and r/d read them before the update.
template <typename T>
void checkRenorm(Geometry g) {
  const int64_t C = g.channels;
  const std::vector<T> x = channelData<T>(g), gamma = randomVector<T>(C, 1, 0.5), beta = randomVector<T>(C);
  const std::vector<T> rm0 = randomVector<T>(C, 0, 0.3);
  std::vector<T> rv0 = randomVector<T>(C, 0, 0.5);
  for (T& v : rv0) v = static_cast<T>(0.5 + std::fabs(v));  // a variance
  const std::string what = describe(typeName<T>(), g, " renorm");
  auto call = [&](bool renorm, double rmax, double dmax, std::vector<T>& y, std::vector<T>& mean, std::vector<T>& inv,
                  std::vector<T>& rm, std::vector<T>& rv, std::vector<T>& r, std::vector<T>& d) {
    Call c = Call::batchNorm<T>(SN_PHASE_TRAIN, g);
    c.what = what;
    c.running({0.1, 1.25, false}).flag(SN_FLAG_RENORM, renorm).set(SN_SCALAR_RMAX, rmax).set(SN_SCALAR_DMAX, dmax);
    c.tensor(SN_SLOT_X, x.data()).tensor(SN_SLOT_GAMMA, gamma.data()).tensor(SN_SLOT_BETA, beta.data());
    c.tensor(SN_SLOT_Y, y.data()).tensor(SN_SLOT_MEAN, mean.data()).tensor(SN_SLOT_INV_STD, inv.data());
    c.tensor(SN_SLOT_RUNNING_MEAN, rm.data()).tensor(SN_SLOT_RUNNING_VAR, rv.data());
    if (renorm) c.tensor(SN_SLOT_R, r.data()).tensor(SN_SLOT_D, d.data());
    return c.run();
  };
  const size_t n = x.size();
  std::vector<T> y0(n), m0(C), i0(C), rmA = rm0, rvA = rv0, none;
  call(false, 1, 0, y0, m0, i0, rmA, rvA, none, none);
  std::vector<T> y1(n), m1(C), i1(C), rmB = rm0, rvB = rv0, r(C), d(C);
  call(true, 1, 0, y1, m1, i1, rmB, rvB, r, d);
  bool ones = true;
  for (int64_t c = 0; c < C; c++) ones = ones && r[c] == 1 && d[c] == 0;
  report(ones, what + ": rmax 1, dmax 0 gives r 1, d 0");
  report(sameBits(y0, y1) && sameBits(m0, m1) && sameBits(i0, i1), what + ": rmax 1, dmax 0 is BatchNorm bit for bit");
  report(sameBits(rmA, rmB) && sameBits(rvA, rvB), what + ": rmax 1, dmax 0 updates as BatchNorm");
  std::vector<T> y2(n), m2(C), i2(C), rmC = rm0, rvC = rv0;
  call(true, 1.3, 0.4, y2, m2, i2, rmC, rvC, r, d);
  std::vector<double> mean, var, refR(C), refD(C), inv(C);
  referenceMoments(x, g, mean, var);
  std::vector<T> gp(C), bp(C);
  for (int64_t c = 0; c < C; c++) {
    const double sigma = std::sqrt(static_cast<double>(rv0[c]) + 1e-5);
    refR[c] = std::min(1.3, std::max(1 / 1.3, std::sqrt(var[c] + 1e-5) / sigma));
    refD[c] = std::min(0.4, std::max(-0.4, (mean[c] - rm0[c]) / sigma));
    inv[c] = 1 / std::sqrt(var[c] + 1e-5);
    gp[c] = static_cast<T>(gamma[c] * static_cast<double>(r[c]));
    bp[c] = d[c] == 0 ? beta[c] : static_cast<T>(beta[c] + gamma[c] * static_cast<double>(d[c]));
  }
  expectClose(r.data(), refR, tolerance<T>(), 1, what + " r");
  expectClose(d.data(), refD, tolerance<T>(), 1, what + " d");
  expectClose(y2.data(), referenceNormalize(x, g, mean, inv, gp.data(), bp.data(), false), tolerance<T>(), 1, what + " y");
  report(sameBits(rmA, rmC) && sameBits(rvA, rvC), what + ": the running update as without renorm");
}

// BatchNorm + residual add + ReLU (flag residual, README "BatchNorm variants") on every path:
// train and infer y = relu(y + z) of the plain call's y (rounded to T, the add in T) bit for bit,
// in place over x and over z; backward's dz = dy masked by y > 0 exactly and dx, dgamma, dbeta as
// without the residual, dz over dy too; threads 1 and 3 bitwise. With `wide` (channel 1's gamma ~
// 1e37 in float, 1e300 in double: the double fallback, which then computes every channel from x
// and z, forward.cpp's normalizeAllPlain), y within a few ulps of that composition instead.
template <typename T>
void checkResidual(Geometry g, bool wide) {
  const int64_t C = g.channels;
  const size_t n = static_cast<size_t>(g.elements());
  const std::vector<T> x = channelData<T>(g), z = randomVector<T>(n), dy = randomVector<T>(n), beta = randomVector<T>(C);
  std::vector<T> gamma = randomVector<T>(C, 1, 0.5);
  if (wide && C > 1) gamma[1] = static_cast<T>(sizeof(T) == 4 ? 1e37 : 1e300);
  std::vector<T> rm = randomVector<T>(C, 0, 0.3), rv = randomVector<T>(C, 0, 0.5);
  for (T& v : rv) v = static_cast<T>(0.5 + std::fabs(v));
  const std::string what = describe(typeName<T>(), g, wide ? " residual (wide channel)" : " residual");
  // The forward phase (train or infer) with or without the residual, y and saved statistics out.
  auto forward = [&](int phase, const T* xs, const T* zs, T* y, std::vector<T>& mean, std::vector<T>& inv) {
    Call c = Call::batchNorm<T>(phase, g);
    c.what = what;
    c.flag(SN_FLAG_RELU, zs != nullptr).flag(SN_FLAG_RESIDUAL, zs != nullptr);
    c.tensor(SN_SLOT_X, xs).tensor(SN_SLOT_GAMMA, gamma.data()).tensor(SN_SLOT_BETA, beta.data()).tensor(SN_SLOT_Y, y);
    if (phase == SN_PHASE_TRAIN) c.tensor(SN_SLOT_MEAN, mean.data()).tensor(SN_SLOT_INV_STD, inv.data());
    else c.tensor(SN_SLOT_RUNNING_MEAN, rm.data()).tensor(SN_SLOT_RUNNING_VAR, rv.data());
    if (zs != nullptr) c.tensor(SN_SLOT_RESIDUAL, zs);
    return c.run();
  };
  std::vector<T> y, yFused;
  for (int phase : {SN_PHASE_TRAIN, SN_PHASE_INFER}) {
    const std::string p = what + (phase == SN_PHASE_TRAIN ? " train" : " infer");
    std::vector<T> plain(n), fused(n), mean(C), inv(C), mean2(C), inv2(C);
    forward(phase, x.data(), nullptr, plain.data(), mean, inv);
    simdnorm::setThreads(1);
    forward(phase, x.data(), z.data(), fused.data(), mean2, inv2);
    simdnorm::setThreads(3);
    std::vector<T> fused3(n);
    forward(phase, x.data(), z.data(), fused3.data(), mean2, inv2);
    simdnorm::setThreads(0);
    report(sameBits(fused, fused3), p + ": threads 1 and 3 bitwise");
    bool same = true, close = true;
    for (size_t i = 0; i < n; i++) {
      const T sum = static_cast<T>(plain[i] + z[i]);
      const T want = sum < 0 ? T(0) : sum;
      if (!wide) {
        same = same && std::memcmp(&want, &fused[i], sizeof(T)) == 0;
      } else {  // the double fallback: y rounded to T, plus z in T
        close = close && std::fabs(static_cast<double>(fused[i]) - static_cast<double>(want)) <=
                             4 * tolerance<T>() * (std::fabs(static_cast<double>(want)) + 1);
      }
    }
    report(same, p + ": y = relu(BatchNorm's y + z) bit for bit");
    report(close, p + ": the wide channel's y");
    std::vector<T> overX = x, overZ = z;
    forward(phase, overX.data(), z.data(), overX.data(), mean2, inv2);
    forward(phase, x.data(), overZ.data(), overZ.data(), mean2, inv2);
    report(sameBits(overX, fused) && sameBits(overZ, fused), p + ": y over x, y over z");
    if (phase == SN_PHASE_TRAIN) y = plain, yFused = fused;
  }
  // Backward from the fused forward's statistics, masked by its y.
  std::vector<T> mean(C), inv(C), yTrain(n);
  forward(SN_PHASE_TRAIN, x.data(), z.data(), yTrain.data(), mean, inv);
  auto backward = [&](const T* dys, T* dx, T* dz, std::vector<T>& dgamma, std::vector<T>& dbeta) {
    Call c = Call::batchNorm<T>(SN_PHASE_BACKWARD, g);
    c.what = what + " backward";
    c.flag(SN_FLAG_RELU).flag(SN_FLAG_TRAINING).flag(SN_FLAG_RESIDUAL, dz != nullptr);
    c.tensor(SN_SLOT_DY, dys).tensor(SN_SLOT_X, x.data()).tensor(SN_SLOT_MEAN, mean.data()).tensor(SN_SLOT_INV_STD, inv.data());
    c.tensor(SN_SLOT_GAMMA, gamma.data()).tensor(SN_SLOT_Y, yTrain.data()).tensor(SN_SLOT_DX, dx);
    c.tensor(SN_SLOT_DGAMMA, dgamma.data()).tensor(SN_SLOT_DBETA, dbeta.data());
    if (dz != nullptr) c.tensor(SN_SLOT_DZ, dz);
    return c.run();
  };
  std::vector<T> dx0(n), dg0(C), db0(C), dx1(n), dz1(n, T(-7)), dg1(C), db1(C);
  backward(dy.data(), dx0.data(), nullptr, dg0, db0);
  backward(dy.data(), dx1.data(), dz1.data(), dg1, db1);
  std::vector<T> masked(n);
  for (size_t i = 0; i < n; i++) masked[i] = yTrain[i] > 0 ? dy[i] : T(0);
  report(sameBits(dz1, masked), what + " backward: dz = dy masked by y > 0");
  report(sameBits(dx0, dx1) && sameBits(dg0, dg1) && sameBits(db0, db1), what + " backward: dx, dgamma, dbeta as without dz");
  std::vector<T> dzOverDy = dy, dx2(n), dg2(C), db2(C), dxOverDy = dy, dz3(n), dg3(C), db3(C);
  backward(dzOverDy.data(), dx2.data(), dzOverDy.data(), dg2, db2);
  backward(dxOverDy.data(), dxOverDy.data(), dz3.data(), dg3, db3);
  report(sameBits(dzOverDy, masked) && sameBits(dx2, dx0), what + " backward: dz over dy");
  report(sameBits(dxOverDy, dx0) && sameBits(dz3, masked), what + " backward: dx over dy");
}

// +-Inf in a channel: its mean is that infinity and its variance NaN (as IEEE sums give); the
// other channels are untouched.
template <typename T>
void checkInfinity(Geometry g) {
  std::vector<T> x = channelData<T>(g), mean(g.channels), var(g.channels);
  x[index(g, g.outer - 1, 1, g.inner - 1)] = INFINITY;
  abi::moments(x.data(), g, mean.data(), var.data());
  std::vector<double> refMean, refVar;
  referenceMoments(x, g, refMean, refVar);
  bool ok = mean[1] == INFINITY && std::isnan(var[1]);
  for (int64_t c = 0; c < g.channels; c++) {
    if (c != 1) ok = ok && std::fabs(mean[c] - refMean[c]) <= tolerance<T>() * (1 + std::fabs(refMean[c]));
  }
  report(ok, describe(typeName<T>(), g, "an Inf in channel 1"));
}

// A failed scratch allocation (simulated with setScratchLimit): sn_execute returns
// SN_ERROR_NO_MEMORY for every phase having written nothing, scratchFailed() says so, and the next
// call (memory back) works and clears it.
template <typename T>
void checkOutOfMemory(Geometry g) {
  const size_t n = static_cast<size_t>(g.elements()), c = static_cast<size_t>(g.channels);
  std::vector<T> x = channelData<T>(g), out(n, T(7)), a(c, T(7)), b(c, T(7)), rm(c, T(1)), rv(c, T(2));
  // gamma and beta as the running stats, in tensors of their own (an output overlaps no input).
  const std::vector<T> gamma = rm, beta = rv;
  const std::vector<T> out0 = out, a0 = a, rm0 = rm, rv0 = rv;
  auto untouched = [&] { return out == out0 && a == a0 && b == a0 && rm == rm0 && rv == rv0; };
  bool ok = true;
  simdnorm::setScratchLimit(1);
  executeMayFail = true;
  int32_t r = abi::moments(x.data(), g, a.data(), b.data());
  ok = ok && r == kNoMemory && simdnorm::scratchFailed() && untouched();
  r = abi::train(x.data(), g, gamma.data(), beta.data(), 1e-5, false, out.data(), a.data(), b.data(), rm.data(),
                 rv.data(), {0.1, 1, false});
  ok = ok && r == kNoMemory && simdnorm::scratchFailed() && untouched();
  r = abi::infer(x.data(), g, rm.data(), rv.data(), gamma.data(), beta.data(), 1e-5, false, out.data());
  ok = ok && r == kNoMemory && simdnorm::scratchFailed() && untouched();
  r = abi::backward<T>(x.data(), x.data(), g, rm.data(), rv.data(), nullptr, nullptr, true, out.data(), a.data(),
                       b.data());
  ok = ok && r == kNoMemory && simdnorm::scratchFailed() && untouched();
  // With a residual, y apart from it and y over it (where WASM's settings copy z first).
  for (bool over : {false, true}) {
    std::vector<T> z(n, T(3));
    const std::vector<T> z0 = z;
    Call c = Call::batchNorm<T>(SN_PHASE_TRAIN, g);
    c.what = describe(typeName<T>(), g, " residual out of memory");
    c.flag(SN_FLAG_RESIDUAL).tensor(SN_SLOT_X, x.data()).tensor(SN_SLOT_RESIDUAL, z.data());
    c.tensor(SN_SLOT_Y, over ? z.data() : out.data()).tensor(SN_SLOT_MEAN, a.data()).tensor(SN_SLOT_INV_STD, b.data());
    r = c.run();
    ok = ok && r == kNoMemory && simdnorm::scratchFailed() && untouched() && z == z0;
  }
  executeMayFail = false;
  simdnorm::setScratchLimit(0);
  r = abi::moments(x.data(), g, a.data(), b.data());
  ok = ok && r == 0 && !simdnorm::scratchFailed() && a != a0;
  report(ok, describe(typeName<T>(), g, "a failed scratch allocation"));
}

void checkProbes() {
  for (int64_t bytes : {int64_t{0}, int64_t{1}, int64_t{1000003}, int64_t{9} << 20}) {
    std::vector<char> src(bytes + 3), dst(bytes + 3, 0);
    for (size_t i = 0; i < src.size(); i++) src[i] = static_cast<char>(rng());
    for (int threads : {1, 2}) {
      std::fill(dst.begin(), dst.end(), 0);
      simdnorm::copyBytes(dst.data() + 3, src.data() + 1, bytes, threads);
      report(std::memcmp(dst.data() + 3, src.data() + 1, bytes) == 0 && dst[0] == 0 && dst[2] == 0,
             "copyBytes " + std::to_string(bytes) + " bytes, threads " + std::to_string(threads));
    }
  }
  std::vector<float> v = randomVector<float>(3000001);
  double s = 0, a = 0;
  for (float f : v) s += f, a += std::fabs(f);
  for (int threads : {1, 2}) {
    double got = simdnorm::readFloats(v.data() + 1, static_cast<int64_t>(v.size()) - 1, threads);
    report(std::fabs(got - (s - v[0])) <= 1e-5 * a, "readFloats threads " + std::to_string(threads));
  }
}

// ---- sn_prepare's refusals ------------------------------------------------------------------

// sn_prepare refuses a bad call with the code abi_table.h's sn_error documents, one of
// `expected`, and leaves *out as it was (it "writes nothing on error": norm.h).
void expectRefusal(const Call& call, std::initializer_list<int32_t> expected, const std::string& what) {
  alignas(sn_norm) unsigned char before[sizeof(sn_norm)], after[sizeof(sn_norm)];
  std::memset(before, 0xA5, sizeof before);
  std::memcpy(after, before, sizeof after);
  const int32_t got = call.prepare(reinterpret_cast<sn_norm*>(after));
  bool ok = false;
  for (int32_t e : expected) ok = ok || got == e;
  std::string wanted;
  for (int32_t e : expected) wanted += (wanted.empty() ? "" : " or ") + resultText(e);
  report(ok && std::memcmp(before, after, sizeof before) == 0,
         "sn_prepare refuses " + what + ": " + resultText(got) + " (expected " + wanted + ")");
}

int32_t snError(int code, int argument) { return -((code << 8) | argument); }

// Bad descriptors, each a valid call (accepted, and run once) with one thing wrong. Cheap: it
// runs under the sanitizers in CI. The float tensors live in one arena, at offsets apart enough
// not to overlap (but where a case makes them).
void checkRefusals() {
  const Geometry g{2, 3, 4};  // 24 elements, 3 channels
  std::vector<float> arena(512);
  for (size_t i = 0; i < arena.size(); i++) arena[i] = 0.25f + static_cast<float>(i % 7);
  std::vector<double> wide(128, 0.5);
  float* f = arena.data();
  enum : int { X = 0, Y = 32, DY = 64, DX = 96, GAMMA = 128, BETA = 132, MEAN = 136, INV_STD = 140, VARIANCE = 144,
               RUNNING_MEAN = 148, RUNNING_VAR = 152, DGAMMA = 156, DBETA = 160, R = 164, D = 168, Z = 172, DZ = 200 };
  const Call moments = Call::batchNorm<float>(SN_PHASE_MOMENTS, g)
                           .tensor(SN_SLOT_X, f + X)
                           .tensor(SN_SLOT_MEAN, f + MEAN)
                           .tensor(SN_SLOT_VARIANCE, f + VARIANCE);
  const Call train = Call::batchNorm<float>(SN_PHASE_TRAIN, g)
                         .running({0.1, 1.5, false})
                         .tensor(SN_SLOT_X, f + X)
                         .tensor(SN_SLOT_GAMMA, f + GAMMA)
                         .tensor(SN_SLOT_BETA, f + BETA)
                         .tensor(SN_SLOT_Y, f + Y)
                         .tensor(SN_SLOT_MEAN, f + MEAN)
                         .tensor(SN_SLOT_INV_STD, f + INV_STD)
                         .tensor(SN_SLOT_RUNNING_MEAN, f + RUNNING_MEAN)
                         .tensor(SN_SLOT_RUNNING_VAR, f + RUNNING_VAR);
  const Call infer = Call::batchNorm<float>(SN_PHASE_INFER, g)
                         .tensor(SN_SLOT_X, f + X)
                         .tensor(SN_SLOT_RUNNING_MEAN, f + RUNNING_MEAN)
                         .tensor(SN_SLOT_RUNNING_VAR, f + RUNNING_VAR)
                         .tensor(SN_SLOT_Y, f + Y);
  const Call backward = Call::batchNorm<float>(SN_PHASE_BACKWARD, g)
                            .flag(SN_FLAG_TRAINING)
                            .tensor(SN_SLOT_DY, f + DY)
                            .tensor(SN_SLOT_X, f + X)
                            .tensor(SN_SLOT_MEAN, f + MEAN)
                            .tensor(SN_SLOT_INV_STD, f + INV_STD)
                            .tensor(SN_SLOT_GAMMA, f + GAMMA)
                            .tensor(SN_SLOT_DX, f + DX)
                            .tensor(SN_SLOT_DGAMMA, f + DGAMMA)
                            .tensor(SN_SLOT_DBETA, f + DBETA);
  const Call update = Call::batchNorm<float>(SN_PHASE_UPDATE, g)
                          .running({0.1, 1.5, false})
                          .tensor(SN_SLOT_MEAN, f + MEAN)
                          .tensor(SN_SLOT_VARIANCE, f + VARIANCE)
                          .tensor(SN_SLOT_RUNNING_MEAN, f + RUNNING_MEAN)
                          .tensor(SN_SLOT_RUNNING_VAR, f + RUNNING_VAR);
  const Call momentsDouble = Call::batchNorm<double>(SN_PHASE_MOMENTS, g)
                                 .tensor(SN_SLOT_X, wide.data())
                                 .tensor(SN_SLOT_MEAN, wide.data() + 64)
                                 .tensor(SN_SLOT_VARIANCE, wide.data() + 72);
  // The valid calls: accepted, and they run (under the sanitizers: within the bytes they claim).
  for (const Call* call : {&moments, &train, &infer, &backward, &update, &momentsDouble}) {
    sn_norm norm;
    const int32_t prepared = call->prepare(&norm);
    const int32_t executed = prepared == 0 ? sn_execute(&norm) : prepared;
    report(prepared == 0 && executed >= 0, call->what + " (the refusals' valid call): sn_prepare " +
                                               resultText(prepared) + ", sn_execute " + resultText(executed));
  }
  const std::vector<float> arena0 = arena;
  const std::vector<double> wide0 = wide;
  auto scalar = [](int code, int s) { return snError(code, s + 1); };
  auto slot = [](int code, int t) { return snError(code, t + 1); };
  auto with = [](Call call, int s, double value) { return call.set(s, value); };
  auto tensor = [](Call call, int t, const void* p) { return call.tensor(t, p); };

  // Null arguments, a null descriptor.
  {
    const Call& c = train;
    alignas(sn_norm) unsigned char before[sizeof(sn_norm)], after[sizeof(sn_norm)];
    std::memset(before, 0xA5, sizeof before);
    std::memcpy(after, before, sizeof after);
    sn_norm* out = reinterpret_cast<sn_norm*>(after);
    const int32_t missing = snError(SN_ERROR_MISSING, 0);
    bool ok = sn_prepare(nullptr, c.tensors, c.bytes, out) == missing &&
              sn_prepare(c.scalars, nullptr, c.bytes, out) == missing &&
              sn_prepare(c.scalars, c.tensors, nullptr, out) == missing &&
              sn_prepare(c.scalars, c.tensors, c.bytes, nullptr) == missing;
    report(ok && std::memcmp(before, after, sizeof before) == 0, "sn_prepare refuses null arguments");
    report(sn_execute(nullptr) == missing, "sn_execute refuses a null descriptor");
  }
  // A null required tensor (in, out, inout; one of length 0 may be null).
  expectRefusal(tensor(train, SN_SLOT_X, nullptr), {slot(SN_ERROR_MISSING, SN_SLOT_X)}, "train without x");
  expectRefusal(tensor(train, SN_SLOT_INV_STD, nullptr), {slot(SN_ERROR_MISSING, SN_SLOT_INV_STD)},
                "train without invStd");
  expectRefusal(tensor(backward, SN_SLOT_DY, nullptr), {slot(SN_ERROR_MISSING, SN_SLOT_DY)}, "backward without dy");
  expectRefusal(tensor(infer, SN_SLOT_RUNNING_VAR, nullptr), {slot(SN_ERROR_MISSING, SN_SLOT_RUNNING_VAR)},
                "infer without runningVar");
  expectRefusal(tensor(update, SN_SLOT_RUNNING_MEAN, nullptr), {slot(SN_ERROR_MISSING, SN_SLOT_RUNNING_MEAN)},
                "update without runningMean");
  // Too few bytes, for a required and an optional tensor.
  expectRefusal(Call(train).byteCount(SN_SLOT_X, 24 * 4 - 1), {slot(SN_ERROR_TOO_SHORT, SN_SLOT_X)},
                "x one byte short");
  expectRefusal(Call(train).byteCount(SN_SLOT_GAMMA, 2 * 4), {slot(SN_ERROR_TOO_SHORT, SN_SLOT_GAMMA)},
                "gamma one element short");
  expectRefusal(Call(backward).byteCount(SN_SLOT_DBETA, 0), {slot(SN_ERROR_TOO_SHORT, SN_SLOT_DBETA)},
                "dbeta of 0 bytes");
  // Misaligned to the element size.
  expectRefusal(tensor(train, SN_SLOT_X, reinterpret_cast<char*>(f + X) + 2), {slot(SN_ERROR_MISALIGNED, SN_SLOT_X)},
                "float x at 2 bytes past alignment");
  expectRefusal(tensor(momentsDouble, SN_SLOT_MEAN, reinterpret_cast<char*>(wide.data() + 64) + 4),
                {slot(SN_ERROR_MISALIGNED, SN_SLOT_MEAN)},
                "double mean at 4 bytes past alignment");
  // Batch Renormalization (flag renorm): the train phase of BatchNorm's shape only, rmax >= 1,
  // dmax >= 0, the running statistics and r, d required; r and d outputs that overlap nothing.
  {
    const Call renorm = Call(train).flag(SN_FLAG_RENORM).set(SN_SCALAR_RMAX, 3).set(SN_SCALAR_DMAX, 5)
                            .tensor(SN_SLOT_R, f + R).tensor(SN_SLOT_D, f + D);
    sn_norm norm;
    report(renorm.prepare(&norm) == 0, "renorm train accepted");
    expectRefusal(with(renorm, SN_SCALAR_RMAX, 0.999), {scalar(SN_ERROR_BAD_SCALAR, SN_SCALAR_RMAX)}, "renorm rmax < 1");
    expectRefusal(with(renorm, SN_SCALAR_RMAX, NAN), {scalar(SN_ERROR_BAD_SCALAR, SN_SCALAR_RMAX)}, "renorm rmax NaN");
    expectRefusal(with(renorm, SN_SCALAR_DMAX, -1e-300), {scalar(SN_ERROR_BAD_SCALAR, SN_SCALAR_DMAX)}, "renorm dmax < 0");
    expectRefusal(tensor(renorm, SN_SLOT_RUNNING_MEAN, nullptr), {slot(SN_ERROR_MISSING, SN_SLOT_RUNNING_MEAN)},
                  "renorm without runningMean");
    expectRefusal(tensor(renorm, SN_SLOT_D, nullptr), {slot(SN_ERROR_MISSING, SN_SLOT_D)}, "renorm without d");
    expectRefusal(tensor(renorm, SN_SLOT_R, f + D), {slot(SN_ERROR_OVERLAP, SN_SLOT_R)}, "renorm r = d");
    expectRefusal(tensor(train, SN_SLOT_R, f + R), {slot(SN_ERROR_UNEXPECTED, SN_SLOT_R)}, "r without renorm");
    expectRefusal(Call(renorm).set(SN_SCALAR_SAMPLES, 2).set(SN_SCALAR_OUTER, 1), {scalar(SN_ERROR_BAD_SCALAR, SN_SCALAR_FLAGS)},
                  "renorm with 2 samples");
    expectRefusal(Call(infer).flag(SN_FLAG_RENORM), {scalar(SN_ERROR_BAD_SCALAR, SN_SCALAR_FLAGS)}, "renorm in infer");
  }
  // BatchNorm + residual (flag residual): train, infer and backward of γ/β one per statistic, no rms
  // and not the SyncBatchNorm halves; residual (forward) and dz (backward) required, y may be x or
  // the residual exactly, dz may be dy exactly (not dx too).
  {
    const Call residual = Call(train).flag(SN_FLAG_RESIDUAL).tensor(SN_SLOT_RESIDUAL, f + Z);
    sn_norm norm;
    report(residual.prepare(&norm) == 0, "residual train accepted");
    report(tensor(residual, SN_SLOT_Y, f + Z).prepare(&norm) == 0, "residual train: y = residual accepted");
    report(tensor(residual, SN_SLOT_Y, f + X).prepare(&norm) == 0, "residual train: y = x accepted");
    expectRefusal(tensor(residual, SN_SLOT_RESIDUAL, nullptr), {slot(SN_ERROR_MISSING, SN_SLOT_RESIDUAL)}, "residual flag without residual");
    expectRefusal(tensor(train, SN_SLOT_RESIDUAL, f + Z), {slot(SN_ERROR_UNEXPECTED, SN_SLOT_RESIDUAL)}, "residual without the flag");
    expectRefusal(tensor(residual, SN_SLOT_Y, f + Z + 1), {slot(SN_ERROR_OVERLAP, SN_SLOT_Y)}, "y overlapping residual");
    expectRefusal(Call(residual).byteCount(SN_SLOT_RESIDUAL, 24 * 4 - 4), {slot(SN_ERROR_TOO_SHORT, SN_SLOT_RESIDUAL)}, "residual one element short");
    expectRefusal(Call(residual).flag(SN_FLAG_RMS), {scalar(SN_ERROR_BAD_SCALAR, SN_SCALAR_FLAGS)}, "residual with rms");
    expectRefusal(Call(moments).flag(SN_FLAG_RESIDUAL), {scalar(SN_ERROR_BAD_SCALAR, SN_SCALAR_FLAGS)}, "residual in moments");
    const Call back = Call(backward).flag(SN_FLAG_RESIDUAL);
    expectRefusal(back, {slot(SN_ERROR_MISSING, SN_SLOT_DZ)}, "backward residual without dz");
    expectRefusal(Call(back).flag(SN_FLAG_SUMS_ONLY), {scalar(SN_ERROR_BAD_SCALAR, SN_SCALAR_FLAGS)}, "residual with sumsOnly");
    report(tensor(back, SN_SLOT_DZ, f + DZ).prepare(&norm) == 0, "backward residual accepted");
    report(tensor(back, SN_SLOT_DZ, f + DY).prepare(&norm) == 0, "backward: dz = dy accepted");
    expectRefusal(tensor(tensor(back, SN_SLOT_DZ, f + DY), SN_SLOT_DX, f + DY), {slot(SN_ERROR_OVERLAP, SN_SLOT_DX)}, "dx = dz = dy");
  }
  // An output overlapping another tensor (but for the allowed exact alias y = x, dx = dy).
  expectRefusal(tensor(train, SN_SLOT_Y, f + X + 1), {slot(SN_ERROR_OVERLAP, SN_SLOT_Y)}, "y overlapping x");
  expectRefusal(tensor(train, SN_SLOT_INV_STD, f + MEAN), {slot(SN_ERROR_OVERLAP, SN_SLOT_MEAN)}, "invStd = mean");
  expectRefusal(tensor(train, SN_SLOT_GAMMA, f + Y + 22), {slot(SN_ERROR_OVERLAP, SN_SLOT_Y)},
                "y overlapping gamma");
  expectRefusal(tensor(backward, SN_SLOT_DX, f + X), {slot(SN_ERROR_OVERLAP, SN_SLOT_DX)}, "dx = x");
  expectRefusal(tensor(backward, SN_SLOT_DGAMMA, f + GAMMA), {slot(SN_ERROR_OVERLAP, SN_SLOT_DGAMMA)},
                "dgamma = gamma");
  expectRefusal(tensor(update, SN_SLOT_RUNNING_VAR, f + RUNNING_MEAN + 2),
                {slot(SN_ERROR_OVERLAP, SN_SLOT_RUNNING_MEAN)}, "runningVar overlapping runningMean");
  // A tensor the phase does not use.
  expectRefusal(tensor(moments, SN_SLOT_Y, f + Y), {slot(SN_ERROR_UNEXPECTED, SN_SLOT_Y)}, "moments with y");
  expectRefusal(tensor(infer, SN_SLOT_MEAN, f + MEAN), {slot(SN_ERROR_UNEXPECTED, SN_SLOT_MEAN)}, "infer with mean");
  expectRefusal(tensor(update, SN_SLOT_X, f + X), {slot(SN_ERROR_UNEXPECTED, SN_SLOT_X)}, "update with x");
  expectRefusal(tensor(train, SN_SLOT_VARIANCE, f + VARIANCE), {slot(SN_ERROR_UNEXPECTED, SN_SLOT_VARIANCE)},
                "train with variance");
  // Half a running pair. table.mjs documents "unexpected" (the given half); core.cpp answers
  // "missing" (the absent half): either is a refusal that writes nothing.
  expectRefusal(tensor(train, SN_SLOT_RUNNING_VAR, nullptr),
                {slot(SN_ERROR_UNEXPECTED, SN_SLOT_RUNNING_MEAN), slot(SN_ERROR_MISSING, SN_SLOT_RUNNING_VAR)},
                "train with runningMean alone");
  expectRefusal(tensor(train, SN_SLOT_RUNNING_MEAN, nullptr),
                {slot(SN_ERROR_UNEXPECTED, SN_SLOT_RUNNING_VAR), slot(SN_ERROR_MISSING, SN_SLOT_RUNNING_MEAN)},
                "train with runningVar alone");
  // Counts: negative, fractional, not a number, past 2^53, and a geometry past the address space.
  expectRefusal(with(train, SN_SCALAR_OUTER, -1), {scalar(SN_ERROR_BAD_SCALAR, SN_SCALAR_OUTER)}, "outer -1");
  expectRefusal(with(train, SN_SCALAR_INNER, 2.5), {scalar(SN_ERROR_BAD_SCALAR, SN_SCALAR_INNER)}, "inner 2.5");
  expectRefusal(with(moments, SN_SCALAR_STATS, NAN), {scalar(SN_ERROR_BAD_SCALAR, SN_SCALAR_STATS)}, "stats NaN");
  expectRefusal(with(moments, SN_SCALAR_SAMPLES, INFINITY), {scalar(SN_ERROR_BAD_SCALAR, SN_SCALAR_SAMPLES)},
                "samples Infinity");
  expectRefusal(with(train, SN_SCALAR_AFFINE_RUN, -0.5), {scalar(SN_ERROR_BAD_SCALAR, SN_SCALAR_AFFINE_RUN)},
                "affineRun -0.5");
  expectRefusal(with(backward, SN_SCALAR_OUTER, 0x1p53 + 2), {scalar(SN_ERROR_BAD_SCALAR, SN_SCALAR_OUTER)},
                "outer 2^53 + 2");
  expectRefusal(with(with(train, SN_SCALAR_OUTER, 0x1p52), SN_SCALAR_STATS, 1024),
                {scalar(SN_ERROR_TOO_LARGE, SN_SCALAR_STATS)}, "float elements 2^52 * 1024 * 4");
  expectRefusal(with(with(moments, SN_SCALAR_AFFINE_GROUPS, 0x1p40), SN_SCALAR_AFFINE_SIZE, 0x1p30),
                {scalar(SN_ERROR_TOO_LARGE, SN_SCALAR_AFFINE_GROUPS)}, "affine 2^40 * 2^30");
  expectRefusal(with(train, SN_SCALAR_AFFINE_GROUPS, 0), {scalar(SN_ERROR_BAD_SCALAR, SN_SCALAR_AFFINE_GROUPS)},
                "affineGroups 0 with 3 statistics");
  // Phase, dtype, flags.
  expectRefusal(with(train, SN_SCALAR_PHASE, SN_PHASE_COUNT), {scalar(SN_ERROR_BAD_SCALAR, SN_SCALAR_PHASE)},
                "phase past the last");
  expectRefusal(with(train, SN_SCALAR_DTYPE, 1.5), {scalar(SN_ERROR_BAD_SCALAR, SN_SCALAR_DTYPE)}, "dtype 1.5");
  expectRefusal(with(train, SN_SCALAR_FLAGS, 1 << 20), {scalar(SN_ERROR_BAD_SCALAR, SN_SCALAR_FLAGS)},
                "an unknown flag (2^20)");
  expectRefusal(with(train, SN_SCALAR_FLAGS, 1.5), {scalar(SN_ERROR_BAD_SCALAR, SN_SCALAR_FLAGS)}, "flags 1.5");
  expectRefusal(with(train, SN_SCALAR_FLAGS, -1), {scalar(SN_ERROR_BAD_SCALAR, SN_SCALAR_FLAGS)}, "flags -1");
  // eps <= 0 (or not finite) where it is used, factor out of [0, 1], varScale < 0.
  for (double eps : {0.0, -1e-5, -0.0, double(NAN), double(INFINITY)}) {
    expectRefusal(with(train, SN_SCALAR_EPS, eps), {scalar(SN_ERROR_BAD_SCALAR, SN_SCALAR_EPS)},
                  "train eps " + std::to_string(eps));
  }
  expectRefusal(with(infer, SN_SCALAR_EPS, 0), {scalar(SN_ERROR_BAD_SCALAR, SN_SCALAR_EPS)}, "infer eps 0");
  for (double factor : {1.5, 1 + 0x1p-52, -0.1, double(NAN)}) {
    expectRefusal(with(train, SN_SCALAR_FACTOR, factor), {scalar(SN_ERROR_BAD_SCALAR, SN_SCALAR_FACTOR)},
                  "train factor " + std::to_string(factor));
  }
  expectRefusal(with(update, SN_SCALAR_FACTOR, 2), {scalar(SN_ERROR_BAD_SCALAR, SN_SCALAR_FACTOR)}, "update factor 2");
  expectRefusal(with(update, SN_SCALAR_VAR_SCALE, -1), {scalar(SN_ERROR_BAD_SCALAR, SN_SCALAR_VAR_SCALE)},
                "update varScale -1");
  report(sameBits(arena, arena0) && sameBits(wide, wide0), "sn_prepare's refusals leave the tensors as they were");
}

// ---- the benchmark ------------------------------------------------------------------------

double seconds(const std::function<void()>& f) {
  auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> t) {
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Times of op and of the copy, run alternately (the machine's load drifts), median of 11 each.
std::pair<double, double> medianSeconds(const std::function<void()>& op, const std::function<void()>& copy) {
  std::vector<double> a, b;
  op();
  copy();
  for (int r = 0; r < 11; r++) {
    a.push_back(seconds(op));
    b.push_back(seconds(copy));
  }
  return {median(a), median(b)};
}

int bench() {
  const int64_t n = int64_t{32} * 64 * 56 * 56;
  std::vector<float> x = randomVector<float>(n, 0.5, 1), y(n), dy = randomVector<float>(n), dx(n);
  std::vector<float> gamma(64, 1.5f), beta(64, 0.25f), mean(64), invStd(64), rm(64, 0.f), rv(64, 1.f);
  std::vector<float> dgamma(64), dbeta(64);
  std::printf("simd %s, %d hardware threads; float32, %lld elements (%.1f MB per tensor)\n", simdnorm::simdLevel(),
              simdnorm::maxThreads(), (long long)n, n * 4 / 1e6);
  std::printf("median of 11, each op alternating with the copy; vs copy = time / (copy time * bytes / 8)\n");
  std::printf("%-6s %-8s %3s %9s %8s %8s\n", "layout", "op", "thr", "ms", "GB/s", "vs copy");
  struct Layout {
    const char* name;
    Geometry g;
  };
  for (Layout layout : {Layout{"NCHW", {32, 64, 3136}}, Layout{"NHWC", {100352, 64, 1}}}) {
    for (int threads : {1, 2}) {
      simdnorm::setThreads(threads);
      const Geometry g = layout.g;
      auto copy = [&] { simdnorm::copyBytes(y.data(), x.data(), n * 4, threads); };
      auto row = [&](const char* op, double bytesPerElement, std::pair<double, double> t) {
        std::printf("%-6s %-8s %3d %9.3f %8.1f %8.2f\n", layout.name, op, threads, t.first * 1e3,
                    bytesPerElement * n / t.first / 1e9, t.first / (t.second * bytesPerElement / 8));
      };
      // Each op prepared once; sn_execute is what is timed.
      auto prepared = [](const Call& call) {
        sn_norm norm;
        const int32_t r = call.prepare(&norm);
        if (r != 0) {
          std::printf("%s: sn_prepare returned %s\n", call.what.c_str(), resultText(r).c_str());
          std::exit(1);
        }
        return norm;
      };
      const sn_norm train = prepared(Call::batchNorm<float>(SN_PHASE_TRAIN, g)
                                         .running({0.1, 1.0, false})
                                         .tensor(SN_SLOT_X, x.data())
                                         .tensor(SN_SLOT_GAMMA, gamma.data())
                                         .tensor(SN_SLOT_BETA, beta.data())
                                         .tensor(SN_SLOT_Y, y.data())
                                         .tensor(SN_SLOT_MEAN, mean.data())
                                         .tensor(SN_SLOT_INV_STD, invStd.data())
                                         .tensor(SN_SLOT_RUNNING_MEAN, rm.data())
                                         .tensor(SN_SLOT_RUNNING_VAR, rv.data()));
      const sn_norm infer = prepared(Call::batchNorm<float>(SN_PHASE_INFER, g)
                                         .tensor(SN_SLOT_X, x.data())
                                         .tensor(SN_SLOT_RUNNING_MEAN, rm.data())
                                         .tensor(SN_SLOT_RUNNING_VAR, rv.data())
                                         .tensor(SN_SLOT_GAMMA, gamma.data())
                                         .tensor(SN_SLOT_BETA, beta.data())
                                         .tensor(SN_SLOT_Y, y.data()));
      const sn_norm moments = prepared(Call::batchNorm<float>(SN_PHASE_MOMENTS, g)
                                           .tensor(SN_SLOT_X, x.data())
                                           .tensor(SN_SLOT_MEAN, mean.data())
                                           .tensor(SN_SLOT_VARIANCE, invStd.data()));
      const sn_norm backward = prepared(Call::batchNorm<float>(SN_PHASE_BACKWARD, g)
                                            .flag(SN_FLAG_TRAINING)
                                            .tensor(SN_SLOT_DY, dy.data())
                                            .tensor(SN_SLOT_X, x.data())
                                            .tensor(SN_SLOT_MEAN, mean.data())
                                            .tensor(SN_SLOT_INV_STD, invStd.data())
                                            .tensor(SN_SLOT_GAMMA, gamma.data())
                                            .tensor(SN_SLOT_DX, dx.data())
                                            .tensor(SN_SLOT_DGAMMA, dgamma.data())
                                            .tensor(SN_SLOT_DBETA, dbeta.data()));
      row("copy", 8, medianSeconds(copy, copy));
      auto execute = [](const sn_norm& norm) {
        const int32_t r = sn_execute(&norm);
        if (r < 0) {
          std::printf("%s: sn_execute returned %s\n", sn_phase_names[norm.phase], resultText(r).c_str());
          std::exit(1);
        }
      };
      row("train", 12, medianSeconds([&] { execute(train); }, copy));
      row("infer", 8, medianSeconds([&] { execute(infer); }, copy));
      row("moments", 4, medianSeconds([&] { execute(moments); }, copy));
      row("backward", 20, medianSeconds([&] { execute(backward); }, copy));
    }
  }
  simdnorm::setThreads(0);
  return 0;
}

}  // namespace

// Every check, on the kernels simdLevel() names.
static void runChecks() {
  std::printf("simd %s, threads %d (max %d)\n", simdnorm::simdLevel(), simdnorm::getThreads(),
              simdnorm::maxThreads());
  worstRatio[0] = worstRatio[1] = 0;

  // Geometries chosen for their edges: empty, single values, every tail width, channels-last
  // (inner == 1), C = 1, tiny planes with many channels, planes split in pieces, wide rows.
  std::vector<Geometry> geometries = {
      {0, 3, 5},      {3, 0, 5},       {3, 4, 0},     {1, 1, 1},       {2, 1, 1},      {1, 5, 1},
      {5, 1, 1},      {4, 3, 16},      {2, 2, 17},    {3, 2, 31},      {2, 3, 33},     {2, 9, 63},
      {3, 8, 64},     {2, 8, 65},      {1, 1, 100},   {7, 3, 100},     {2, 64, 49},    {2, 3, 3136},
      {1, 1, 40000},  {2, 3, 40000},   {1, 2, 70001}, {20000, 3, 1},   {5000, 64, 1},  {3, 5000, 1},
      {4, 600, 7},    {2, 40000, 1},   {1000, 13, 5}, {64, 1001, 1},   {7, 1, 1},      {300, 3, 2},
      {129, 7, 3},    {33, 10, 15},    {4, 8, 100},   {1, 9, 16385},   {513, 2, 1},    {1, 20, 1},
      {100000, 1, 1}, {3, 2, 1 << 17}};
  for (int64_t inner = 1; inner <= 20; inner++) geometries.push_back({3, 5, inner});
  for (int64_t c = 1; c <= 17; c++) geometries.push_back({11, c, 1});
  std::uniform_int_distribution<int64_t> small(1, 40), wide(1, 300);
  for (int i = 0; i < 60; i++) geometries.push_back({small(rng), small(rng), small(rng) * (i % 3 == 0 ? 40 : 1)});
  for (int i = 0; i < 20; i++) geometries.push_back({wide(rng), wide(rng), 1});

  int variant = 0;
  for (Geometry g : geometries) {
    // Flags cycle through the combinations so that every geometry sees several.
    for (int k = 0; k < 2; k++, variant++) {
      bool affine = variant % 2 == 0, relu = variant / 2 % 2 == 1, inPlace = variant / 4 % 2 == 1;
      checkGeometry<float>(g, affine, relu, inPlace);
      checkGeometry<double>(g, !affine, !relu, inPlace);
    }
  }
  for (Geometry g : {Geometry{8, 3, 10000}, Geometry{20000, 64, 1}, Geometry{4, 2048, 7}, Geometry{2, 1, 100000},
                     Geometry{16, 64, 196}, Geometry{70000, 3, 1}, Geometry{3, 50000, 1}, Geometry{9, 17, 2000},
                     Geometry{2, 40000, 1}}) {
    checkThreads<float>(g);
    checkThreads<double>(g);
  }
  for (Geometry g : {Geometry{8, 4, 5000}, Geometry{40000, 4, 1}, Geometry{4, 3, 7}, Geometry{2, 2, 100000},
                     Geometry{4, 1024, 1}}) {
    checkLargeOffset(g);
  }
  // Planes path (few channels; one task per channel), rows path (row blocks; one block).
  for (Geometry g : {Geometry{8, 3, 10000}, Geometry{9, 12, 1100}, Geometry{6, 5, 3000}, Geometry{5000, 64, 1},
                     Geometry{8192, 4, 1}, Geometry{3000, 24, 1}}) {
    checkFloatRuns(g);
  }
  // Subnormal data on every path: planes (fused, few channels, pieces of planes), rows (tiny
  // planes, channels-last in row blocks, fusedRows, a few rows per channel).
  for (Geometry g : {Geometry{8, 16, 1155}, Geometry{4, 6, 63}, Geometry{3, 2, 40000}, Geometry{512, 300, 2},
                     Geometry{7440, 24, 1}, Geometry{300, 26, 1}, Geometry{8, 1040, 1}}) {
    for (int k = 0; k < 4; k++) {
      const bool affine = k % 2 == 1, relu = k / 2 == 1;
      for (double scale : {1e-42, 1e-44}) checkSubnormal<float>(g, scale, k == 0, affine, relu);
      checkSubnormal<double>(g, 1e-310, k == 0, affine, relu);
    }
  }
  for (Geometry g : {Geometry{3, 4, 100}, Geometry{300, 4, 1}, Geometry{1, 3, 1}, Geometry{1000, 2, 3}, Geometry{4, 2, 40000},
                     Geometry{2, 64, 1}, Geometry{8, 1040, 1}}) {
    checkInfinity<float>(g);
    checkInfinity<double>(g);
  }
  for (Geometry g : {Geometry{3, 4, 100}, Geometry{300, 4, 1}, Geometry{4, 40, 3000}, Geometry{2, 4096, 1}}) {
    checkOutOfMemory<float>(g);
    checkOutOfMemory<double>(g);
  }
  for (Geometry g : {Geometry{8, 3, 10000}, Geometry{2, 3, 5}, Geometry{4, 13, 700}, Geometry{300, 13, 1}, Geometry{2, 1030, 1}}) {
    checkStackGarbage<float>(g);
    checkStackGarbage<double>(g);
  }
  // Renorm on the planes path (fused per channel and not), rows, fusedRows and a few rows.
  for (Geometry g : {Geometry{8, 3, 10000}, Geometry{4, 5, 33}, Geometry{5000, 64, 1}, Geometry{300, 26, 1},
                     Geometry{2, 64, 49}, Geometry{7, 3, 1}, Geometry{8, 1040, 1}}) {
    checkRenorm<float>(g);
    checkRenorm<double>(g);
  }
  // BatchNorm + residual on the same paths, with and without a channel on the double fallback.
  for (Geometry g : {Geometry{8, 3, 10000}, Geometry{4, 5, 33}, Geometry{5000, 64, 1}, Geometry{300, 26, 1},
                     Geometry{2, 64, 49}, Geometry{7, 3, 1}, Geometry{8, 1040, 1}}) {
    for (bool wide : {false, true}) {
      checkResidual<float>(g, wide);
      checkResidual<double>(g, wide);
    }
  }
  checkConcurrentCalls();
  checkRunning<float>();
  checkRunning<double>();
  checkProbes();
  std::printf("  %s: largest error / tolerance: float %.4g, double %.4g\n", simdnorm::simdLevel(), worstRatio[0],
              worstRatio[1]);
}

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "--bench") == 0) return bench();
  const std::string dispatched = simdnorm::simdLevel();
  checkRefusals();
  runChecks();
  if (dispatched == "avx2-fma") {
    // The portable kernels too (the build WASM has, with its row streams: kernels.cmake).
    simdnorm::usePortableKernels(true);
    runChecks();
    simdnorm::usePortableKernels(false);
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
