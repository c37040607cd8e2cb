#include "args.h"

#include <cmath>
#include <cstring>

namespace simdnorm::node {

namespace {

constexpr double kMaxSafeInteger = 9007199254740991.0;  // 2^53 - 1

// The data pointer handed to kernels for an empty array (a detached or zero-length buffer has
// none); kernels never dereference it because there are no elements.
alignas(64) double emptyArrayStorage[1];

const char* typedArrayName(napi_typedarray_type type) {
  switch (type) {
    case napi_int8_array: return "Int8Array";
    case napi_uint8_array: return "Uint8Array";
    case napi_uint8_clamped_array: return "Uint8ClampedArray";
    case napi_int16_array: return "Int16Array";
    case napi_uint16_array: return "Uint16Array";
    case napi_int32_array: return "Int32Array";
    case napi_uint32_array: return "Uint32Array";
    case napi_float32_array: return "Float32Array";
    case napi_float64_array: return "Float64Array";
    case napi_bigint64_array: return "BigInt64Array";
    case napi_biguint64_array: return "BigUint64Array";
  }
  return "typed array";
}

const char* floatTypeName(FloatType type) {
  return type == FloatType::Float32 ? "Float32Array" : "Float64Array";
}

bool isSafeIndex(double v) { return v >= 0 && v <= kMaxSafeInteger && std::floor(v) == v; }

}  // namespace

std::string outOfMemory(const char* function) {
  return std::string(function) +
         ": out of memory: the kernel's scratch memory (a few bytes per channel) could not be "
         "allocated; nothing was written";
}

std::string describe(napi_env env, napi_value value) {
  napi_valuetype kind;
  if (napi_typeof(env, value, &kind) != napi_ok) return "an unreadable value";
  switch (kind) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return "a boolean";
    case napi_string: return "a string";
    case napi_symbol: return "a symbol";
    case napi_bigint: return "a bigint";
    case napi_function: return "a function";
    case napi_external: return "an external";
    case napi_number: {
      // Coercing a number to a string runs no user code.
      napi_value text;
      char buffer[64] = "?";
      size_t written = 0;
      if (napi_coerce_to_string(env, value, &text) == napi_ok) {
        napi_get_value_string_utf8(env, text, buffer, sizeof buffer, &written);
      }
      return std::string("the number ") + buffer;
    }
    case napi_object: break;
  }
  bool is = false;
  napi_typedarray_type type;
  if (napi_get_typedarray_info(env, value, &type, nullptr, nullptr, nullptr, nullptr) == napi_ok) {
    const char* name = typedArrayName(type);
    return std::string(name[0] == 'I' ? "an " : "a ") + name;
  }
  if (napi_is_dataview(env, value, &is) == napi_ok && is) return "a DataView";
  if (napi_is_arraybuffer(env, value, &is) == napi_ok && is) return "an ArrayBuffer";
  if (napi_is_array(env, value, &is) == napi_ok && is) return "an Array";
  return "an object that is not a typed array";
}

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

ArgReader::ArgReader(napi_env env, napi_callback_info info, const char* function, size_t count)
    : env_(env), function_(function) {
  size_t given = kMaxArguments;
  if (napi_get_cb_info(env, info, &given, argv_, nullptr, nullptr) != napi_ok) {
    throw JsError{JsError::Kind::Error, std::string(function) + ": could not read the arguments"};
  }
  if (given != count) {
    throw JsError{JsError::Kind::Type, std::string(function) + ": expected " +
                                           std::to_string(count) + " arguments; received " +
                                           std::to_string(given)};
  }
}

std::string ArgReader::argument(size_t index, const char* name) {
  return "argument " + std::to_string(index + 1) + " '" + name + "'";
}

void ArgReader::typeError(size_t index, const char* name, const std::string& expected) const {
  throw JsError{JsError::Kind::Type, std::string(function_) + ": " + argument(index, name) +
                                         " must be " + expected + "; received " +
                                         describe(env_, arg(index))};
}

void ArgReader::rangeError(const std::string& message) const {
  throw JsError{JsError::Kind::Range, std::string(function_) + ": " + message};
}

bool ArgReader::isNull(size_t index) const {
  napi_valuetype kind;
  return napi_typeof(env_, arg(index), &kind) == napi_ok && kind == napi_null;
}

FloatView ArgReader::view(size_t index, const char* name, bool checkLength, uint64_t length,
                          const char* lengthName) {
  napi_typedarray_type type;
  size_t actualLength = 0;
  void* data = nullptr;
  // One call both checks that the value is a typed array (it fails otherwise, also for
  // DataView, Proxy and look-alike objects) and gives its length and byteOffset-adjusted data.
  if (napi_get_typedarray_info(env_, arg(index), &type, &actualLength, &data, nullptr, nullptr) !=
          napi_ok ||
      (type != napi_float32_array && type != napi_float64_array)) {
    typeError(index, name, typeFixed_ ? std::string("a ") + floatTypeName(type_)
                                      : std::string("a Float32Array or Float64Array"));
  }
  FloatType floatType = type == napi_float32_array ? FloatType::Float32 : FloatType::Float64;
  if (!typeFixed_) {
    type_ = floatType;
    typeFixed_ = true;
    typeSource_ = name;
  } else if (floatType != type_) {
    typeError(index, name,
              std::string("a ") + floatTypeName(type_) + " like '" + typeSource_ + "'");
  }
  FloatView result{actualLength == 0 || data == nullptr ? emptyArrayStorage : data, actualLength};
  if (checkLength) this->checkLength(index, name, result, length, lengthName);
  record(index, name, result.data,
         actualLength * (floatType == FloatType::Float32 ? sizeof(float) : sizeof(double)));
  return result;
}

void ArgReader::record(size_t index, const char* name, void* data, size_t bytes) {
  arrays_[arrayCount_++] = ArrayArgument{arg(index), index, name, reinterpret_cast<uintptr_t>(data),
                                         bytes};
}

void ArgReader::checkOverlaps(uint32_t outputs, std::pair<size_t, size_t> inPlace) const {
  // At most 9 arrays: a few dozen pointer comparisons, nothing next to the call's other costs.
  for (size_t i = 0; i < arrayCount_; ++i) {
    const ArrayArgument& a = arrays_[i];
    if (a.bytes == 0) continue;
    const bool aOut = (outputs & bit(a.index)) != 0;
    for (size_t j = i + 1; j < arrayCount_; ++j) {
      const ArrayArgument& b = arrays_[j];
      const bool bOut = (outputs & bit(b.index)) != 0;
      if (b.bytes == 0 || !(aOut || bOut)) continue;  // inputs may share memory
      if (a.begin >= b.begin + b.bytes || b.begin >= a.begin + a.bytes) continue;
      // name an output first (the in-place one when both are outputs)
      const bool aFirst = aOut && !(bOut && b.index == inPlace.first);
      const ArrayArgument& out = aFirst ? a : b;
      const ArrayArgument& other = aFirst ? b : a;
      const bool exact = a.begin == b.begin && a.bytes == b.bytes;
      if (exact && out.index == inPlace.first && other.index == inPlace.second) continue;
      const std::string allowed =
          out.index == inPlace.first
              ? "it may only be exactly " + argument(inPlace.second, nameOf(inPlace.second)) +
                    ", in place"
              : std::string("an output shares no memory with another argument");
      rangeError(argument(out.index, out.name) + " overlaps " + argument(other.index, other.name) +
                 " in memory (" + allowed + "); received " +
                 (exact ? "two arrays over the same bytes" : "arrays over overlapping bytes"));
    }
  }
}

const char* ArgReader::nameOf(size_t index) const {
  for (size_t i = 0; i < arrayCount_; ++i) {
    if (arrays_[i].index == index) return arrays_[i].name;
  }
  return "?";
}

void ArgReader::checkLength(size_t index, const char* name, const FloatView& view,
                            uint64_t length, const char* lengthName) const {
  if (view.length != length) {
    rangeError(argument(index, name) + " must have length " + lengthName + " = " +
               std::to_string(length) + "; received length " + std::to_string(view.length) +
               (view.length == 0 ? " (an empty or detached buffer)" : ""));
  }
}

FloatView ArgReader::floats(size_t index, const char* name, uint64_t length,
                            const char* lengthName) {
  return view(index, name, true, length, lengthName);
}

FloatView ArgReader::floatsOrNull(size_t index, const char* name, uint64_t length,
                                  const char* lengthName) {
  if (isNull(index)) return FloatView{};
  napi_typedarray_type type;
  if (napi_get_typedarray_info(env_, arg(index), &type, nullptr, nullptr, nullptr, nullptr) !=
      napi_ok) {
    typeError(index, name, typeFixed_ ? std::string("a ") + floatTypeName(type_) + " or null"
                                      : std::string("a Float32Array, a Float64Array or null"));
  }
  return view(index, name, true, length, lengthName);
}

FloatView ArgReader::floatsAnyLength(size_t index, const char* name) {
  return view(index, name, false, 0, nullptr);
}

Geometry ArgReader::geometry(size_t index, const FloatView& tensor, size_t tensorIndex,
                             const char* tensorName) {
  static const char* const names[3] = {"outer", "channels", "inner"};
  double dims[3];
  for (size_t i = 0; i < 3; ++i) {
    dims[i] = number(index + i, names[i]);
    if (!isSafeIndex(dims[i])) {
      rangeError(argument(index + i, names[i]) + " must be a non-negative safe integer; received " +
                 describe(env_, arg(index + i)));
    }
  }
  uint64_t outer = static_cast<uint64_t>(dims[0]);
  uint64_t channels = static_cast<uint64_t>(dims[1]);
  uint64_t inner = static_cast<uint64_t>(dims[2]);
  auto dimsText = [&] {
    return std::to_string(outer) + " * " + std::to_string(channels) + " * " + std::to_string(inner);
  };
  uint64_t elements;
  if (__builtin_mul_overflow(outer, channels, &elements) ||
      __builtin_mul_overflow(elements, inner, &elements) ||
      elements > static_cast<uint64_t>(kMaxSafeInteger)) {
    rangeError("outer * channels * inner must be a safe integer; received " + dimsText() +
               ", which overflows");
  }
  if (elements != tensor.length) {
    rangeError(argument(tensorIndex, tensorName) +
               " must have length outer * channels * inner = " + dimsText() + " = " +
               std::to_string(elements) + "; received length " + std::to_string(tensor.length));
  }
  // Kernels loop over outer and inner: with no element at all, an empty geometry of the same
  // meaning keeps a huge zero-product geometry (say outer = 2^52, channels = 0) from looping.
  if (channels == 0) return Geometry{0, 0, 0};
  if (outer == 0 || inner == 0) return Geometry{0, static_cast<int64_t>(channels), 1};
  return Geometry{static_cast<int64_t>(outer), static_cast<int64_t>(channels),
                  static_cast<int64_t>(inner)};
}

ByteView ArgReader::bytes(size_t index, const char* name) {
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  if (napi_get_typedarray_info(env_, arg(index), &type, &length, &data, nullptr, nullptr) !=
      napi_ok) {
    typeError(index, name, "a typed array");
  }
  size_t elementSize = 1;
  switch (type) {
    case napi_int16_array:
    case napi_uint16_array: elementSize = 2; break;
    case napi_int32_array:
    case napi_uint32_array:
    case napi_float32_array: elementSize = 4; break;
    case napi_float64_array:
    case napi_bigint64_array:
    case napi_biguint64_array: elementSize = 8; break;
    default: break;
  }
  ByteView result{length == 0 || data == nullptr ? emptyArrayStorage : data, length * elementSize};
  record(index, name, result.data, result.bytes);
  return result;
}

double ArgReader::number(size_t index, const char* name) {
  double value;
  if (napi_get_value_double(env_, arg(index), &value) != napi_ok) {
    typeError(index, name, "a number");
  }
  return value;
}

bool ArgReader::boolean(size_t index, const char* name) {
  bool value;
  if (napi_get_value_bool(env_, arg(index), &value) != napi_ok) {
    typeError(index, name, "a boolean");
  }
  return value;
}

double ArgReader::positiveFinite(size_t index, const char* name) {
  double value = number(index, name);
  if (!(std::isfinite(value) && value > 0)) {
    rangeError(argument(index, name) +
               " must be a finite number > 0; received " + describe(env_, arg(index)));
  }
  return value;
}

double ArgReader::nonNegativeFinite(size_t index, const char* name) {
  double value = number(index, name);
  if (!(std::isfinite(value) && value >= 0)) {
    rangeError(argument(index, name) +
               " must be a finite number >= 0; received " + describe(env_, arg(index)));
  }
  return value;
}

double ArgReader::unitInterval(size_t index, const char* name) {
  double value = number(index, name);
  if (!(value >= 0 && value <= 1)) {
    rangeError(argument(index, name) +
               " must be a number in [0, 1]; received " + describe(env_, arg(index)));
  }
  return value;
}

int64_t ArgReader::integer(size_t index, const char* name, int64_t min, int64_t max) {
  double value = number(index, name);
  if (!(value >= static_cast<double>(min) && value <= static_cast<double>(max) &&
        std::floor(value) == value)) {
    rangeError(argument(index, name) + " must be an integer in [" +
               std::to_string(min) + ", " + std::to_string(max) + "]; received " +
               describe(env_, arg(index)));
  }
  return static_cast<int64_t>(value);
}

}  // namespace simdnorm::node
