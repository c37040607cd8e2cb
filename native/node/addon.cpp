// simdnorm's N-API addon: the normalization core's C ABI (native/kernels/norm.h) over the
// caller's typed arrays (zero-copy). run and its arguments are in operations.h; runAsync in
// async.h (its memory pinned as pin.h says); the probes and settings below. Built by binding.gyp
// (node-gyp) and by CMakeLists.txt (cmake-js), which say which one they are with a define.
//
// Plain N-API (node_api.h), no node-addon-api wrappers: every exported function is entry<...>,
// which turns any C++ exception into a JS exception and never lets one escape (an exception that
// leaves an N-API callback reaches std::terminate and aborts the process, workers included). The
// binding keeps no per-environment state (the kernels' thread pool and settings are per process),
// so it needs no instance data or environment cleanup hook: every async call in flight holds what
// it needs and is settled or dropped by async.h's complete callback.
#include <node_api.h>

#include <new>
#include <string>

#include "../kernels/batchnorm.h"
#include "args.h"
#include "async.h"
#include "operations.h"
#include "pin.h"

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

// Throws `error` as a JS exception; ignores failures (the environment may be tearing down, or an
// exception may already be pending): never throws.
void throwJs(napi_env env, JsError::Kind kind, const char* message) noexcept {
  napi_value error = makeJsError(env, kind, message);
  if (error != nullptr) napi_throw(env, error);
}

using Handler = napi_value (*)(napi_env, napi_callback_info);

// Every exported function: C++ exceptions become JS exceptions here and go no further.
template <Handler handler>
napi_value entry(napi_env env, napi_callback_info info) noexcept {
  try {
    return handler(env, info);
  } catch (const JsError& error) {
    throwJs(env, error.kind, error.message.c_str());
  } catch (const std::bad_alloc&) {
    throwJs(env, JsError::Kind::Error, "simdnorm: out of memory");
  } catch (...) {
    throwJs(env, JsError::Kind::Error, "simdnorm: internal error");
  }
  return nullptr;
}

napi_value undefinedValue(napi_env env) {
  napi_value result;
  return napi_get_undefined(env, &result) == napi_ok ? result : nullptr;
}

// run(scalars, ...tensors) -> number (operations.h): sn_prepare, then sn_execute on this thread
// (the kernels' pool splits the work).
napi_value runSync(napi_env env, napi_callback_info info) {
  const Args args(env, info, "run", kRunArguments, false);
  const NormCall call = readCall(args, "run");
  const int32_t result = sn_execute(&call.norm);
  if (result < 0) throw abiError(result, call.norm.phase);
  return jsNumber(env, result);
}

// setThreads(n) -> undefined. n >= 1: threads a call may use (the caller counts as one);
// 0 restores the default (hardware concurrency).
napi_value setThreadCount(napi_env env, napi_callback_info info) {
  const Args args(env, info, "setThreads", 1);
  simdnorm::setThreads(static_cast<int>(args.integer(0, "n", 0, kThreadLimit)));
  return undefinedValue(env);
}

// getThreads() -> number
napi_value getThreadCount(napi_env env, napi_callback_info info) {
  Args(env, info, "getThreads", 0);
  return jsNumber(env, simdnorm::getThreads());
}

// setScratchLimit(bytes) -> undefined. Testing only: kernel scratch requests above `bytes` fail
// as if malloc had (0: no limit), so the out-of-memory path can be exercised from JS.
napi_value setScratchLimitBytes(napi_env env, napi_callback_info info) {
  const Args args(env, info, "setScratchLimit", 1);
  simdnorm::setScratchLimit(static_cast<size_t>(args.integer(0, "bytes", 0, int64_t{1} << 50)));
  return undefinedValue(env);
}

// info() -> { simd, threads, maxThreads, napiVersion, build }
napi_value buildInfo(napi_env env, napi_callback_info info) {
  Args(env, info, "info", 0);
  napi_value result, simd, build;
  if (napi_create_object(env, &result) != napi_ok ||
      napi_create_string_utf8(env, simdLevel(), NAPI_AUTO_LENGTH, &simd) != napi_ok ||
      napi_create_string_utf8(env, SIMDNORM_BUILD_NAME, NAPI_AUTO_LENGTH, &build) != napi_ok) {
    return nullptr;
  }
  // result is a fresh plain object: setting its properties runs no user code
  const napi_property_descriptor fields[] = {
      {"simd", nullptr, nullptr, nullptr, nullptr, simd, napi_default_jsproperty, nullptr},
      {"threads", nullptr, nullptr, nullptr, nullptr, jsNumber(env, simdnorm::getThreads()),
       napi_default_jsproperty, nullptr},
      {"maxThreads", nullptr, nullptr, nullptr, nullptr, jsNumber(env, simdnorm::maxThreads()),
       napi_default_jsproperty, nullptr},
      {"napiVersion", nullptr, nullptr, nullptr, nullptr, jsNumber(env, NAPI_VERSION),
       napi_default_jsproperty, nullptr},
      {"build", nullptr, nullptr, nullptr, nullptr, build, napi_default_jsproperty, nullptr},
  };
  for (const auto& field : fields) {
    if (field.value == nullptr) return nullptr;
  }
  if (napi_define_properties(env, result, sizeof fields / sizeof fields[0], fields) != napi_ok) {
    return nullptr;
  }
  return result;
}

// copyBytes(dst, src, threads) -> undefined: copies src into dst (typed arrays of equal
// byteLength) with `threads` threads (0: the current setting). A bandwidth probe.
napi_value copyByteArrays(napi_env env, napi_callback_info info) {
  const Args args(env, info, "copyBytes", 3);
  const ByteView dst = args.bytes(0, "dst");
  const ByteView src = args.bytes(1, "src");
  if (dst.bytes != src.bytes) args.fail(JsError::Kind::Range, 1, "src", "of the byteLength of 'dst'");
  const int threads = static_cast<int>(args.integer(2, "threads", 0, kThreadLimit));
  const auto d = reinterpret_cast<uintptr_t>(dst.data), s = reinterpret_cast<uintptr_t>(src.data);
  if (dst.bytes > 0 && d < s + src.bytes && s < d + dst.bytes) {
    args.fail(JsError::Kind::Range, 1, "src", "memory that 'dst' does not overlap");
  }
  simdnorm::copyBytes(dst.data, src.data, static_cast<int64_t>(dst.bytes), threads);
  return undefinedValue(env);
}

// readFloats(src, threads) -> number: the sum of a Float32Array read with `threads` threads
// (0: the current setting). A bandwidth probe.
napi_value readFloatArray(napi_env env, napi_callback_info info) {
  const Args args(env, info, "readFloats", 2);
  const ByteView src = args.bytes(0, "src");
  if (src.type != napi_float32_array) args.fail(JsError::Kind::Type, 0, "src", "a Float32Array");
  const int threads = static_cast<int>(args.integer(1, "threads", 0, kThreadLimit));
  const double sum = simdnorm::readFloats(static_cast<const float*>(src.data),
                                          static_cast<int64_t>(src.bytes / sizeof(float)), threads);
  return jsNumber(env, sum);
}

// Refuses to load in a Node of another major version than the headers it was compiled with:
// pin.cpp uses V8's C++ API, whose ABI is only stable within a major version.
napi_value checkNodeVersion(napi_env env) {
  const napi_node_version* version = nullptr;
  if (napi_get_node_version(env, &version) != napi_ok || version == nullptr) {
    throw JsError{JsError::Kind::Error, "simdnorm: cannot read the Node version"};
  }
  if (static_cast<int>(version->major) != compiledNodeMajor()) {
    throw JsError{JsError::Kind::Error,
                  "simdnorm: this native addon was compiled for Node " +
                      std::to_string(compiledNodeMajor()) + " and cannot run in Node " +
                      std::to_string(version->major) +
                      " (it uses V8's ArrayBuffer API, whose ABI changes between major versions); "
                      "rebuild it: npx simdnorm build (in a checkout: npm run build:native)"};
  }
  return nullptr;
}

napi_value init(napi_env env, napi_value exports) {
  checkNodeVersion(env);
  struct Export {
    const char* name;
    napi_callback function;
  };
  static const Export functions[] = {
      {"run", entry<runSync>},
      {"runAsync", runAsync},  // never throws: it rejects
      {"setThreads", entry<setThreadCount>},
      {"getThreads", entry<getThreadCount>},
      {"info", entry<buildInfo>},
      {"setScratchLimit", entry<setScratchLimitBytes>},
      {"copyBytes", entry<copyByteArrays>},
      {"readFloats", entry<readFloatArray>},
  };
  // Defined as own properties (no setter a script put on Object.prototype runs).
  constexpr size_t count = sizeof functions / sizeof functions[0];
  napi_property_descriptor properties[count];
  for (size_t i = 0; i < count; ++i) {
    properties[i] = {functions[i].name, nullptr, functions[i].function, nullptr, nullptr, nullptr,
                     napi_default_jsproperty, nullptr};
  }
  if (napi_define_properties(env, exports, count, properties) != napi_ok) {
    throw JsError{JsError::Kind::Error, "simdnorm: could not define the addon's functions"};
  }
  // abiVersion: the C ABI (native/abi/table.mjs) this addon was compiled with; the loader
  // (lib/backends/native.ts) refuses an addon whose version is not its own ABI_VERSION.
  const napi_property_descriptor abi = {"abiVersion", nullptr, nullptr, nullptr, nullptr,
                                        jsNumber(env, SN_ABI_VERSION), napi_enumerable, nullptr};
  if (abi.value == nullptr || napi_define_properties(env, exports, 1, &abi) != napi_ok) {
    throw JsError{JsError::Kind::Error, "simdnorm: could not define the addon's abiVersion"};
  }
  return exports;
}

}  // namespace
}  // namespace simdnorm::node

// Loaded once per environment (the main thread and each worker), possibly by several threads at
// once: init touches no shared state. Like every entry point it lets no C++ exception escape.
NAPI_MODULE_INIT() {
  try {
    return simdnorm::node::init(env, exports);
  } catch (const simdnorm::node::JsError& error) {
    simdnorm::node::throwJs(env, error.kind, error.message.c_str());
  } catch (...) {
    simdnorm::node::throwJs(env, simdnorm::node::JsError::Kind::Error,
                            "simdnorm: the addon could not be initialised");
  }
  return nullptr;
}
