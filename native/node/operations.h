// The kernel calls the binding exposes. Each operation is one struct that
//   - reads and checks its positional arguments (the constructor, through ArgReader), and
//   - runs the kernel on the caller's memory (run(), which touches no JS value, so the async
//     workers can call it off the main thread).
// The positional argument order below is the binding's ABI; lib/backends/native.ts mirrors it in
// the NativeBinding interface. Arrays are Float32Array or Float64Array, all of x's element type;
// "C" is channels; parameters marked |null may be null.
#pragma once

#include <node_api.h>

#include "args.h"

namespace simdnorm::node {

// The result of an operation that returns undefined to JS.
struct Done {};

// The JS value of a result; nullptr when the environment cannot make one (tearing down).
inline napi_value jsBoolean(napi_env env, bool value) noexcept {
  napi_value result;
  return napi_get_boolean(env, value, &result) == napi_ok ? result : nullptr;
}
inline napi_value jsUndefined(napi_env env) noexcept {
  napi_value result;
  return napi_get_undefined(env, &result) == napi_ok ? result : nullptr;
}

// Every constructor below ends with ArgReader::checkOverlaps: no output shares memory with
// another array argument but for the one in-place alias the README allows.

// train(x, outer, channels, inner, gamma|null, beta|null, eps, relu, y, mean, invStd,
//       runningMean|null, runningVar|null, factor, varScale, skipNonFinite) -> boolean
//   x, y: outer*channels*inner; gamma, beta, mean, invStd, runningMean, runningVar: C.
//   runningMean and runningVar are both null or both given; returns whether they were written.
struct Train {
  static constexpr const char* kName = "train";
  static constexpr const char* kAsyncName = "trainAsync";
  static constexpr size_t kArgumentCount = 16;
  using Result = bool;

  explicit Train(ArgReader& args);
  Result run() const;
  static napi_value toJs(napi_env env, Result written) noexcept { return jsBoolean(env, written); }

  FloatType type;
  FloatView x, gamma, beta, y, mean, invStd, runningMean, runningVar;
  Geometry geometry;
  double eps;
  bool relu;
  RunningUpdate update;

 private:
  template <typename T>
  Result runAs() const;
};

// infer(x, outer, channels, inner, runningMean, runningVar, gamma|null, beta|null, eps, relu, y)
//   -> undefined.  x, y: outer*channels*inner; the others: C.
struct Infer {
  static constexpr const char* kName = "infer";
  static constexpr const char* kAsyncName = "inferAsync";
  static constexpr size_t kArgumentCount = 11;
  using Result = Done;

  explicit Infer(ArgReader& args);
  Result run() const;
  static napi_value toJs(napi_env env, Result) noexcept { return jsUndefined(env); }

  FloatType type;
  FloatView x, runningMean, runningVar, gamma, beta, y;
  Geometry geometry;
  double eps;
  bool relu;

 private:
  template <typename T>
  Result runAs() const;
};

// backward(dy, x, outer, channels, inner, mean, invStd, gamma|null, y|null, training,
//          dx, dgamma, dbeta) -> undefined
//   dy, x, y, dx: outer*channels*inner; mean, invStd, gamma, dgamma, dbeta: C.
struct Backward {
  static constexpr const char* kName = "backward";
  static constexpr const char* kAsyncName = "backwardAsync";
  static constexpr size_t kArgumentCount = 13;
  using Result = Done;

  explicit Backward(ArgReader& args);
  Result run() const;
  static napi_value toJs(napi_env env, Result) noexcept { return jsUndefined(env); }

  FloatType type;
  FloatView dy, x, mean, invStd, gamma, y, dx, dgamma, dbeta;
  Geometry geometry;
  bool training;

 private:
  template <typename T>
  Result runAs() const;
};

// moments(x, outer, channels, inner, mean, variance) -> undefined
//   x: outer*channels*inner; mean, variance (biased): C.
struct Moments {
  static constexpr const char* kName = "moments";
  static constexpr size_t kArgumentCount = 6;
  using Result = Done;

  explicit Moments(ArgReader& args);
  Result run() const;
  static napi_value toJs(napi_env env, Result) noexcept { return jsUndefined(env); }

  FloatType type;
  FloatView x, mean, variance;
  Geometry geometry;

 private:
  template <typename T>
  Result runAs() const;
};

// updateRunningStats(runningMean, runningVar, batchMean, batchVar, factor, varScale,
//                    skipNonFinite) -> boolean
//   all four arrays have runningMean's length C; batchVar is the biased batch variance.
//   Returns whether the running stats were written.
struct UpdateRunningStats {
  static constexpr const char* kName = "updateRunningStats";
  static constexpr size_t kArgumentCount = 7;
  using Result = bool;

  explicit UpdateRunningStats(ArgReader& args);
  Result run() const;
  static napi_value toJs(napi_env env, Result written) noexcept { return jsBoolean(env, written); }

  FloatType type;
  FloatView runningMean, runningVar, batchMean, batchVar;
  RunningUpdate update;

 private:
  template <typename T>
  Result runAs() const;
};

}  // namespace simdnorm::node
