// Pinning the memory of an async call's tensors, and reading a float tensor's bytes on the hot
// path (the one place the binding goes below N-API).
//
// While an async call's kernel runs on libuv's thread pool, JavaScript keeps running: it can
// transfer a tensor's ArrayBuffer (structuredClone / postMessage with `transfer`), drop every
// reference to it and let the GC free it, or resize a resizable ArrayBuffer. A napi_ref to the
// typed array keeps the *object* alive, not its memory: after a transfer the memory belongs to
// another ArrayBuffer and is freed with it. N-API has no way to pin memory, and copying every
// tensor in and out would triple the memory traffic of an async call. So each tensor's V8
// BackingStore (the owner of the memory, shared by every ArrayBuffer that ever holds it) is held
// by a std::shared_ptr until the call settles: the memory outlives any transfer and collection.
//
// A resizable (non-shared) ArrayBuffer can shrink, and shrinking decommits pages that a pin cannot
// keep; such tensors are refused. A growable SharedArrayBuffer only grows: allowed.
//
// ABI consequence: this uses V8's C++ API (v8::ArrayBuffer::GetBackingStore), which is stable only
// within one Node major version (one NODE_MODULE_VERSION). The addon is therefore tied to the
// major version of the Node whose headers it was compiled with (node-gyp and native/build.mjs
// always use the running Node's); init refuses to load in another major version (addon.cpp)
// rather than risk a mismatched V8 ABI. Everything else in the binding is plain N-API.
#pragma once

#include <node_api.h>

#include <memory>

#include "operations.h"

namespace simdnorm::node {

// What pinTensors found.
struct PinCheck {
  bool ok = true;
  int failed = 0;          // the slot that failed, when !ok
  bool resizable = false;  // it is over a resizable non-shared ArrayBuffer
};

// For each tensor of `call`: refuses one over a resizable non-shared ArrayBuffer, and, when `pins`
// (SN_SLOT_COUNT entries) is not null, stores into pins[slot] a reference to the memory of every
// non-empty one, after checking that the bytes sn_prepare accepted lie inside that memory. Runs
// no JavaScript.
PinCheck pinTensors(const NormCall& call, std::shared_ptr<void>* pins) noexcept;

// A Float32Array's or Float64Array's view as bytes, read through V8's API: what
// napi_get_typedarray_info gives (typedArrayBytes, args.h), without its walk over every element
// type, which costs more than a small call's kernel. False for anything else and for an empty
// view (detached, out of bounds or of length 0): the caller then asks typedArrayBytes. Runs no
// JavaScript; the JS thread only.
bool floatArrayBytes(napi_value value, ByteView& out) noexcept;

// The major version of the Node the addon was compiled against (from node_version.h).
int compiledNodeMajor() noexcept;

}  // namespace simdnorm::node
