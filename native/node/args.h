// Argument checking for the binding. Every value that crosses from JavaScript into the kernels
// passes through ArgReader, which throws a JS TypeError (wrong type) or RangeError (wrong value)
// naming the argument, what was expected and what was received. Nothing is written before all
// arguments of a call have been checked, so a call that throws leaves every output untouched.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "../kernels/batchnorm.h"

namespace simdnorm::node {

enum class FloatType { Float32, Float64 };

// A Float32Array or Float64Array seen as the caller's memory (byteOffset applied, zero-copy).
// `data` is null only for an absent optional argument; an empty array gets a valid dummy pointer.
struct FloatView {
  void* data = nullptr;
  size_t length = 0;

  explicit operator bool() const { return data != nullptr; }
  template <typename T>
  T* as() const { return static_cast<T*>(data); }
};

// The largest argument list of any function (train).
constexpr size_t kMaxArguments = 16;

// Any typed array as raw bytes (the bandwidth probes take every element type).
struct ByteView {
  void* data = nullptr;
  size_t bytes = 0;
};

class ArgReader {
 public:
  // Fetches the arguments of `function`, which takes exactly `count` of them.
  ArgReader(const Napi::CallbackInfo& info, const char* function, size_t count);

  // A Float32Array or Float64Array of exactly `length` elements. The first array read fixes the
  // element type that every later one must share. `lengthName` says where the length comes from.
  FloatView floats(size_t index, const char* name, uint64_t length, const char* lengthName);
  // The same, or null (returns an empty view).
  FloatView floatsOrNull(size_t index, const char* name, uint64_t length, const char* lengthName);
  // A Float32Array or Float64Array whose length is checked later (the tensor whose length the
  // geometry that follows it must match).
  FloatView floatsAnyLength(size_t index, const char* name);
  // outer, channels, inner at index, index+1, index+2: non-negative safe integers whose product
  // equals the length of `tensor` (read by floatsAnyLength under `tensorName`).
  Geometry geometry(size_t index, const FloatView& tensor, size_t tensorIndex,
                    const char* tensorName);

  // RangeError unless `view` (argument `index`) has exactly `length` elements.
  void checkLength(size_t index, const char* name, const FloatView& view, uint64_t length,
                   const char* lengthName) const;

  ByteView bytes(size_t index, const char* name);
  bool boolean(size_t index, const char* name);
  double number(size_t index, const char* name);  // any number (TypeError otherwise)
  double positiveFinite(size_t index, const char* name);
  double nonNegativeFinite(size_t index, const char* name);
  double unitInterval(size_t index, const char* name);
  int64_t integer(size_t index, const char* name, int64_t min, int64_t max);

  bool isNull(size_t index) const;
  FloatType type() const { return type_; }
  // Every typed array accepted so far: the async workers hold a Reference to each.
  std::vector<napi_value> arrays() const { return {arrays_, arrays_ + arrayCount_}; }
  napi_env env() const { return env_; }

  [[noreturn]] void typeError(size_t index, const char* name, const std::string& expected) const;
  [[noreturn]] void rangeError(const std::string& message) const;

 private:
  napi_value arg(size_t index) const { return argv_[index]; }
  static std::string argument(size_t index, const char* name);  // "argument 5 'gamma'"
  FloatView view(size_t index, const char* name, bool checkLength, uint64_t length,
                 const char* lengthName);

  napi_env env_;
  const char* function_;
  napi_value argv_[kMaxArguments];
  napi_value arrays_[kMaxArguments];  // a fixed array: sync calls allocate nothing here
  size_t arrayCount_ = 0;
  FloatType type_ = FloatType::Float32;
  bool typeFixed_ = false;
  const char* typeSource_ = nullptr;  // the argument that fixed the element type
};

// What a value is, for error messages: "Int32Array", "DataView", "null", "number NaN", ...
std::string describe(napi_env env, napi_value value);

// The message of the error a kernel call gets when its scratch memory cannot be allocated
// (simdnorm::scratchFailed(); nothing was written).
std::string outOfMemory(const char* function);

}  // namespace simdnorm::node
