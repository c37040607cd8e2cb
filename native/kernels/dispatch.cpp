// Which ISA runs: simdnorm::avx2 (built with -mavx2 -mfma when SIMDNORM_HAVE_AVX2 is defined) on a
// CPU with AVX2 and FMA, else simdnorm::base (core.cpp's sn_execute asks useAvx2()). Also the SIMD
// level's name and the bandwidth probes of the benchmarks.
#include "batchnorm.h"
#include "parallel.h"
#include "simd.h"  // the base ISA's helpers, for the probes

namespace simdnorm {

namespace {

bool portableOnly = false;  // usePortableKernels

}  // namespace

// Whether the AVX2+FMA kernels run (core.cpp's sn_execute dispatches on it).
bool useAvx2() {
#ifdef SIMDNORM_HAVE_AVX2
  static const bool supported = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return supported && !portableOnly;
#else
  return false;
#endif
}

void usePortableKernels(bool portable) { portableOnly = portable; }

const char* simdLevel() {
  if (useAvx2()) return "avx2-fma";
#if defined(__AVX2__) && defined(__FMA__)
  return "avx2-fma";
#elif defined(__SSE2__)
  return "sse2";
#elif defined(__ARM_NEON)
  return "neon";
#elif defined(__wasm_simd128__)
  return "simd128";
#else
  return "scalar";
#endif
}

// ---- bandwidth probes ----------------------------------------------------------------------

namespace {

constexpr int64_t kProbePiece = int64_t{1} << 20;       // bytes per task
constexpr int64_t kStreamCopyBytes = int64_t{8} << 20;  // as the kernels: large outputs stream

void copyPiece(char* dst, const char* src, int64_t bytes, bool stream) {
#if defined(__SSE2__)
  if (stream) {
    int64_t head = static_cast<int64_t>((16 - reinterpret_cast<uintptr_t>(dst) % 16) % 16);
    if (head > bytes) head = bytes;
    __builtin_memcpy(dst, src, static_cast<size_t>(head));
    int64_t i = head;
    for (; i + 64 <= bytes; i += 64) {
      for (int q = 0; q < 4; q++) {
        __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i + 16 * q));
        _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i + 16 * q), v);
      }
    }
    __builtin_memcpy(dst + i, src + i, static_cast<size_t>(bytes - i));
    return;  // parallelRun fences the streaming stores
  }
#endif
  (void)stream;
  __builtin_memcpy(dst, src, static_cast<size_t>(bytes));
}

}  // namespace

void copyBytes(void* dst, const void* src, int64_t bytes, int threads) {
  if (bytes <= 0) return;
  const bool stream = bytes >= kStreamCopyBytes;
  parallelFor(
      (bytes + kProbePiece - 1) / kProbePiece, bytes / 4,
      [&](int64_t t) {
        const int64_t start = t * kProbePiece;
        const int64_t n = bytes - start < kProbePiece ? bytes - start : kProbePiece;
        copyPiece(static_cast<char*>(dst) + start, static_cast<const char*>(src) + start, n, stream);
      },
      threads);
}

double readFloats(const float* src, int64_t n, int threads) {
  using namespace base;
  if (n <= 0) return 0;
  constexpr int64_t kPiece = kProbePiece / 4, L = kFloatLanes;
  const int64_t tasks = (n + kPiece - 1) / kPiece;
  double* partial = static_cast<double*>(scratch(static_cast<size_t>(tasks) * sizeof(double)));
  if (partial == nullptr) return __builtin_nan("");
  parallelFor(
      tasks, n,
      [&](int64_t t) {
        const float* p = src + t * kPiece;
        const int64_t m = n - t * kPiece < kPiece ? n - t * kPiece : kPiece;
        VFloat a[4] = {};
        int64_t i = 0;
        for (; i + 4 * L <= m; i += 4 * L) {
          for (int u = 0; u < 4; u++) a[u] += load<VFloat>(p + i + u * L);
        }
        double s = 0;
        for (; i < m; i++) s += p[i];
        for (int u = 0; u < 4; u++) {
          for (int l = 0; l < L; l++) s += a[u][l];
        }
        partial[t] = s;
      },
      threads);
  double sum = 0;
  for (int64_t t = 0; t < tasks; t++) sum += partial[t];
  return sum;
}

}  // namespace simdnorm
