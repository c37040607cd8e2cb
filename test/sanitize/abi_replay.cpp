// Replays property cases through the C ABI of wasm/abi.cpp built natively (not with emscripten)
// together with native/kernels, under AddressSanitizer and UndefinedBehaviorSanitizer
// (test/sanitize/sanitize.cmake). The cases come from test/sanitize/replay.test.ts: fast-check's
// generators of test/reliability, with the float64 reference's outputs.
//
//   simdnorm_abi_replay <cases.bin>        (SIMDNORM_REPLAY_TRACE=1: each case's label on stderr)
//
// Every array gets a block of its exact size from sn_alloc (so ASan sees one element too far),
// the kernel's return code must be the expected one, and every output must be within
// lib/compare.ts's tolerance of the reference (same NaN/Inf pattern). Last line:
// "replayed N cases (E elements compared), F failures"; exit code 1 on any failure.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "abi.h"

namespace {

// ---- reading the case file (little-endian; written by replay.test.ts)

struct Reader {
  std::vector<uint8_t> bytes;
  size_t at = 0;
  bool ok = true;
  template <typename T>
  T read() {
    T v{};
    if (at + sizeof(T) > bytes.size()) {
      ok = false;
      return v;
    }
    std::memcpy(&v, bytes.data() + at, sizeof(T));
    at += sizeof(T);
    return v;
  }
};

// One array argument: its initial values (inputs) and, for outputs, the expected values.
struct Array {
  bool present = false;
  bool output = false;
  int aliasOf = -1;  // the same memory as that earlier array (y over x, dx over dy)
  uint32_t length = 0;
  std::vector<double> initial;
  std::vector<double> expected;
  double minScale = 0;
  uintptr_t block = 0;  // from sn_alloc
  uintptr_t data = 0;   // where the array starts in it
};

enum Op : uint8_t { kTrain = 0, kInfer = 1, kBackward = 2, kMoments = 3, kUpdate = 4 };

struct Case {
  uint8_t op, size, relu, training, skip;
  int32_t outer, channels, inner, expectedRc;
  double eps, factor, varScale;
  std::vector<Array> arrays;  // in the kernel's argument order
  std::string label;
};

bool readCase(Reader& r, Case& c) {
  c.op = r.read<uint8_t>();
  c.size = r.read<uint8_t>();
  c.relu = r.read<uint8_t>();
  c.training = r.read<uint8_t>();
  c.skip = r.read<uint8_t>();
  c.outer = r.read<int32_t>();
  c.channels = r.read<int32_t>();
  c.inner = r.read<int32_t>();
  c.expectedRc = r.read<int32_t>();
  c.eps = r.read<double>();
  c.factor = r.read<double>();
  c.varScale = r.read<double>();
  uint32_t labelLength = r.read<uint32_t>();
  if (!r.ok || r.at + labelLength > r.bytes.size()) return false;
  c.label.assign(reinterpret_cast<const char*>(r.bytes.data() + r.at), labelLength);
  r.at += labelLength;
  uint8_t count = r.read<uint8_t>();
  c.arrays.resize(count);
  for (Array& a : c.arrays) {
    uint8_t flags = r.read<uint8_t>();
    a.present = flags & 1;
    a.output = flags & 2;
    if (flags & 4) a.aliasOf = r.read<uint8_t>();
    bool hasExpected = flags & 8;
    a.length = r.read<uint32_t>();
    a.minScale = r.read<double>();
    if (!r.ok || a.length > (1u << 26)) return false;
    if (a.aliasOf >= static_cast<int>(&a - c.arrays.data())) return false;
    if (a.present && a.aliasOf < 0) {
      a.initial.resize(a.length);
      for (double& v : a.initial) v = r.read<double>();
    }
    if (hasExpected) {
      a.expected.resize(a.length);
      for (double& v : a.expected) v = r.read<double>();
    }
  }
  return r.ok;
}

// ---- comparison: lib/compare.ts's worstMismatch

// Scaled by the largest value, as lib/compare.ts's rms (x * x alone under/overflows).
double rms(const std::vector<double>& v) {
  double largest = 0, sum = 0;
  size_t n = 0;
  for (double x : v) {
    if (std::isfinite(x)) {
      largest = std::fmax(largest, std::fabs(x));
      n++;
    }
  }
  if (largest == 0) return 0;
  for (double x : v) {
    if (std::isfinite(x)) sum += (x / largest) * (x / largest);
  }
  return largest * std::sqrt(sum / static_cast<double>(n));
}

// The first element outside tolerance, as text, or "".
std::string mismatch(const std::vector<double>& got, const std::vector<double>& expected, double tolerance, double minScale) {
  const double scale = std::fmax(rms(expected), minScale);
  for (size_t i = 0; i < got.size(); i++) {
    double g = got[i], e = expected[i], error;
    if (!std::isfinite(g) || !std::isfinite(e)) {
      bool same = (std::isnan(g) && std::isnan(e)) || g == e;
      error = same ? 0 : INFINITY;
    } else {
      double diff = std::fabs(g - e);
      error = diff == 0 ? 0 : diff / std::fmax(std::fabs(e), scale);
    }
    if (error > tolerance) {
      char buffer[160];
      std::snprintf(buffer, sizeof buffer, "[%zu] = %.9g, expected %.9g (error %.3g > %g)", i, g, e, error, tolerance);
      return buffer;
    }
  }
  return "";
}

// ---- running a case

template <typename T>
void fill(uintptr_t block, const std::vector<double>& values) {
  T* p = reinterpret_cast<T*>(block);
  for (size_t i = 0; i < values.size(); i++) p[i] = static_cast<T>(values[i]);
}

template <typename T>
std::vector<double> readBack(uintptr_t block, uint32_t length) {
  const T* p = reinterpret_cast<const T*>(block);
  return std::vector<double>(p, p + length);
}

uintptr_t ptr(const Case& c, size_t i) { return c.arrays[i].present ? c.arrays[i].data : 0; }

template <bool F64>
int32_t call(const Case& c) {
  const int32_t o = c.outer, ch = c.channels, in = c.inner;
  switch (c.op) {
    case kTrain:
      return (F64 ? sn_train_f64 : sn_train_f32)(ptr(c, 0), o, ch, in, ptr(c, 1), ptr(c, 2), c.eps, c.relu, ptr(c, 3),
                                                 ptr(c, 4), ptr(c, 5), ptr(c, 6), ptr(c, 7), c.factor, c.varScale, c.skip);
    case kInfer:
      return (F64 ? sn_infer_f64 : sn_infer_f32)(ptr(c, 0), o, ch, in, ptr(c, 1), ptr(c, 2), ptr(c, 3), ptr(c, 4), c.eps,
                                                 c.relu, ptr(c, 5));
    case kBackward:
      return (F64 ? sn_backward_f64 : sn_backward_f32)(ptr(c, 0), ptr(c, 1), o, ch, in, ptr(c, 2), ptr(c, 3), ptr(c, 4),
                                                       ptr(c, 5), c.training, ptr(c, 6), ptr(c, 7), ptr(c, 8));
    case kMoments:
      return (F64 ? sn_moments_f64 : sn_moments_f32)(ptr(c, 0), o, ch, in, ptr(c, 1), ptr(c, 2));
    default:
      return (F64 ? sn_update_running_f64 : sn_update_running_f32)(ptr(c, 0), ptr(c, 1), ptr(c, 2), ptr(c, 3), ch,
                                                                   c.factor, c.varScale, c.skip);
  }
}

// Runs one case; returns the failure text or "". Counts the compared elements.
// sn_alloc hands out 16-byte multiples; each array is put flush against the end of its block
// (or, in odd cases, at its start), so that ASan's redzone begins right after (or before) it
// and one element read or written past it is reported. Those offsets also give the kernels
// arrays that are not 16-byte aligned.
std::string run(Case& c, size_t& compared, bool atEnd) {
  const size_t element = c.size;
  for (size_t i = 0; i < c.arrays.size(); i++) {
    Array& a = c.arrays[i];
    if (!a.present) continue;
    if (a.aliasOf >= 0) {
      a.block = 0;
      a.data = c.arrays[a.aliasOf].data;
      continue;
    }
    const uint32_t bytes = static_cast<uint32_t>(a.length * element);
    const uint32_t rounded = bytes == 0 ? 16 : (bytes + 15u) & ~15u;
    a.block = sn_alloc(rounded);
    if (a.block == 0) return "sn_alloc failed";
    a.data = a.block + (atEnd ? rounded - bytes : 0);
    if (element == 8) fill<double>(a.data, a.initial);
    else fill<float>(a.data, a.initial);
  }
  int32_t rc = element == 8 ? call<true>(c) : call<false>(c);
  std::string failure;
  if (rc != c.expectedRc) {
    failure = "returned " + std::to_string(rc) + ", expected " + std::to_string(c.expectedRc);
  } else {
    const double tolerance = element == 8 ? 1e-11 : 1e-5;
    for (size_t i = 0; i < c.arrays.size() && failure.empty(); i++) {
      Array& a = c.arrays[i];
      if (!a.present || a.expected.empty()) continue;
      std::vector<double> got = element == 8 ? readBack<double>(a.data, a.length) : readBack<float>(a.data, a.length);
      std::string m = mismatch(got, a.expected, tolerance, a.minScale);
      if (!m.empty()) failure = "array " + std::to_string(i) + m;
      compared += got.size();
    }
  }
  for (size_t i = c.arrays.size(); i-- > 0;) {
    if (c.arrays[i].block != 0 && sn_free(c.arrays[i].block) != 0) failure += " (sn_free refused a block)";
  }
  return failure;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <cases.bin>\n", argv[0]);
    return 2;
  }
  Reader r;
  if (FILE* f = std::fopen(argv[1], "rb")) {
    uint8_t chunk[1 << 16];
    size_t n;
    while ((n = std::fread(chunk, 1, sizeof chunk, f)) > 0) r.bytes.insert(r.bytes.end(), chunk, chunk + n);
    std::fclose(f);
  } else {
    std::fprintf(stderr, "cannot read %s\n", argv[1]);
    return 2;
  }
  if (r.read<uint32_t>() != 0x43524e53u /* "SNRC" */) {
    std::fprintf(stderr, "%s is not a case file\n", argv[1]);
    return 2;
  }
  const uint32_t count = r.read<uint32_t>();
  // SIMDNORM_REPLAY_TRACE=1: each case's label on stderr before it runs (a sanitizer report
  // ends the process: the last label is the case that caused it).
  const bool trace = std::getenv("SIMDNORM_REPLAY_TRACE") != nullptr;
  size_t failures = 0, compared = 0;
  for (uint32_t k = 0; k < count; k++) {
    Case c;
    if (!readCase(r, c)) {
      std::fprintf(stderr, "case %u: truncated file\n", k);
      return 2;
    }
    if (trace) std::fprintf(stderr, "case %u: %s\n", k, c.label.c_str());
    std::string failure = run(c, compared, k % 2 == 0);
    if (!failure.empty()) {
      if (++failures <= 20) std::printf("FAIL case %u (%s): %s\n", k, c.label.c_str(), failure.c_str());
    }
  }
  std::printf("replayed %u cases (%zu elements compared), %zu failures\n", count, compared, failures);
  return failures == 0 ? 0 : 1;
}
