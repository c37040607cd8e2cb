// simdnorm's N-API addon: the kernels of native/kernels/batchnorm.h over the caller's typed
// arrays (zero-copy). The argument order of every function is in operations.h; the checks in
// args.h; the async variants in async_worker.h. Built by binding.gyp (node-gyp) and by
// CMakeLists.txt (cmake-js), which say which one they are with a define.
#include <napi.h>

#include "args.h"
#include "async_worker.h"
#include "operations.h"

#if defined(SIMDNORM_BUILD_NODE_GYP)
#define SIMDNORM_BUILD_NAME "node-gyp"
#elif defined(SIMDNORM_BUILD_CMAKE_JS)
#define SIMDNORM_BUILD_NAME "cmake-js"
#else
#error "define SIMDNORM_BUILD_NODE_GYP or SIMDNORM_BUILD_CMAKE_JS"
#endif

namespace simdnorm::node {
namespace {

// setThreads and the probes refuse more threads than the kernels' pool ever uses
// (native/kernels/parallel.cpp caps it at 256) rather than clamping silently.
constexpr int64_t kThreadLimit = 256;

template <class Operation>
Napi::Value runSync(const Napi::CallbackInfo& info) {
  ArgReader args(info, Operation::kName, Operation::kArgumentCount);
  const auto result = Operation(args).run();
  if (simdnorm::scratchFailed()) throw Napi::RangeError::New(info.Env(), outOfMemory(Operation::kName));
  return Operation::toJs(info.Env(), result);
}

// setThreads(n) -> undefined. n >= 1: threads a call may use (the caller counts as one);
// 0 restores the default (hardware concurrency).
Napi::Value setThreadCount(const Napi::CallbackInfo& info) {
  ArgReader args(info, "setThreads", 1);
  simdnorm::setThreads(static_cast<int>(args.integer(0, "n", 0, kThreadLimit)));
  return info.Env().Undefined();
}

// getThreads() -> number
Napi::Value getThreadCount(const Napi::CallbackInfo& info) {
  ArgReader args(info, "getThreads", 0);
  return Napi::Number::New(info.Env(), simdnorm::getThreads());
}

// setScratchLimit(bytes) -> undefined. Testing only: kernel scratch requests above `bytes` fail
// as if malloc had (0: no limit), so the out-of-memory path can be exercised from JS.
Napi::Value setScratchLimitBytes(const Napi::CallbackInfo& info) {
  ArgReader args(info, "setScratchLimit", 1);
  simdnorm::setScratchLimit(static_cast<size_t>(args.integer(0, "bytes", 0, int64_t{1} << 50)));
  return info.Env().Undefined();
}

// info() -> { simd, threads, maxThreads, napiVersion, build }
Napi::Value buildInfo(const Napi::CallbackInfo& info) {
  ArgReader args(info, "info", 0);
  Napi::Env env = info.Env();
  Napi::Object result = Napi::Object::New(env);
  result.Set("simd", simdLevel());
  result.Set("threads", simdnorm::getThreads());
  result.Set("maxThreads", simdnorm::maxThreads());
  result.Set("napiVersion", NAPI_VERSION);
  result.Set("build", SIMDNORM_BUILD_NAME);
  return result;
}

// copyBytes(dst, src, threads) -> undefined: copies src into dst (typed arrays of equal
// byteLength) with `threads` threads (0: the current setting). A bandwidth probe.
Napi::Value copyByteArrays(const Napi::CallbackInfo& info) {
  ArgReader args(info, "copyBytes", 3);
  ByteView dst = args.bytes(0, "dst");
  ByteView src = args.bytes(1, "src");
  if (dst.bytes != src.bytes) {
    args.rangeError("argument 2 'src' must have the byteLength of 'dst' = " +
                    std::to_string(dst.bytes) + "; received byteLength " +
                    std::to_string(src.bytes));
  }
  int threads = static_cast<int>(args.integer(2, "threads", 0, kThreadLimit));
  simdnorm::copyBytes(dst.data, src.data, static_cast<int64_t>(dst.bytes), threads);
  return info.Env().Undefined();
}

// readFloats(src, threads) -> number: the sum of a Float32Array read with `threads` threads
// (0: the current setting). A bandwidth probe.
Napi::Value readFloatArray(const Napi::CallbackInfo& info) {
  ArgReader args(info, "readFloats", 2);
  FloatView src = args.floatsAnyLength(0, "src");
  if (args.type() != FloatType::Float32) args.typeError(0, "src", "a Float32Array");
  int threads = static_cast<int>(args.integer(1, "threads", 0, kThreadLimit));
  double sum = simdnorm::readFloats(src.as<float>(), static_cast<int64_t>(src.length), threads);
  return Napi::Number::New(info.Env(), sum);
}

Napi::Object init(Napi::Env env, Napi::Object exports) {
  exports.Set("train", Napi::Function::New(env, runSync<Train>, "train"));
  exports.Set("infer", Napi::Function::New(env, runSync<Infer>, "infer"));
  exports.Set("backward", Napi::Function::New(env, runSync<Backward>, "backward"));
  exports.Set("moments", Napi::Function::New(env, runSync<Moments>, "moments"));
  exports.Set("updateRunningStats",
              Napi::Function::New(env, runSync<UpdateRunningStats>, "updateRunningStats"));
  exports.Set("trainAsync", Napi::Function::New(env, runAsync<Train>, "trainAsync"));
  exports.Set("inferAsync", Napi::Function::New(env, runAsync<Infer>, "inferAsync"));
  exports.Set("backwardAsync", Napi::Function::New(env, runAsync<Backward>, "backwardAsync"));
  exports.Set("setThreads", Napi::Function::New(env, setThreadCount, "setThreads"));
  exports.Set("getThreads", Napi::Function::New(env, getThreadCount, "getThreads"));
  exports.Set("info", Napi::Function::New(env, buildInfo, "info"));
  exports.Set("setScratchLimit", Napi::Function::New(env, setScratchLimitBytes, "setScratchLimit"));
  exports.Set("copyBytes", Napi::Function::New(env, copyByteArrays, "copyBytes"));
  exports.Set("readFloats", Napi::Function::New(env, readFloatArray, "readFloats"));
  return exports;
}

}  // namespace
}  // namespace simdnorm::node

static Napi::Object initSimdnorm(Napi::Env env, Napi::Object exports) {
  return simdnorm::node::init(env, exports);
}

NODE_API_MODULE(simdnorm, initSimdnorm)
