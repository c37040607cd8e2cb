// libFuzzer harness over the C ABI of wasm/abi.cpp (built natively with the kernels, under ASan
// and UBSan: test/sanitize/sanitize.cmake). Each input is decoded into one sn_run call: a
// descriptor's scalars (native/abi/table.mjs) and its tensor-pointer table, each in a block from
// the ABI's own allocator (sn_alloc), the tensors in blocks of their exact size with contents
// from the input (NaN, Inf, denormals, huge values). Mostly a valid descriptor of a random phase
// with a few scalars or pointers spoiled (so both the accepting and the refusing paths run),
// sometimes every scalar raw; now and then the scalars or the table themselves lie outside
// every block, misaligned, or in a block too small.
//
// Besides what the sanitizers report, the harness traps when a call that returned an error code
// changed a byte of any block, when a result is not >= 0 or a known error code, or when
// sn_free/sn_in_block accept a pointer that is not a block.
//
//   simdnorm_abi_fuzz -max_total_time=60 -print_final_stats=1 [corpus-dir]   (test/fuzz/run.sh)
//   SIMDNORM_FUZZ_TRACE=1 simdnorm_abi_fuzz <crash-or-timeout-file>           (each call's descriptor)
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "batchnorm.h"

#include "abi.h"
#include "abi_table.h"

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

// Values the data and scalars are drawn from: ordinary ones and the special ones.
double value(Input& in) {
  static const double kSpecial[] = {0.0, -0.0, 1.0, -1.0, 0.5, 1e-5, NAN, INFINITY, -INFINITY, 1e-40, 5e-324,
                                    1e30, -3e38, 3.4028234663852886e38, 1.7976931348623157e308, 1e160, 1e-310, 2.0};
  uint8_t b = in.byte();
  if (b < 160) return (static_cast<int>(b) - 80) / 16.0;  // ordinary values
  if (b < 240) return kSpecial[b % (sizeof kSpecial / sizeof kSpecial[0])];
  return in.f64();  // raw bits
}

// A count spoiled: negative, fractional, huge, off by one, NaN.
double spoilCount(Input& in, double v) {
  static const double kCounts[] = {-1.0, -0.0, 0.0, 0.5, 1.5, 2147483647.0, 2147483648.0, 4294967296.0, 65536.0,
                                   9007199254740992.0, 9007199254740993.0, 1e300, NAN, INFINITY, -INFINITY};
  switch (in.byte() % 4) {
    case 0: return v + 1;
    case 1: return v - 1;
    case 2: return kCounts[in.byte() % (sizeof kCounts / sizeof kCounts[0])];
    default: return in.f64();
  }
}

struct Block {
  uintptr_t p;
  uint32_t bytes;
};

// How many sn_run calls were accepted (and ran) and refused, printed at exit.
uint64_t accepted = 0, refused = 0;
const bool trace = std::getenv("SIMDNORM_FUZZ_TRACE") != nullptr;

// A block of `bytes` (at least 16), or a trap: the harness's own allocations must not fail.
uintptr_t block(std::vector<Block>& blocks, uint32_t bytes) {
  const uint32_t rounded = bytes == 0 ? 16 : (bytes + 15u) & ~15u;
  const uintptr_t p = sn_alloc(rounded);
  if (p == 0) __builtin_trap();
  blocks.push_back({p, rounded});
  return p;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  simdnorm::setThreads(1);  // the tensors here are below the pool's threshold anyway
  std::atexit([] {
    std::fprintf(stderr, "abi_fuzz: %llu sn_run calls, %llu accepted and run, %llu refused with an error code\n",
                 static_cast<unsigned long long>(accepted + refused), static_cast<unsigned long long>(accepted),
                 static_cast<unsigned long long>(refused));
  });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Input in{data, size};
  const int phase = in.byte() % SN_PHASE_COUNT;
  const bool f64 = in.byte() & 1;
  const uint32_t element = f64 ? 8 : 4;
  const bool raw = in.byte() % 8 == 0;  // now and then every scalar from the input

  // The natural descriptor the tensors are sized for: a BatchNorm-shaped one (what the kernels
  // run), now and then with several samples or a γ/β map the kernels do not run (unsupported).
  double s[SN_SCALAR_COUNT];
  const int64_t samples = in.byte() % 8 == 0 ? 2 : 1, outer = 1 + in.byte() % 6, stats = 1 + in.byte() % 5,
                inner = in.byte() % 24;
  const bool otherAffine = in.byte() % 8 == 0;
  s[SN_SCALAR_PHASE] = phase;
  s[SN_SCALAR_DTYPE] = f64 ? SN_DTYPE_F64 : SN_DTYPE_F32;
  s[SN_SCALAR_SAMPLES] = static_cast<double>(samples);
  s[SN_SCALAR_OUTER] = static_cast<double>(outer);
  s[SN_SCALAR_STATS] = static_cast<double>(stats);
  s[SN_SCALAR_INNER] = static_cast<double>(inner);
  s[SN_SCALAR_AFFINE_GROUPS] = otherAffine ? 1 : static_cast<double>(stats);
  s[SN_SCALAR_AFFINE_SIZE] = otherAffine ? static_cast<double>(stats) : 1;
  s[SN_SCALAR_AFFINE_RUN] = inner > 0 ? static_cast<double>(inner) : 1;
  s[SN_SCALAR_FLAGS] = in.byte() % 16;
  s[SN_SCALAR_EPS] = 1e-5;
  s[SN_SCALAR_FACTOR] = 0.1;
  s[SN_SCALAR_VAR_SCALE] = 1.0;
  const uint64_t lengths[SN_SIZE_COUNT] = {static_cast<uint64_t>(samples * outer * stats * inner),
                                           static_cast<uint64_t>(samples * stats), static_cast<uint64_t>(stats),
                                           static_cast<uint64_t>(stats)};

  std::vector<Block> blocks;
  uintptr_t pointers[SN_SLOT_COUNT] = {};
  const bool pair = in.byte() & 1;
  for (int slot = 0; slot < SN_SLOT_COUNT; slot++) {
    const uint8_t role = sn_roles[phase][slot];
    if (role == SN_ROLE_NONE || (role == SN_ROLE_PAIR && !pair)) continue;
    if (role == SN_ROLE_IN_OPTIONAL && in.byte() % 4 == 0) continue;
    const uint32_t n = static_cast<uint32_t>(lengths[sn_slot_size[slot]]);
    // The array flush against the end of its block (sn_alloc's 16-byte multiple), so that ASan
    // reports one element past it and sn_run's bytes to the block's end are the array's.
    const uint32_t bytes = n * element;
    const uintptr_t p = block(blocks, bytes);
    const uintptr_t start = p + (blocks.back().bytes - bytes);
    for (uint32_t k = 0; k < n; k++) {
      const double v = value(in);
      if (f64) reinterpret_cast<double*>(start)[k] = v;
      else reinterpret_cast<float*>(start)[k] = static_cast<float>(v);
    }
    pointers[slot] = start;
  }
  uintptr_t freed = 0;
  if (in.byte() % 3 == 0) {  // a block that no longer exists, to point into
    freed = sn_alloc(64);
    if (sn_free(freed) != 0) __builtin_trap();
  }

  // Spoil some scalars and pointers (every scalar in raw mode).
  if (raw) {
    for (double& v : s) v = in.byte() % 2 ? value(in) : in.f64();
  }
  const size_t spoils = in.byte() % 4;
  for (size_t k = 0; k < spoils; k++) {
    const uint8_t what = in.byte();
    if (what % 2 == 0) {
      const int i = (what / 2) % SN_SCALAR_COUNT;
      const bool real = i == SN_SCALAR_EPS || i == SN_SCALAR_FACTOR || i == SN_SCALAR_VAR_SCALE;
      s[i] = real ? (in.byte() % 2 ? value(in) : in.f64()) : spoilCount(in, s[i]);
      continue;
    }
    uintptr_t& p = pointers[(what / 2) % SN_SLOT_COUNT];
    switch (in.byte() % 9) {
      case 0: p = 0; break;
      case 1: p += static_cast<int8_t>(in.byte()); break;  // misaligned or out of its block
      case 2: if (!blocks.empty()) p = blocks[in.byte() % blocks.size()].p + in.byte() % 64; break;
      case 3: p = freed; break;
      case 4: p = in.u32(); break;  // garbage (a 32-bit value, as wasm32 would see)
      case 5: p = in.u64(); break;  // garbage
      case 6: p = reinterpret_cast<uintptr_t>(&accepted); break;  // static memory
      case 7: p = blocks.empty() ? 8 : blocks[in.byte() % blocks.size()].p; break;  // another tensor (overlap)
      default: p -= static_cast<uint32_t>(in.byte()) * element; break;  // before its start
    }
  }

  // The scalars and the table in blocks of their own, or (now and then) somewhere wrong.
  const uint32_t scalarBytes = SN_SCALAR_COUNT * sizeof(double), tableBytes = SN_SLOT_COUNT * sizeof(uintptr_t);
  uintptr_t scalars = block(blocks, scalarBytes);
  std::memcpy(reinterpret_cast<void*>(scalars), s, scalarBytes);
  uintptr_t table = block(blocks, tableBytes);
  std::memcpy(reinterpret_cast<void*>(table), pointers, tableBytes);
  const uint8_t where = in.byte();
  switch (where % 16) {
    case 0: scalars += 1 + where / 16 % 7; break;  // misaligned, and past its block's end
    case 1: table += 1 + where / 16 % 7; break;
    case 2: scalars = in.u64(); break;
    case 3: table = in.u64(); break;
    case 4: scalars = freed; break;
    case 5: table = 0; break;
    case 6: {  // a table in a block too small for it
      const uint32_t small = (where / 16 % SN_SLOT_COUNT) * sizeof(uintptr_t);
      const uintptr_t p = block(blocks, small);
      std::memcpy(reinterpret_cast<void*>(p), pointers, small);
      table = p + (blocks.back().bytes - small);
      break;
    }
    default: break;
  }

  // The call; when it is refused, no block may have changed.
  std::vector<std::vector<uint8_t>> before;
  for (const Block& b : blocks) before.emplace_back(reinterpret_cast<const uint8_t*>(b.p), reinterpret_cast<const uint8_t*>(b.p) + b.bytes);
  if (trace) {  // SIMDNORM_FUZZ_TRACE=1: each call's descriptor (a timeout's or a crash's is the last)
    std::fprintf(stderr, "sn_run(%#llx, %#llx) scalars", static_cast<unsigned long long>(scalars), static_cast<unsigned long long>(table));
    for (double v : s) std::fprintf(stderr, " %.17g", v);
    std::fprintf(stderr, " tensors");
    for (uintptr_t p : pointers) std::fprintf(stderr, " %#llx", static_cast<unsigned long long>(p));
    std::fprintf(stderr, "\n");
  }
  const int32_t rc = sn_run(scalars, table);
  (rc < 0 ? refused : accepted)++;
  if (rc < 0) {
    const int32_t code = -rc >> 8, argument = -rc & 0xff;
    if (code < SN_ERROR_BAD_SCALAR || code > SN_ERROR_NO_MEMORY) __builtin_trap();  // an unknown error code
    if (argument > SN_SCALAR_COUNT && argument > SN_SLOT_COUNT) __builtin_trap();
    for (size_t k = 0; k < blocks.size(); k++) {
      if (std::memcmp(before[k].data(), reinterpret_cast<const void*>(blocks[k].p), blocks[k].bytes) != 0) {
        std::fprintf(stderr, "sn_run returned %d but changed block %zu\n", rc, k);
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
