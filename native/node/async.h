// runAsync: the same arguments and checks as run (operations.h), the kernel run on libuv's thread
// pool (a small call on the calling thread), and a Promise that settles with what run returns.
// A refused call rejects the Promise (as an async function would) instead of throwing; nothing
// is written then.
//
// Memory safety whatever JavaScript does while the kernel runs (pin.h): the memory of every
// tensor is pinned (its V8 BackingStore held) from before any JavaScript can run again until the
// call settles, so transferring, detaching or dropping a tensor cannot free memory under the
// kernel; resizable ArrayBuffers are refused. The call also holds a napi_ref to each tensor, so
// the typed arrays themselves stay alive as long as the call (their memory is what matters).
//
// Raw napi_create_async_work, not Napi::AsyncWorker: the execute and complete callbacks never
// throw. When the environment tears down with a call pending (worker.terminate(), a worker's
// process.exit()), Node still runs the complete callback (from its cleanup, where JavaScript can no
// longer run): then every napi call may fail; the callback ignores those failures, releases the
// pins and references and returns. When the main thread exits with calls queued, libuv's threads
// finish them before the process exits and no complete callback runs.
#pragma once

#include <node_api.h>

#include <memory>
#include <new>
#include <string>

#include "args.h"
#include "operations.h"
#include "pin.h"

namespace simdnorm::node {

constexpr const char* kRunAsync = "runAsync";

// Below this many elements a call costs less than the hop to libuv's thread pool and back (about
// 25 µs on the machines measured; such a kernel takes a few µs): it runs on the calling thread and
// returns its Promise already settled. It runs before any JavaScript can run again (no promise is
// created before the kernel has finished), so it needs no pin.
constexpr int64_t kInlineAsyncElements = 16384;

inline napi_value jsNumber(napi_env env, double value) noexcept {
  napi_value result;
  return napi_create_double(env, value, &result) == napi_ok ? result : nullptr;
}

// A Promise already resolved with `value` (reject: rejected with it); nullptr when the environment
// cannot make one.
inline napi_value settledPromise(napi_env env, napi_value value, bool reject) noexcept {
  if (value == nullptr) return nullptr;
  napi_deferred deferred;
  napi_value promise;
  if (napi_create_promise(env, &deferred, &promise) != napi_ok) return nullptr;
  const napi_status status =
      reject ? napi_reject_deferred(env, deferred, value) : napi_resolve_deferred(env, deferred, value);
  return status == napi_ok ? promise : nullptr;
}

inline napi_value rejectedPromise(napi_env env, const JsError& error) noexcept {
  return settledPromise(env, makeJsError(env, error.kind, error.message.c_str()), true);
}

// The value a settled call gives: its result, or the error for a negative one.
inline napi_value resultValue(napi_env env, int32_t result, int32_t phase, bool& reject) {
  reject = result < 0;
  if (!reject) return jsNumber(env, result);
  const JsError error = abiError(result, phase);
  return makeJsError(env, error.kind, error.message.c_str());
}

// TypeError (a resizable buffer) or Error (memory that cannot be pinned) for a failed PinCheck.
inline JsError pinError(const PinCheck& check) {
  const std::string tensor = std::string(kRunAsync) + ": tensor " + sn_slot_names[check.failed];
  if (check.resizable) {
    return JsError{JsError::Kind::Type, tensor + " must not be backed by a resizable ArrayBuffer (it could "
                                                 "shrink while the kernel runs; use run); received one"};
  }
  return JsError{JsError::Kind::Error, tensor + ": its memory could not be pinned for the call"};
}

struct AsyncCall {
  NormCall call;
  int32_t result = snError(SN_ERROR_UNSUPPORTED, 0);
  napi_deferred deferred = nullptr;
  napi_async_work work = nullptr;
  std::shared_ptr<void> pins[SN_SLOT_COUNT];  // released with the call, after it settles
  napi_ref references[SN_SLOT_COUNT] = {};

  // Off the main thread: touches only the pinned memory, never a JS value.
  static void execute(napi_env, void* data) noexcept {
    auto* self = static_cast<AsyncCall*>(data);
    self->result = sn_execute(&self->call.norm);
  }

  // On the main thread, also while the environment tears down (then JavaScript cannot run and
  // every napi call below may fail: each failure is ignored, nothing throws).
  static void complete(napi_env env, napi_status status, void* data) noexcept {
    std::unique_ptr<AsyncCall> self(static_cast<AsyncCall*>(data));  // pins go with it
    napi_delete_async_work(env, self->work);
    self->releaseReferences(env);
    try {
      bool reject = true;
      napi_value value;
      if (status == napi_ok) {
        value = resultValue(env, self->result, self->call.norm.phase, reject);
      } else {
        const std::string message = std::string(kRunAsync) + (status == napi_cancelled
                                                                   ? ": the call was cancelled; nothing was written"
                                                                   : ": the kernel failed (internal error)");
        value = makeJsError(env, JsError::Kind::Error, message.c_str());
      }
      if (value == nullptr) return;  // tearing down: no promise to settle any more
      if (reject) napi_reject_deferred(env, self->deferred, value);
      else napi_resolve_deferred(env, self->deferred, value);
    } catch (...) {
      // std::bad_alloc building a message: leave the promise pending rather than abort
    }
  }

  void releaseReferences(napi_env env) noexcept {
    for (napi_ref& reference : references) {
      if (reference != nullptr) napi_delete_reference(env, reference);
      reference = nullptr;
    }
  }
};

// Queues `call` on libuv's thread pool; returns its Promise. Throws JsError (or bad_alloc) only
// before anything is queued; returns nullptr with a pending JS exception when N-API refused (an
// async_hooks or promise hook that threw).
inline napi_value queueAsync(napi_env env, const NormCall& call) {
  auto self = std::make_unique<AsyncCall>();
  self->call = call;
  // Pin first: the napi calls after this one may run JavaScript (async_hooks, promise hooks).
  const PinCheck check = pinTensors(call, self->pins);
  if (!check.ok) throw pinError(check);
  for (int slot = 0; slot < SN_SLOT_COUNT; ++slot) {
    if (call.arrays[slot] == nullptr) continue;
    if (napi_create_reference(env, call.arrays[slot], 1, &self->references[slot]) != napi_ok) {
      self->releaseReferences(env);
      throw JsError{JsError::Kind::Error, std::string(kRunAsync) + ": out of handles"};
    }
  }
  napi_value promise, name;
  if (napi_create_promise(env, &self->deferred, &promise) != napi_ok) {
    self->releaseReferences(env);
    return nullptr;
  }
  napi_status status = napi_create_string_utf8(env, kRunAsync, NAPI_AUTO_LENGTH, &name);
  if (status == napi_ok) {
    status = napi_create_async_work(env, nullptr, name, AsyncCall::execute, AsyncCall::complete, self.get(),
                                    &self->work);
  }
  if (status == napi_ok) {
    status = napi_queue_async_work(env, self->work);
    if (status != napi_ok) napi_delete_async_work(env, self->work);
  }
  if (status != napi_ok) {
    self->releaseReferences(env);
    napi_value error = makeJsError(env, JsError::Kind::Error, "runAsync: could not be queued");
    if (error != nullptr) napi_reject_deferred(env, self->deferred, error);
    return promise;
  }
  self.release();  // complete() deletes it
  return promise;
}

// runAsync(scalars, ...tensors) -> Promise<number>: never throws.
inline napi_value runAsync(napi_env env, napi_callback_info info) noexcept {
  try {
    const Args args(env, info, kRunAsync, kRunArguments, false);
    const NormCall call = readCall(args, kRunAsync);  // sn_prepare's checks; no JavaScript runs
    const sn_norm& n = call.norm;
    if (n.samples * n.outer * n.stats * n.inner >= kInlineAsyncElements) return queueAsync(env, call);
    // Inline: refuse resizable buffers as the queued path does (the same API whatever the size).
    const PinCheck check = pinTensors(call, nullptr);
    if (!check.ok) throw pinError(check);
    bool reject = false;
    napi_value value = resultValue(env, sn_execute(&n), n.phase, reject);
    return settledPromise(env, value, reject);
  } catch (const JsError& error) {
    return rejectedPromise(env, error);
  } catch (const std::bad_alloc&) {
    return rejectedPromise(env, JsError{JsError::Kind::Error, "simdnorm: out of memory"});
  } catch (...) {
    return rejectedPromise(env, JsError{JsError::Kind::Error, "simdnorm: internal error"});
  }
}

}  // namespace simdnorm::node
