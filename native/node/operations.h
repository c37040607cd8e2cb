// The one kernel call the binding exposes, over the core ABI (native/kernels/norm.h):
//   run(scalars, x, y, dy, dx, gamma, beta, mean, invStd, variance, runningMean, runningVar,
//       dgamma, dbeta) -> number
// scalars: a Float64Array of at least SN_SCALAR_COUNT values (abi_table.h's sn_scalar order);
// then one argument per slot in table order: null/undefined (absent) or a Float32Array or
// Float64Array of the descriptor's dtype, read zero-copy. The façade (lib/) has validated the
// call; the binding keeps only the checks memory safety needs, which sn_prepare makes, and
// reports a refusal as `internal error: <phase>: <error> (tensor <slot>)`, as lib/core/
// descriptor.ts's abiError does. A call that throws (or rejects) has written nothing.
#pragma once

#include <node_api.h>

#include <cstdint>
#include <string>

#include "../kernels/norm.h"
#include "args.h"

namespace simdnorm::node {

// run's argument count: the scalars, one per slot, and the optional mask of the slots given (bit i:
// slot i; without it every slot argument is inspected).
constexpr size_t kRunArguments = 2 + SN_SLOT_COUNT;
static_assert(kRunArguments <= kMaxArguments, "args.h: kMaxArguments is below run's argument count");

// A call read from its arguments and accepted by sn_prepare.
struct NormCall {
  sn_norm norm;
  napi_value arrays[SN_SLOT_COUNT];  // the typed array of each slot, nullptr when absent
  uint64_t bytes[SN_SLOT_COUNT];     // its byteLength (0 when absent, empty or detached)
};

// Reads run's arguments and checks them with sn_prepare; throws JsError (TypeError when the
// scalars are not a Float64Array or a tensor not of the dtype, else Error). Runs no JavaScript.
NormCall readCall(const Args& args, const char* function);

// The error for a negative result of sn_prepare/sn_execute, worded as abiError words it:
// a RangeError `<phase>: out of memory: ...; nothing was written` for noMemory.
JsError abiError(int32_t result, double phase);

}  // namespace simdnorm::node
