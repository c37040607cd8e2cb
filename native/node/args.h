// Reading the arguments of the binding's functions. Only N-API calls that read a value's own
// internal state (napi_get_cb_info, napi_get_typedarray_info, napi_get_value_double, napi_typeof),
// never a property get: no getter, Proxy trap or valueOf of the caller's can run between a check
// and the kernel. Errors are C++ exceptions (JsError) inside the binding, turned into JS
// exceptions (or rejections) at every entry point (addon.cpp, async.h), never further.
#pragma once

#include <node_api.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace simdnorm::node {

// A JS error to throw (sync calls) or to reject with (async calls).
struct JsError {
  enum class Kind { Error, Type, Range };
  Kind kind;
  std::string message;
};

// Creates the JS error object for `error`; nullptr when the environment cannot (tearing down).
napi_value makeJsError(napi_env env, JsError::Kind kind, const char* message) noexcept;

// The most arguments any function takes (run: the scalars, one per slot and the mask; operations.h
// checks that it fits).
constexpr size_t kMaxArguments = 24;

// Any typed array as raw bytes; `data` is never null (an empty or detached array gets a dummy
// pointer the callee never dereferences, with 0 bytes).
struct ByteView {
  void* data;
  size_t bytes;
  napi_typedarray_type type;
};

// The arguments of one call of `function`, which takes at most `count` of them (missing ones are
// undefined; with `exact`, exactly `count`).
class Args {
 public:
  Args(napi_env env, napi_callback_info info, const char* function, size_t count, bool exact = true);

  napi_value operator[](size_t index) const { return argv_[index]; }
  napi_env env() const { return env_; }
  bool isNullish(size_t index) const;  // null or undefined
  // A typed array of any element type (TypeError naming the argument otherwise).
  ByteView bytes(size_t index, const char* name) const;
  // An integer in [min, max] (TypeError for a non-number, RangeError for another number).
  int64_t integer(size_t index, const char* name, int64_t min, int64_t max) const;

  [[noreturn]] void fail(JsError::Kind kind, size_t index, const char* name, const std::string& must) const;

 private:
  napi_env env_;
  const char* function_;
  napi_value argv_[kMaxArguments];
};

// A typed array's view as bytes, or false when the value is not a typed array.
bool typedArrayBytes(napi_env env, napi_value value, ByteView& out) noexcept;

}  // namespace simdnorm::node
