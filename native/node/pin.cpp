// See pin.h for why the binding holds V8 BackingStores. This file is the only one that includes
// v8.h; everything it does runs on the JS thread, inside the N-API call that read the tensors.
#include "pin.h"

#include <v8.h>

// node_version.h defines NAPI_VERSION as the runtime's; the build's (8) stays in force.
#pragma push_macro("NAPI_VERSION")
#undef NAPI_VERSION
#include <node_version.h>
#pragma pop_macro("NAPI_VERSION")

#include <cstring>

namespace simdnorm::node {

namespace {

// A napi_value is a v8::Local<v8::Value> under another name: Node converts between them with a
// memcpy (v8impl::V8LocalValueFromJsValue in src/js_native_api_v8.h); so does this.
static_assert(sizeof(napi_value) == sizeof(v8::Local<v8::Value>),
              "napi_value and v8::Local<v8::Value> must have the same size");

v8::Local<v8::Value> toLocal(napi_value value) {
  v8::Local<v8::Value> local;
  std::memcpy(static_cast<void*>(&local), &value, sizeof value);
  return local;
}

// The BackingStore under a typed array (empty when it cannot be had).
std::shared_ptr<v8::BackingStore> backingStoreOf(napi_value array) {
  v8::Local<v8::Value> value = toLocal(array);
  if (value.IsEmpty() || !value->IsArrayBufferView()) return {};
  // Buffer() would move an on-heap typed array's data off the heap; napi_get_typedarray_info did
  // that already when the call's tensors were read (args.cpp), so this only reads.
  v8::Local<v8::ArrayBuffer> buffer = value.As<v8::ArrayBufferView>()->Buffer();
  if (buffer.IsEmpty()) return {};
  v8::Local<v8::Value> bufferValue = buffer;
  if (bufferValue->IsSharedArrayBuffer()) {
    return bufferValue.As<v8::SharedArrayBuffer>()->GetBackingStore();
  }
  return buffer->GetBackingStore();
}

}  // namespace

PinCheck pinTensors(const NormCall& call, std::shared_ptr<void>* pins) noexcept {
  int slot = 0;
  try {
    for (; slot < SN_SLOT_COUNT; ++slot) {
      if (call.arrays[slot] == nullptr) continue;
      std::shared_ptr<v8::BackingStore> store = backingStoreOf(call.arrays[slot]);
      if (!store) return PinCheck{false, slot, false};
      if (store->IsResizableByUserJavaScript() && !store->IsShared()) return PinCheck{false, slot, true};
      const uint64_t bytes = call.bytes[slot];
      if (bytes == 0) continue;
      // The kernel's range must lie inside the pinned memory (it always does: the pointer came
      // from this very buffer a moment ago, and no JavaScript ran in between).
      const auto start = reinterpret_cast<uintptr_t>(store->Data());
      const auto begin = reinterpret_cast<uintptr_t>(call.norm.tensor[slot]);
      if (begin < start || begin - start > store->ByteLength() || bytes > store->ByteLength() - (begin - start)) {
        return PinCheck{false, slot, false};
      }
      if (pins != nullptr) pins[slot] = std::move(store);
    }
    return PinCheck{};
  } catch (...) {  // bad_alloc from V8's empty BackingStore of a detached buffer
    return PinCheck{false, slot, false};
  }
}

bool floatArrayBytes(napi_value value, ByteView& out) noexcept {
  v8::Local<v8::Value> local = toLocal(value);
  if (local.IsEmpty()) return false;
  const bool f32 = local->IsFloat32Array();
  if (!f32 && !local->IsFloat64Array()) return false;
  v8::Local<v8::TypedArray> array = local.As<v8::TypedArray>();
  const size_t bytes = array->Length() * (f32 ? sizeof(float) : sizeof(double));
  if (bytes == 0) return false;
  // As napi_get_typedarray_info: the buffer's data (an on-heap array's moves off the heap) plus the offset.
  void* data = array->Buffer()->Data();
  if (data == nullptr) return false;
  out.data = static_cast<char*>(data) + array->ByteOffset();
  out.bytes = bytes;
  out.type = f32 ? napi_float32_array : napi_float64_array;
  return true;
}

int compiledNodeMajor() noexcept { return NODE_MAJOR_VERSION; }

}  // namespace simdnorm::node
