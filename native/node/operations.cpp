#include "operations.h"

#include "pin.h"

namespace simdnorm::node {

namespace {

const char* errorName(int code) {
  return code >= 1 && code <= SN_ERROR_NO_MEMORY ? sn_error_names[code] : "?";
}

const char* phaseName(double phase) {
  return phase >= 0 && phase < SN_PHASE_COUNT && phase == static_cast<int>(phase)
             ? sn_phase_names[static_cast<int>(phase)]
             : "?";
}

}  // namespace

JsError abiError(int32_t result, double phase) {
  const int code = (-result) >> 8;
  const int argument = (-result) & 0xff;
  const std::string where = phaseName(phase);
  if (code == SN_ERROR_NO_MEMORY) {
    return JsError{JsError::Kind::Range,
                   where + ": out of memory: the kernels' scratch memory could not be allocated; nothing was written"};
  }
  std::string message = "internal error: " + where + ": " + errorName(code);
  if (argument > 0) {
    const bool scalar = code == SN_ERROR_BAD_SCALAR || code == SN_ERROR_TOO_LARGE;
    if (scalar && argument <= SN_SCALAR_COUNT) message += std::string(" (scalar ") + sn_scalar_names[argument - 1] + ")";
    if (!scalar && argument <= SN_SLOT_COUNT) message += std::string(" (tensor ") + sn_slot_names[argument - 1] + ")";
  }
  return JsError{code == SN_ERROR_WRONG_TYPE ? JsError::Kind::Type : JsError::Kind::Error, message};
}

NormCall readCall(const Args& args, const char* function) {
  ByteView scalars;
  if ((!floatArrayBytes(args[0], scalars) && !typedArrayBytes(args.env(), args[0], scalars)) || scalars.type != napi_float64_array ||
      scalars.bytes < SN_SCALAR_COUNT * sizeof(double)) {
    throw JsError{JsError::Kind::Type, std::string("internal error: ") + function +
                                           ": the scalars must be a Float64Array of at least " +
                                           std::to_string(SN_SCALAR_COUNT) + " values"};
  }
  double s[SN_SCALAR_COUNT];
  for (int i = 0; i < SN_SCALAR_COUNT; ++i) s[i] = static_cast<const double*>(scalars.data)[i];
  const double phase = s[SN_SCALAR_PHASE];
  // The element type every tensor must have (when the dtype scalar is garbage, sn_prepare says so).
  const napi_typedarray_type want = s[SN_SCALAR_DTYPE] == SN_DTYPE_F64 ? napi_float64_array : napi_float32_array;
  const bool dtypeKnown = s[SN_SCALAR_DTYPE] == SN_DTYPE_F32 || s[SN_SCALAR_DTYPE] == SN_DTYPE_F64;

  // The slots the caller says are given: the others are absent whatever their argument is (no
  // N-API call for them); without a mask, every slot's argument is inspected.
  uint32_t given = (1u << SN_SLOT_COUNT) - 1;
  napi_valuetype maskType;
  if (napi_typeof(args.env(), args[1 + SN_SLOT_COUNT], &maskType) == napi_ok && maskType == napi_number) {
    napi_get_value_uint32(args.env(), args[1 + SN_SLOT_COUNT], &given);
  }
  NormCall call;
  void* pointers[SN_SLOT_COUNT];
  for (int slot = 0; slot < SN_SLOT_COUNT; ++slot) {
    call.arrays[slot] = nullptr;
    call.bytes[slot] = 0;
    pointers[slot] = nullptr;
    if ((given >> slot & 1u) == 0) continue;
    ByteView view;
    // A float array first (the common case), any typed array next, else null/undefined for an absent slot.
    if (!floatArrayBytes(args[1 + slot], view) && !typedArrayBytes(args.env(), args[1 + slot], view)) {
      if (args.isNullish(1 + slot)) continue;
      throw abiError(snError(SN_ERROR_WRONG_TYPE, slot + 1), phase);
    }
    if ((view.type != napi_float32_array && view.type != napi_float64_array) || (dtypeKnown && view.type != want)) {
      throw abiError(snError(SN_ERROR_WRONG_TYPE, slot + 1), phase);
    }
    call.arrays[slot] = args[1 + slot];
    call.bytes[slot] = view.bytes;
    pointers[slot] = view.data;
  }
  const int32_t result = sn_prepare(s, pointers, call.bytes, &call.norm);
  if (result < 0) throw abiError(result, phase);
  return call;
}

}  // namespace simdnorm::node
