#include "args.h"

#include <cmath>

namespace simdnorm::node {

namespace {

// The data pointer of an empty typed array (a detached or zero-length buffer may have none).
alignas(64) double emptyArrayStorage[1];

size_t elementSize(napi_typedarray_type type) {
  switch (type) {
    case napi_int16_array:
    case napi_uint16_array: return 2;
    case napi_int32_array:
    case napi_uint32_array:
    case napi_float32_array: return 4;
    case napi_float64_array:
    case napi_bigint64_array:
    case napi_biguint64_array: return 8;
    default: return 1;
  }
}

}  // namespace

napi_value makeJsError(napi_env env, JsError::Kind kind, const char* message) noexcept {
  napi_value text, error;
  if (napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &text) != napi_ok) return nullptr;
  napi_status status;
  switch (kind) {
    case JsError::Kind::Type: status = napi_create_type_error(env, nullptr, text, &error); break;
    case JsError::Kind::Range: status = napi_create_range_error(env, nullptr, text, &error); break;
    default: status = napi_create_error(env, nullptr, text, &error); break;
  }
  return status == napi_ok ? error : nullptr;
}

bool typedArrayBytes(napi_env env, napi_value value, ByteView& out) noexcept {
  size_t length = 0;
  void* data = nullptr;
  // Fails for anything but a genuine typed array (DataView, Proxy, look-alikes); a detached or
  // out-of-bounds view has length 0.
  if (napi_get_typedarray_info(env, value, &out.type, &length, &data, nullptr, nullptr) != napi_ok) {
    return false;
  }
  out.bytes = length * elementSize(out.type);
  out.data = out.bytes == 0 || data == nullptr ? emptyArrayStorage : data;
  return true;
}

Args::Args(napi_env env, napi_callback_info info, const char* function, size_t count, bool exact)
    : env_(env), function_(function) {
  size_t given = kMaxArguments;
  if (napi_get_cb_info(env, info, &given, argv_, nullptr, nullptr) != napi_ok) {
    throw JsError{JsError::Kind::Error, std::string(function) + ": could not read the arguments"};
  }
  if (exact ? given != count : given > count) {
    throw JsError{JsError::Kind::Type, std::string(function) + ": expected " + std::to_string(count) +
                                           " arguments; received " + std::to_string(given)};
  }
  napi_value undefined = nullptr;
  napi_get_undefined(env, &undefined);
  for (size_t i = given; i < kMaxArguments; ++i) argv_[i] = undefined;
}

void Args::fail(JsError::Kind kind, size_t index, const char* name, const std::string& must) const {
  throw JsError{kind, std::string(function_) + ": argument " + std::to_string(index + 1) + " '" + name +
                          "' must be " + must};
}

bool Args::isNullish(size_t index) const {
  napi_valuetype kind;
  return napi_typeof(env_, argv_[index], &kind) == napi_ok && (kind == napi_null || kind == napi_undefined);
}

ByteView Args::bytes(size_t index, const char* name) const {
  ByteView view;
  if (!typedArrayBytes(env_, argv_[index], view)) fail(JsError::Kind::Type, index, name, "a typed array");
  return view;
}

int64_t Args::integer(size_t index, const char* name, int64_t min, int64_t max) const {
  double value;
  const std::string must = "an integer in [" + std::to_string(min) + ", " + std::to_string(max) + "]";
  if (napi_get_value_double(env_, argv_[index], &value) != napi_ok) fail(JsError::Kind::Type, index, name, must);
  if (!(value >= static_cast<double>(min) && value <= static_cast<double>(max) && std::floor(value) == value)) {
    fail(JsError::Kind::Range, index, name, must);
  }
  return static_cast<int64_t>(value);
}

}  // namespace simdnorm::node
