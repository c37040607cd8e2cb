// The async variants (trainAsync, inferAsync, backwardAsync): the same arguments and checks as
// the sync call, the kernel run on libuv's thread pool (a small one on the calling thread), and a
// Promise that settles with what the sync call returns. Bad arguments reject the Promise (as an async function would) instead of
// throwing. The worker holds a Reference to every array until it settles, so the GC cannot free
// them while the kernel runs. The caller must not transfer or detach them meanwhile (as with
// fs.read into a buffer): N-API has no way to pin a buffer against that.
#pragma once

#include <napi.h>

#include <string>
#include <vector>

#include "args.h"

namespace simdnorm::node {

template <class Operation>
class OperationWorker final : public Napi::AsyncWorker {
 public:
  OperationWorker(Napi::Env env, const Operation& operation, const std::vector<napi_value>& arrays)
      : Napi::AsyncWorker(env, Operation::kAsyncName),
        operation_(operation),
        deferred_(Napi::Promise::Deferred::New(env)) {
    references_.reserve(arrays.size());
    for (napi_value array : arrays) {
      references_.push_back(Napi::Persistent(Napi::Object(env, array)));
    }
  }

  Napi::Promise promise() const { return deferred_.Promise(); }

 private:
  // Off the main thread: touches only the kernel's memory, never a JS value.
  void Execute() override {
    result_ = operation_.run();
    if (simdnorm::scratchFailed()) SetError(outOfMemory(Operation::kAsyncName));  // same thread
  }
  void OnOK() override { deferred_.Resolve(Operation::toJs(Env(), result_)); }
  // The only error set above: out of memory, a RangeError as with the sync call.
  void OnError(const Napi::Error& error) override {
    deferred_.Reject(Napi::RangeError::New(Env(), error.Message()).Value());
  }

  Operation operation_;
  typename Operation::Result result_{};
  Napi::Promise::Deferred deferred_;
  std::vector<Napi::ObjectReference> references_;
};

// A resizable ArrayBuffer could shrink under a running kernel (JS runs meanwhile), so async calls
// refuse arrays over one. (A growable SharedArrayBuffer only grows, which is harmless.)
inline void rejectResizableBuffers(const ArgReader& args, const char* function) {
  napi_env env = args.env();
  for (napi_value array : args.arrays()) {
    napi_value buffer, resizable;
    bool isResizable = false;
    if (napi_get_typedarray_info(env, array, nullptr, nullptr, nullptr, &buffer, nullptr) ==
            napi_ok &&
        napi_get_named_property(env, buffer, "resizable", &resizable) == napi_ok &&
        napi_get_value_bool(env, resizable, &isResizable) == napi_ok && isResizable) {
      throw Napi::TypeError::New(
          env, std::string(function) +
                   ": arrays must not be backed by a resizable ArrayBuffer (it could shrink while "
                   "the kernel runs); received one — use the sync call");
    }
  }
}

// Below this many elements a call costs less than the hop to libuv's thread pool and back (about
// 25 µs on the machines measured; such a kernel takes a few µs): it runs on the calling thread and
// returns its Promise already settled.
constexpr int64_t kInlineAsyncElements = 16384;

template <class Operation>
Napi::Value runAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  try {
    ArgReader args(info, Operation::kAsyncName, Operation::kArgumentCount);
    Operation operation(args);
    rejectResizableBuffers(args, Operation::kAsyncName);
    if (operation.geometry.elements() < kInlineAsyncElements) {
      Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
      const typename Operation::Result result = operation.run();
      if (simdnorm::scratchFailed()) {
        deferred.Reject(Napi::RangeError::New(env, outOfMemory(Operation::kAsyncName)).Value());
      } else {
        deferred.Resolve(Operation::toJs(env, result));
      }
      return deferred.Promise();
    }
    auto* worker = new OperationWorker<Operation>(env, operation, args.arrays());
    Napi::Promise promise = worker->promise();
    worker->Queue();  // the worker deletes itself once settled
    return promise;
  } catch (const Napi::Error& error) {
    Napi::Promise::Deferred deferred = Napi::Promise::Deferred::New(env);
    deferred.Reject(error.Value());
    return deferred.Promise();
  }
}

}  // namespace simdnorm::node
