// The async variants (trainAsync, inferAsync, backwardAsync): the same arguments and checks as
// the sync call, the kernel run on libuv's thread pool (a small one on the calling thread), and a
// Promise that settles with what the sync call returns. Bad arguments reject the Promise (as an
// async function would) instead of throwing.
//
// Memory safety whatever JavaScript does while the kernel runs (pin.h): the memory of every array
// is pinned (its V8 BackingStore held) from before any JavaScript can run again until the call
// settles, so transferring, detaching or dropping an argument cannot free memory under the
// kernel; resizable ArrayBuffers are refused. The call also holds a napi_ref to each array, so
// the arrays themselves stay alive as long as the call (their memory is what matters).
//
// Raw napi_create_async_work, not Napi::AsyncWorker: the execute and complete callbacks never
// throw. When the environment tears down with a call pending (worker.terminate(), a worker's
// process.exit()), Node still runs the complete callback (from its cleanup, where JavaScript can no
// longer run): then every napi call may fail; the callback ignores those failures, releases the
// pins and references and returns. (Napi::AsyncWorker threw a Napi::Error there, which reached
// std::terminate and aborted the whole process.) When the main thread exits with calls queued,
// libuv's threads finish them before the process exits and no complete callback runs.
#pragma once

#include <node_api.h>

#include <memory>
#include <new>
#include <string>

#include "args.h"
#include "pin.h"

namespace simdnorm::node {

// Below this many elements a call costs less than the hop to libuv's thread pool and back (about
// 25 µs on the machines measured; such a kernel takes a few µs): it runs on the calling thread and
// returns its Promise already settled. It runs before any JavaScript can run again (no promise is
// created before the kernel has finished), so it needs no pin.
constexpr int64_t kInlineAsyncElements = 16384;

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

inline napi_value rejectedPromise(napi_env env, JsError::Kind kind, const char* message) noexcept {
  return settledPromise(env, makeJsError(env, kind, message), true);
}

// TypeError (a resizable buffer) or Error (memory that cannot be pinned) for a failed PinCheck.
inline JsError pinError(const char* function, const ArgReader& args, const PinCheck& check) {
  const ArrayArgument& a = args.arrays()[check.failed];
  const std::string argument =
      std::string(function) + ": argument " + std::to_string(a.index + 1) + " '" + a.name + "'";
  if (check.resizable) {
    return JsError{JsError::Kind::Type,
                   argument + " must not be backed by a resizable ArrayBuffer (it could shrink "
                              "while the kernel runs; use the sync call); received one"};
  }
  return JsError{JsError::Kind::Error, argument + ": its memory could not be pinned for the call"};
}

template <class Operation>
struct AsyncCall {
  explicit AsyncCall(const Operation& op) : operation(op) {}

  enum class Outcome { Ok, OutOfMemory, Failed };
  Operation operation;
  typename Operation::Result result{};
  Outcome outcome = Outcome::Failed;
  napi_deferred deferred = nullptr;
  napi_async_work work = nullptr;
  size_t arrayCount = 0;
  std::shared_ptr<void> pins[kMaxArguments];  // released with the call, after it settles
  napi_ref references[kMaxArguments] = {};

  // Off the main thread: touches only the pinned memory, never a JS value.
  static void execute(napi_env, void* data) noexcept {
    auto* call = static_cast<AsyncCall*>(data);
    try {
      call->result = call->operation.run();
      call->outcome = simdnorm::scratchFailed() ? Outcome::OutOfMemory : Outcome::Ok;  // same thread
    } catch (...) {
      call->outcome = Outcome::Failed;
    }
  }

  // On the main thread, also while the environment tears down (then JavaScript cannot run and
  // every napi call below may fail: each failure is ignored, nothing throws).
  static void complete(napi_env env, napi_status status, void* data) noexcept {
    std::unique_ptr<AsyncCall> call(static_cast<AsyncCall*>(data));  // pins go with it
    napi_delete_async_work(env, call->work);
    call->releaseReferences(env);
    try {
      napi_value value = nullptr;
      bool reject = true;
      if (status == napi_ok && call->outcome == Outcome::Ok) {
        value = Operation::toJs(env, call->result);
        reject = false;
      } else if (status == napi_ok && call->outcome == Outcome::OutOfMemory) {
        value = makeJsError(env, JsError::Kind::Range, outOfMemory(Operation::kAsyncName).c_str());
      } else {
        const std::string message =
            std::string(Operation::kAsyncName) +
            (status == napi_cancelled ? ": the call was cancelled; nothing was written"
                                      : ": the kernel failed (internal error)");
        value = makeJsError(env, JsError::Kind::Error, message.c_str());
      }
      if (value == nullptr) return;  // tearing down: no promise to settle any more
      if (reject) napi_reject_deferred(env, call->deferred, value);
      else napi_resolve_deferred(env, call->deferred, value);
    } catch (...) {
      // std::bad_alloc building a message: leave the promise pending rather than abort
    }
  }

  void releaseReferences(napi_env env) noexcept {
    for (size_t i = 0; i < arrayCount; ++i) {
      if (references[i] != nullptr) napi_delete_reference(env, references[i]);
      references[i] = nullptr;
    }
  }
};

// Queues `operation` (whose arrays args read) on libuv's thread pool; returns its Promise.
// Throws JsError (or bad_alloc) only before anything is queued; returns nullptr with a pending
// JS exception when N-API refused (an async_hooks or promise hook that threw).
template <class Operation>
napi_value queueAsync(napi_env env, const ArgReader& args, const Operation& operation) {
  auto call = std::make_unique<AsyncCall<Operation>>(operation);
  call->arrayCount = args.arrayCount();
  // Pin first: the napi calls after this one may run JavaScript (async_hooks, promise hooks).
  const PinCheck check = pinArrays(args.arrays(), args.arrayCount(), call->pins);
  if (!check.ok) throw pinError(Operation::kAsyncName, args, check);
  for (size_t i = 0; i < call->arrayCount; ++i) {
    if (napi_create_reference(env, args.arrays()[i].value, 1, &call->references[i]) != napi_ok) {
      call->releaseReferences(env);
      throw JsError{JsError::Kind::Error, std::string(Operation::kAsyncName) + ": out of handles"};
    }
  }
  napi_value promise, name;
  if (napi_create_promise(env, &call->deferred, &promise) != napi_ok) {
    call->releaseReferences(env);
    return nullptr;
  }
  napi_status status = napi_create_string_utf8(env, Operation::kAsyncName, NAPI_AUTO_LENGTH, &name);
  if (status == napi_ok) {
    status = napi_create_async_work(env, nullptr, name, AsyncCall<Operation>::execute,
                                    AsyncCall<Operation>::complete, call.get(), &call->work);
  }
  if (status == napi_ok) {
    status = napi_queue_async_work(env, call->work);
    if (status != napi_ok) napi_delete_async_work(env, call->work);
  }
  if (status != napi_ok) {
    call->releaseReferences(env);
    const std::string message = std::string(Operation::kAsyncName) + ": could not be queued";
    napi_value error = makeJsError(env, JsError::Kind::Error, message.c_str());
    if (error != nullptr) napi_reject_deferred(env, call->deferred, error);
    return promise;
  }
  call.release();  // complete() deletes it
  return promise;
}

template <class Operation>
napi_value runAsync(napi_env env, napi_callback_info info) noexcept {
  try {
    ArgReader args(env, info, Operation::kAsyncName, Operation::kArgumentCount);
    Operation operation(args);  // every check, the overlaps included; no JavaScript runs
    if (operation.geometry.elements() >= kInlineAsyncElements) {
      return queueAsync(env, args, operation);
    }
    // Inline: refuse resizable buffers as the queued path does (the same API whatever the size).
    const PinCheck check = pinArrays(args.arrays(), args.arrayCount(), nullptr);
    if (!check.ok) throw pinError(Operation::kAsyncName, args, check);
    const typename Operation::Result result = operation.run();
    if (simdnorm::scratchFailed()) {
      return rejectedPromise(env, JsError::Kind::Range, outOfMemory(Operation::kAsyncName).c_str());
    }
    return settledPromise(env, Operation::toJs(env, result), false);
  } catch (const JsError& error) {
    return rejectedPromise(env, error.kind, error.message.c_str());
  } catch (const std::bad_alloc&) {
    return rejectedPromise(env, JsError::Kind::Error, "simdnorm: out of memory");
  } catch (...) {
    return rejectedPromise(env, JsError::Kind::Error, "simdnorm: internal error");
  }
}

}  // namespace simdnorm::node
