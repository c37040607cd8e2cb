// libFuzzer harness over the C ABI of wasm/abi.cpp (built natively with the kernels, under ASan
// and UBSan: test/sanitize/sanitize.cmake). Each input is decoded into one call of an sn_*
// export: the arrays live in blocks from the ABI's own allocator (sn_alloc), their contents
// (NaN, Inf, denormals, huge values) and the pointers, dimensions and scalars come from the input.
// Mostly a valid call with a few arguments spoiled (so both the accepting and the refusing paths
// run), sometimes every argument raw.
//
// Besides what the sanitizers report, the harness traps when a call that returned an error code
// changed a byte of any block, or when sn_free/sn_in_block accept a pointer that is not a block.
//
//   simdnorm_abi_fuzz -max_total_time=60 -print_final_stats=1 [corpus-dir]   (test/fuzz/run.sh)
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "batchnorm.h"

#include "abi.h"

namespace {

// The fuzz input, read front to back; zeros once it runs out.
struct Input {
  const uint8_t* data;
  size_t size, at = 0;
  uint8_t byte() { return at < size ? data[at++] : 0; }
  uint32_t u32() {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= static_cast<uint32_t>(byte()) << (8 * i);
    return v;
  }
  uint64_t u64() { return u32() | static_cast<uint64_t>(u32()) << 32; }
  double f64() {
    uint64_t bits = u64();
    double v;
    std::memcpy(&v, &bits, sizeof v);
    return v;
  }
};

// Kinds of argument of the exports, in each export's order.
enum Kind : uint8_t { kTensor, kChannel, kOptTensor, kOptChannel, kPair, kOuter, kChannels, kInner, kCount, kEps, kFlag, kFactor, kVarScale };

struct Export {
  const char* name;
  bool f64;
  std::vector<Kind> args;
};

const std::vector<Kind> kTrainArgs = {kTensor, kOuter, kChannels, kInner, kOptChannel, kOptChannel, kEps, kFlag,
                                      kTensor, kChannel, kChannel, kPair, kPair, kFactor, kVarScale, kFlag};
const std::vector<Kind> kInferArgs = {kTensor, kOuter, kChannels, kInner, kChannel, kChannel, kOptChannel, kOptChannel,
                                      kEps, kFlag, kTensor};
const std::vector<Kind> kBackwardArgs = {kTensor, kTensor, kOuter, kChannels, kInner, kChannel, kChannel, kOptChannel,
                                         kOptTensor, kFlag, kTensor, kChannel, kChannel};
const std::vector<Kind> kMomentsArgs = {kTensor, kOuter, kChannels, kInner, kChannel, kChannel};
const std::vector<Kind> kUpdateArgs = {kChannel, kChannel, kChannel, kChannel, kCount, kFactor, kVarScale, kFlag};

const Export kExports[] = {
    {"sn_train_f32", false, kTrainArgs},       {"sn_train_f64", true, kTrainArgs},
    {"sn_infer_f32", false, kInferArgs},       {"sn_infer_f64", true, kInferArgs},
    {"sn_backward_f32", false, kBackwardArgs}, {"sn_backward_f64", true, kBackwardArgs},
    {"sn_moments_f32", false, kMomentsArgs},   {"sn_moments_f64", true, kMomentsArgs},
    {"sn_update_running_f32", false, kUpdateArgs}, {"sn_update_running_f64", true, kUpdateArgs},
};

// An argument as it will be passed: a pointer/int as integer bits, or a double.
struct Arg {
  uint64_t bits = 0;
  double real = 0;
};

int32_t invoke(size_t which, const Arg* a) {
  auto p = [&](int i) { return static_cast<uintptr_t>(a[i].bits); };
  auto d = [&](int i) { return static_cast<int32_t>(static_cast<uint32_t>(a[i].bits)); };
  auto r = [&](int i) { return a[i].real; };
  switch (which) {
    case 0: return sn_train_f32(p(0), d(1), d(2), d(3), p(4), p(5), r(6), d(7), p(8), p(9), p(10), p(11), p(12), r(13), r(14), d(15));
    case 1: return sn_train_f64(p(0), d(1), d(2), d(3), p(4), p(5), r(6), d(7), p(8), p(9), p(10), p(11), p(12), r(13), r(14), d(15));
    case 2: return sn_infer_f32(p(0), d(1), d(2), d(3), p(4), p(5), p(6), p(7), r(8), d(9), p(10));
    case 3: return sn_infer_f64(p(0), d(1), d(2), d(3), p(4), p(5), p(6), p(7), r(8), d(9), p(10));
    case 4: return sn_backward_f32(p(0), p(1), d(2), d(3), d(4), p(5), p(6), p(7), p(8), d(9), p(10), p(11), p(12));
    case 5: return sn_backward_f64(p(0), p(1), d(2), d(3), d(4), p(5), p(6), p(7), p(8), d(9), p(10), p(11), p(12));
    case 6: return sn_moments_f32(p(0), d(1), d(2), d(3), p(4), p(5));
    case 7: return sn_moments_f64(p(0), d(1), d(2), d(3), p(4), p(5));
    case 8: return sn_update_running_f32(p(0), p(1), p(2), p(3), d(4), r(5), r(6), d(7));
    default: return sn_update_running_f64(p(0), p(1), p(2), p(3), d(4), r(5), r(6), d(7));
  }
}

// Values the data and scalars are drawn from: ordinary ones and the special ones.
double value(Input& in) {
  static const double kSpecial[] = {0.0, -0.0, 1.0, -1.0, 0.5, 1e-5, NAN, INFINITY, -INFINITY, 1e-40, 5e-324,
                                    1e30, -3e38, 3.4028234663852886e38, 1.7976931348623157e308, 1e160, 1e-310, 2.0};
  uint8_t b = in.byte();
  if (b < 160) return (static_cast<int>(b) - 80) / 16.0;  // ordinary values
  if (b < 240) return kSpecial[b % (sizeof kSpecial / sizeof kSpecial[0])];
  return in.f64();  // raw bits
}

struct Block {
  uintptr_t p;
  uint32_t bytes;
};

// How many kernel calls the ABI accepted (and ran) and refused, printed at exit.
uint64_t accepted = 0, refused = 0;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  simdnorm::setThreads(1);  // the tensors here are below the pool's threshold anyway
  std::atexit([] {
    std::fprintf(stderr, "abi_fuzz: %llu kernel calls, %llu accepted and run, %llu refused with an error code\n",
                 static_cast<unsigned long long>(accepted + refused), static_cast<unsigned long long>(accepted),
                 static_cast<unsigned long long>(refused));
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in{data, size};
  const size_t which = in.byte() % 10;
  const Export& e = kExports[which];
  const uint32_t element = e.f64 ? 8 : 4;
  const bool raw = in.byte() % 8 == 0;  // now and then every argument from the input

  // The natural geometry the arrays are sized for.
  const int32_t outer = 1 + in.byte() % 6, channels = 1 + in.byte() % 5, inner = in.byte() % 24;
  const uint32_t elements = static_cast<uint32_t>(outer * channels * inner);

  std::vector<Block> blocks;
  std::vector<Arg> args(e.args.size());
  uintptr_t freed = 0;
  for (size_t i = 0; i < e.args.size(); i++) {
    Arg& a = args[i];
    switch (e.args[i]) {
      case kTensor:
      case kChannel:
      case kOptTensor:
      case kOptChannel:
      case kPair: {
        const bool optional = e.args[i] == kOptTensor || e.args[i] == kOptChannel || e.args[i] == kPair;
        if (optional && in.byte() % 4 == 0) break;  // absent (0)
        const uint32_t n = (e.args[i] == kTensor || e.args[i] == kOptTensor) ? elements : static_cast<uint32_t>(channels);
        // A block of the array's size rounded to 16 bytes (what sn_alloc hands out), the array
        // flush against its end so that ASan reports one element past it.
        const uint32_t bytes = n * element, rounded = bytes == 0 ? 16 : (bytes + 15u) & ~15u;
        const uintptr_t p = sn_alloc(rounded);
        if (p == 0) __builtin_trap();
        blocks.push_back({p, rounded});
        const uintptr_t start = p + (rounded - bytes);
        for (uint32_t k = 0; k < n; k++) {
          double v = value(in);
          if (e.f64) reinterpret_cast<double*>(start)[k] = v;
          else reinterpret_cast<float*>(start)[k] = static_cast<float>(v);
        }
        a.bits = start;
        break;
      }
      case kOuter: a.bits = static_cast<uint32_t>(outer); break;
      case kChannels:
      case kCount: a.bits = static_cast<uint32_t>(channels); break;
      case kInner: a.bits = static_cast<uint32_t>(inner); break;
      case kEps: a.real = 1e-5; break;
      case kFactor: a.real = 0.1; break;
      case kVarScale: a.real = 1.0; break;
      case kFlag: a.bits = in.byte() & 1; break;
    }
  }
  if (in.byte() % 3 == 0) {  // a block that no longer exists, to point into
    freed = sn_alloc(64);
    if (sn_free(freed) != 0) __builtin_trap();
  }

  // Spoil some arguments (all of them in raw mode).
  const size_t spoils = raw ? args.size() : in.byte() % 4;
  for (size_t s = 0; s < spoils; s++) {
    const size_t i = raw ? s : in.byte() % args.size();
    Arg& a = args[i];
    const uint8_t how = in.byte();
    switch (e.args[i]) {
      case kTensor:
      case kChannel:
      case kOptTensor:
      case kOptChannel:
      case kPair:
        switch (how % 8) {
          case 0: a.bits = 0; break;
          case 1: a.bits += static_cast<int8_t>(in.byte()); break;  // misaligned or out of its block
          case 2: if (!blocks.empty()) a.bits = blocks[in.byte() % blocks.size()].p + in.byte() % 64; break;
          case 3: a.bits = freed; break;
          case 4: a.bits = in.u32(); break;  // garbage (a 32-bit value, as wasm32 would see)
          case 5: a.bits = in.u64(); break;  // garbage
          case 6: a.bits = reinterpret_cast<uintptr_t>(&e); break;  // static memory
          default: a.bits -= static_cast<uint32_t>(in.byte()) * element; break;  // before its start
        }
        break;
      case kOuter:
      case kChannels:
      case kInner:
      case kCount:
        switch (how % 6) {
          case 0: a.bits = in.u32(); break;  // any int32, negative ones included
          case 1: a.bits = static_cast<uint32_t>(a.bits) + 1u; break;  // wraps to a negative int32 at 2^31
          case 2: a.bits = static_cast<uint32_t>(a.bits) - 1u; break;
          case 3: a.bits = 0; break;
          case 4: a.bits = 0x7fffffffu; break;
          default: a.bits = 65536; break;
        }
        break;
      case kEps:
      case kFactor:
      case kVarScale: a.real = how % 2 ? value(in) : in.f64(); break;
      case kFlag: a.bits = in.u32(); break;
    }
  }

  // The call; when it is refused, no block may have changed.
  std::vector<std::vector<uint8_t>> before;
  for (const Block& b : blocks) before.emplace_back(reinterpret_cast<const uint8_t*>(b.p), reinterpret_cast<const uint8_t*>(b.p) + b.bytes);
  const int32_t rc = invoke(which, args.data());
  (rc < 0 ? refused : accepted)++;
  if (rc < 0) {
    const int32_t code = -rc >> 8;
    if (code < 1 || code > 7) __builtin_trap();  // an error code the TS side does not know
    for (size_t k = 0; k < blocks.size(); k++) {
      if (std::memcmp(before[k].data(), reinterpret_cast<const void*>(blocks[k].p), blocks[k].bytes) != 0) {
        std::fprintf(stderr, "%s returned %d but changed block %zu\n", e.name, rc, k);
        __builtin_trap();
      }
    }
  } else if (rc > 1) {
    __builtin_trap();
  }

  // The allocator's own entry points with what is left of the input.
  const uintptr_t probe = in.u64();
  bool isBlock = false;
  for (const Block& b : blocks) isBlock |= b.p == probe;
  if (!isBlock && sn_free(probe) != -1) __builtin_trap();
  const uint32_t probeBytes = in.u32();
  const uint32_t align = in.byte() % 10;
  if (sn_in_block(probe, probeBytes, align) == 1) {
    bool inside = false;
    for (const Block& b : blocks) inside |= probe >= b.p && probeBytes <= b.bytes && probe - b.p <= b.bytes - probeBytes;
    if (!inside || (align != 1 && align != 4 && align != 8) || probe % align != 0) __builtin_trap();
  }
  for (const Block& b : blocks) {
    if (sn_free(b.p) != 0) __builtin_trap();
  }
  return 0;
}
