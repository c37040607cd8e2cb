// Replays property cases through the C ABI of wasm/abi.cpp (sn_run over the descriptor of
// native/kernels/norm.h) built natively (not with emscripten) together with native/kernels, under
// AddressSanitizer and UndefinedBehaviorSanitizer (test/sanitize/sanitize.cmake). The cases come
// from test/sanitize/replay.test.ts: fast-check's generators of test/reliability, with the
// float64 reference's outputs, each a BatchNorm call with its arrays in the order below (kSlots),
// turned here into a BatchNorm descriptor (samples 1, outer N, stats C, inner spatial, γ/β by
// channel) whose scalars and pointer table live in blocks of their own.
//
//   simdnorm_abi_replay <cases.bin>        (SIMDNORM_REPLAY_TRACE=1: each case's label on stderr)
//
// Every array gets a block of its exact size from sn_alloc (so ASan sees one element too far, and
// sn_run's bytes to the end of the block are the array's bytes),
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
#include "abi_table.h"

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

uintptr_t ptr(const Case& c, size_t i) { return i < c.arrays.size() && c.arrays[i].present ? c.arrays[i].data : 0; }

// The slot of each array of a case, by op, in the case file's order.
const std::vector<int> kSlots[] = {
    /* train */ {SN_SLOT_X, SN_SLOT_GAMMA, SN_SLOT_BETA, SN_SLOT_Y, SN_SLOT_MEAN, SN_SLOT_INV_STD, SN_SLOT_RUNNING_MEAN,
                 SN_SLOT_RUNNING_VAR},
    /* infer */ {SN_SLOT_X, SN_SLOT_RUNNING_MEAN, SN_SLOT_RUNNING_VAR, SN_SLOT_GAMMA, SN_SLOT_BETA, SN_SLOT_Y},
    /* backward */ {SN_SLOT_DY, SN_SLOT_X, SN_SLOT_MEAN, SN_SLOT_INV_STD, SN_SLOT_GAMMA, SN_SLOT_Y, SN_SLOT_DX,
                    SN_SLOT_DGAMMA, SN_SLOT_DBETA},
    /* moments */ {SN_SLOT_X, SN_SLOT_MEAN, SN_SLOT_VARIANCE},
    /* update */ {SN_SLOT_RUNNING_MEAN, SN_SLOT_RUNNING_VAR, SN_SLOT_MEAN, SN_SLOT_VARIANCE},
};
const int kPhases[] = {SN_PHASE_TRAIN, SN_PHASE_INFER, SN_PHASE_BACKWARD, SN_PHASE_MOMENTS, SN_PHASE_UPDATE};

// The case as one sn_run: its descriptor's scalars and pointer table, each in a block of its own.
int32_t call(const Case& c) {
  if (c.op > kUpdate) return -1;
  const uintptr_t scalarBlock = sn_alloc(SN_SCALAR_COUNT * sizeof(double));
  const uintptr_t tableBlock = sn_alloc(SN_SLOT_COUNT * sizeof(uintptr_t));
  if (scalarBlock == 0 || tableBlock == 0) return -1;
  double* s = reinterpret_cast<double*>(scalarBlock);
  uintptr_t* table = reinterpret_cast<uintptr_t*>(tableBlock);
  const bool backward = c.op == kBackward;
  s[SN_SCALAR_PHASE] = kPhases[c.op];
  s[SN_SCALAR_DTYPE] = c.size == 8 ? SN_DTYPE_F64 : SN_DTYPE_F32;
  s[SN_SCALAR_SAMPLES] = 1;
  s[SN_SCALAR_OUTER] = c.outer;
  s[SN_SCALAR_STATS] = c.channels;
  s[SN_SCALAR_INNER] = c.inner;
  s[SN_SCALAR_AFFINE_GROUPS] = c.channels;
  s[SN_SCALAR_AFFINE_SIZE] = 1;
  s[SN_SCALAR_AFFINE_RUN] = c.inner > 0 ? c.inner : 1;
  // Backward masks dy by y > 0 exactly when y is given (the fused ReLU's forward output).
  const bool relu = backward ? ptr(c, 5) != 0 : c.relu != 0;
  s[SN_SCALAR_FLAGS] = (relu ? SN_FLAG_RELU : 0) | (backward && c.training ? SN_FLAG_TRAINING : 0) |
                       (c.skip ? SN_FLAG_SKIP_NON_FINITE : 0);
  s[SN_SCALAR_EPS] = c.eps;
  s[SN_SCALAR_FACTOR] = c.factor;
  s[SN_SCALAR_VAR_SCALE] = c.varScale;
  for (int slot = 0; slot < SN_SLOT_COUNT; slot++) table[slot] = 0;
  const std::vector<int>& slots = kSlots[c.op];
  for (size_t i = 0; i < slots.size(); i++) table[slots[i]] = ptr(c, i);
  const int32_t rc = sn_run(scalarBlock, tableBlock);
  if (sn_free(tableBlock) != 0 || sn_free(scalarBlock) != 0) return -1;
  return rc;
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
  int32_t rc = call(c);
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
