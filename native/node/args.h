// Argument checking for the binding. Every value that crosses from JavaScript into the kernels
// passes through ArgReader, which throws a JsError (a TypeError for a wrong type, a RangeError for
// a wrong value) naming the argument, what was expected and what was received. Nothing is written
// before all arguments of a call have been checked, so a call that throws leaves every output
// untouched.
//
// ArgReader never runs JavaScript: it only uses N-API calls that read a value's own internal state
// (napi_get_typedarray_info, napi_get_value_double/bool, napi_typeof, ...), never a property get,
// so no getter, Proxy trap or valueOf of the caller's can run between a check and the kernel.
#pragma once

#include <node_api.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "../kernels/batchnorm.h"

namespace simdnorm::node {

// A JS error to throw (sync calls) or to reject with (async calls). Thrown as a C++ exception
// inside the binding and turned into a JS value at every entry point (addon.cpp), never further.
struct JsError {
  enum class Kind { Error, Type, Range };
  Kind kind;
  std::string message;
};

// Creates the JS error object for `error`; nullptr when the environment cannot (tearing down).
napi_value makeJsError(napi_env env, JsError::Kind kind, const char* message) noexcept;

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

// A typed array the call accepted: where it is in memory, for the overlap check and the pins.
struct ArrayArgument {
  napi_value value;
  size_t index;        // argument position, from 0
  const char* name;
  uintptr_t begin;     // [begin, begin + bytes): the bytes the kernel may touch
  size_t bytes;
};

class ArgReader {
 public:
  // Fetches the arguments of `function`, which takes exactly `count` of them.
  ArgReader(napi_env env, napi_callback_info info, const char* function, size_t count);

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

  // Aliasing by address: a RangeError naming both arguments when the memory of an output (an
  // argument index in `outputs`, a bit mask) overlaps the memory of any other array argument,
  // whatever objects, views or SharedArrayBuffer objects they come through. The one exception is
  // `inPlace` = {output, input} (argument indexes; {npos, npos} for none): that output may be
  // exactly that input (the same first byte and the same length).
  static constexpr size_t npos = ~size_t{0};
  void checkOverlaps(uint32_t outputs, std::pair<size_t, size_t> inPlace = {npos, npos}) const;

  ByteView bytes(size_t index, const char* name);
  bool boolean(size_t index, const char* name);
  double number(size_t index, const char* name);  // any number (TypeError otherwise)
  double positiveFinite(size_t index, const char* name);
  double nonNegativeFinite(size_t index, const char* name);
  double unitInterval(size_t index, const char* name);
  int64_t integer(size_t index, const char* name, int64_t min, int64_t max);

  bool isNull(size_t index) const;
  FloatType type() const { return type_; }
  // Every typed array accepted so far (the async calls pin their memory).
  const ArrayArgument* arrays() const { return arrays_; }
  size_t arrayCount() const { return arrayCount_; }
  napi_env env() const { return env_; }
  const char* function() const { return function_; }

  [[noreturn]] void typeError(size_t index, const char* name, const std::string& expected) const;
  [[noreturn]] void rangeError(const std::string& message) const;

 private:
  napi_value arg(size_t index) const { return argv_[index]; }
  static std::string argument(size_t index, const char* name);  // "argument 5 'gamma'"
  FloatView view(size_t index, const char* name, bool checkLength, uint64_t length,
                 const char* lengthName);
  void record(size_t index, const char* name, void* data, size_t bytes);
  const char* nameOf(size_t index) const;  // the name an array argument was read under

  napi_env env_;
  const char* function_;
  napi_value argv_[kMaxArguments];
  ArrayArgument arrays_[kMaxArguments];  // a fixed array: sync calls allocate nothing here
  size_t arrayCount_ = 0;
  FloatType type_ = FloatType::Float32;
  bool typeFixed_ = false;
  const char* typeSource_ = nullptr;  // the argument that fixed the element type
};

// Bit mask of argument indexes, for ArgReader::checkOverlaps.
constexpr uint32_t bit(size_t index) { return uint32_t{1} << index; }

// What a value is, for error messages: "Int32Array", "DataView", "null", "number NaN", ...
std::string describe(napi_env env, napi_value value);

// The message of the error a kernel call gets when its scratch memory cannot be allocated
// (simdnorm::scratchFailed(); nothing was written).
std::string outOfMemory(const char* function);

}  // namespace simdnorm::node
