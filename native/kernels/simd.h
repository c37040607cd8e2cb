// The vector type and the few SIMD helpers of the kernels, fixed by the target's predefined
// macros. Everything lives in namespace simdnorm::SIMDNORM_ISA because the kernel sources are
// compiled once per ISA (-DSIMDNORM_ISA=avx2 -mavx2 -mfma, -DSIMDNORM_ISA=base): two copies of
// an inline function with one name but different instructions would break the ODR. For the
// same reason the per-ISA files use compiler builtins, not std:: inline functions.
//
//   __AVX2__ + __FMA__                      8 x float, 4 x double
//   __SSE2__, __ARM_NEON, __wasm_simd128__  4 x float, 2 x double
//   otherwise                               1 x float, 1 x double (scalar)
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__SSE2__)
#include <immintrin.h>
#endif
#if defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>
#endif

#ifndef SIMDNORM_ISA
#define SIMDNORM_ISA base
#endif

namespace simdnorm {
namespace SIMDNORM_ISA {

// For the helpers whose loop state must stay in registers: a call that is not inlined takes the
// address of that state, and every store through a vector (memcpy) may then overwrite it.
#define SIMDNORM_INLINE inline __attribute__((always_inline))
#define SIMDNORM_LAMBDA_INLINE __attribute__((always_inline))

// The rows path's reductions read ahead with prefetch hints: one core's demand reads alone leave
// part of the memory bandwidth unused (channels-last statistics pass, one thread: 1.6-1.7 ->
// 1.35-1.5 of the copy time per byte; a task's rows are contiguous, and the rows after its end
// are the next task's). Not on the planes path: its spans end where another channel's plane
// begins, and read-ahead there cost more than it gave. A hint for the line kPrefetchBytes past
// p; it never faults, so it may point past the array. (A no-op in WASM.)
constexpr uintptr_t kPrefetchBytes = 8192;
SIMDNORM_INLINE void prefetchAhead(const void* p) {
  __builtin_prefetch(reinterpret_cast<const void*>(reinterpret_cast<uintptr_t>(p) + kPrefetchBytes), 0, 3);
}
// Whether the float column sums of a rows-path pass over `bytes` of inputs read ahead: natively
// from kPrefetchFromBytes (below, the inputs come from the caches, where a hint per vector only
// takes load slots: [64, 256]'s backward reads two vectors and hints two per step); never in WASM.
#if defined(__wasm__)
constexpr bool readsAhead(int64_t) { return false; }
#else
constexpr int64_t kPrefetchFromBytes = int64_t{256} << 10;
inline bool readsAhead(int64_t bytes) { return bytes >= kPrefetchFromBytes; }
#endif

#if defined(__AVX2__) && defined(__FMA__)
constexpr int kVectorBytes = 32;
#elif defined(__SSE2__) || defined(__ARM_NEON) || defined(__wasm_simd128__)
constexpr int kVectorBytes = 16;
#else
constexpr int kVectorBytes = 8;  // one double: "vectors" of one lane
#endif

constexpr int kFloatLanes = kVectorBytes == 8 ? 1 : kVectorBytes / 4;
constexpr int kDoubleLanes = kVectorBytes / 8;

// aligned(element): unaligned loads and stores through memcpy are then plain vector moves.
typedef float VFloat __attribute__((vector_size(kFloatLanes * 4), aligned(4)));
typedef int32_t VFloatMask __attribute__((vector_size(kFloatLanes * 4), aligned(4)));
typedef double VDouble __attribute__((vector_size(kDoubleLanes * 8), aligned(8)));
typedef int64_t VDoubleMask __attribute__((vector_size(kDoubleLanes * 8), aligned(8)));
// kDoubleLanes floats: the unit that converts to one VDouble.
typedef float VFloatHalf __attribute__((vector_size(kDoubleLanes * 4), aligned(4)));

template <typename T>
struct Simd;
template <>
struct Simd<float> {
  typedef VFloat V;
  typedef VFloatMask Mask;
  static constexpr int kLanes = kFloatLanes;
};
template <>
struct Simd<double> {
  typedef VDouble V;
  typedef VDoubleMask Mask;
  static constexpr int kLanes = kDoubleLanes;
};

template <typename T>
using Vec = typename Simd<T>::V;
template <typename T>
constexpr int lanes() {
  return Simd<T>::kLanes;
}

template <typename V, typename T>
inline V splat(T s) {
  return V{} + s;
}

template <typename V, typename T>
inline V load(const T* p) {
  V v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}

template <typename V, typename T>
inline void store(T* p, V v) {
  __builtin_memcpy(p, &v, sizeof v);
}

#if defined(__AVX2__) && defined(__FMA__)
typedef int32_t VHalfMask __attribute__((vector_size(16)));
// AVX masks of the lanes below k.
inline __m256i lanesBelow8(int64_t k) { return (__m256i)(VFloatMask{0, 1, 2, 3, 4, 5, 6, 7} < (int32_t)k); }
inline __m256i lanesBelow4x64(int64_t k) { return (__m256i)(VDoubleMask{0, 1, 2, 3} < k); }
inline __m128i lanesBelow4(int64_t k) { return (__m128i)(VHalfMask{0, 1, 2, 3} < (int32_t)k); }
#endif

// The first k lanes from p, the rest zero; never touches p + k and beyond. (Not a memcpy of
// k * sizeof(T) bytes: that is a library call, and tails of short runs are frequent.)
template <typename V, typename T>
inline V loadPartial(const T* p, int64_t k) {
#if defined(__AVX2__) && defined(__FMA__)
  if constexpr (sizeof(V) == 32 && sizeof(T) == 4) return (V)_mm256_maskload_ps(p, lanesBelow8(k));
  if constexpr (sizeof(V) == 32 && sizeof(T) == 8) return (V)_mm256_maskload_pd(p, lanesBelow4x64(k));
  if constexpr (sizeof(V) == 16 && sizeof(T) == 4) return (V)_mm_maskload_ps(p, lanesBelow4(k));
#endif
  V v = {};
  for (int64_t i = 0; i < k; i++) v[i] = p[i];
  return v;
}

// The first k lanes of v to p.
template <typename V, typename T>
inline void storePartial(T* p, V v, int64_t k) {
#if defined(__AVX2__) && defined(__FMA__)
  if constexpr (sizeof(V) == 32 && sizeof(T) == 4) return _mm256_maskstore_ps(p, lanesBelow8(k), (__m256)v);
  if constexpr (sizeof(V) == 32 && sizeof(T) == 8) return _mm256_maskstore_pd(p, lanesBelow4x64(k), (__m256d)v);
  if constexpr (sizeof(V) == 16 && sizeof(T) == 4) return _mm_maskstore_ps(p, lanesBelow4(k), (__m128)v);
#endif
  for (int64_t i = 0; i < k; i++) p[i] = v[i];
}

// Whether streamStore bypasses the caches (x86 non-temporal stores), and the alignment it needs.
#if defined(__SSE2__)
constexpr bool kCanStream = true;
#else
constexpr bool kCanStream = false;
#endif

// A store that does not allocate cache lines; p must be aligned to sizeof(V) when kCanStream.
// Weakly ordered: parallelRun fences them on every thread before it returns.
template <typename V, typename T>
inline void streamStore(T* p, V v) {
#if defined(__AVX2__) && defined(__FMA__)
  if constexpr (sizeof(T) == 4) _mm256_stream_ps(reinterpret_cast<float*>(p), (__m256)v);
  else _mm256_stream_pd(reinterpret_cast<double*>(p), (__m256d)v);
#elif defined(__SSE2__)
  if constexpr (sizeof(T) == 4) _mm_stream_ps(reinterpret_cast<float*>(p), (__m128)v);
  else _mm_stream_pd(reinterpret_cast<double*>(p), (__m128d)v);
#else
  store(p, v);
#endif
}

// a * b + c, fused where the ISA has FMA. Explicit, because a compiler contracting a * b + c by
// itself may do it in one inlined copy of a formula and not in another (a vector body and its
// partial tail), and then the same element rounds differently with the buffer's alignment.
template <typename V>
inline V mulAdd(V a, V b, V c) {
#if defined(__AVX2__) && defined(__FMA__)
  if constexpr (sizeof(a[0]) == 4) return (V)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
  else return (V)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c);
#elif defined(__aarch64__) && defined(__ARM_NEON)
  if constexpr (sizeof(a[0]) == 4) return (V)vfmaq_f32((float32x4_t)c, (float32x4_t)a, (float32x4_t)b);
  else return (V)vfmaq_f64((float64x2_t)c, (float64x2_t)a, (float64x2_t)b);
#else
  return a * b + c;  // no FMA instruction: nothing to contract into
#endif
}

// Lane i of the result is a[i] where mask[i] is set, else b[i].
template <typename V, typename M>
inline V select(M mask, V a, V b) {
  return (V)(((M)a & mask) | ((M)b & ~mask));
}

// max(y, 0) that keeps NaN (as torch.relu does).
template <typename V>
inline V relu(V y) {
  return select(y < V{}, V{}, y);
}

// The lanes below k (as a mask of Vec<T>).
template <typename T>
inline typename Simd<T>::Mask lanesBelow(int64_t k) {
  Vec<T> index;
  for (int i = 0; i < lanes<T>(); i++) index[i] = static_cast<T>(i);
  return index < splat<Vec<T>>(static_cast<T>(k));
}

// Zero the lanes at and after k.
inline VDouble keepLanes(VDouble v, int64_t k) {
  VDouble index;
  for (int i = 0; i < kDoubleLanes; i++) index[i] = i;
  return select(index < splat<VDouble>(static_cast<double>(k)), v, VDouble{});
}

// kDoubleLanes values from p as doubles (the accumulation unit of every reduction).
SIMDNORM_INLINE VDouble loadDouble(const double* p) { return load<VDouble>(p); }
SIMDNORM_INLINE VDouble loadDouble(const float* p) {
#if defined(__AVX2__) && defined(__FMA__)
  return (VDouble)_mm256_cvtps_pd(_mm_loadu_ps(p));  // GCC 12 splits the generic conversion
#elif defined(__SSE2__)
  return (VDouble)_mm_cvtps_pd(_mm_castsi128_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
#else
  return __builtin_convertvector(load<VFloatHalf>(p), VDouble);
#endif
}
inline VDouble loadDoublePartial(const double* p, int64_t k) { return loadPartial<VDouble>(p, k); }
inline VDouble loadDoublePartial(const float* p, int64_t k) {
  return __builtin_convertvector(loadPartial<VFloatHalf>(p, k), VDouble);
}

// sqrt of each lane (correctly rounded, as the scalar sqrt).
inline VDouble sqrtLanes(VDouble v) {
#if defined(__AVX2__) && defined(__FMA__)
  return (VDouble)_mm256_sqrt_pd((__m256d)v);
#elif defined(__SSE2__)
  return (VDouble)_mm_sqrt_pd((__m128d)v);
#elif defined(__aarch64__) && defined(__ARM_NEON)
  return (VDouble)vsqrtq_f64((float64x2_t)v);
#elif defined(__wasm_simd128__)
  // f64x2.sqrt: the loop below compiled to a store of the vector, a scalar sqrt per lane through
  // memory and a reload (a failed store forwarding per vector: 2.8 us of a 17 us [64,256] training)
  return __builtin_wasm_sqrt_f64x2(v);
#else
  for (int i = 0; i < kDoubleLanes; i++) v[i] = __builtin_sqrt(v[i]);
  return v;
#endif
}

// 1 / sqrt(v) of each lane, for a float result (invStd of float data): in float where the lane
// rounded to float is a normal number (within 1.5 float ulps of the double value, and the result
// is rounded to float anyway; a quarter of the double division's and root's cost), else in
// double. Lane by lane: a lane's result never depends on the others (lanes past a chunk's end
// hold whatever the stack held). Only with AVX2, whose half vector is one SSE register;
// elsewhere in double.
inline VDouble invSqrtForFloat(VDouble v) {
#if defined(__AVX2__) && defined(__FMA__)
  const __m128 f = _mm256_cvtpd_ps((__m256d)v);
  const __m128 normal = _mm_and_ps(_mm_cmpge_ps(f, _mm_set1_ps(0x1p-126f)), _mm_cmple_ps(f, _mm_set1_ps(0x1.fffffep127f)));
  const __m256d inFloat = _mm256_cvtps_pd(_mm_div_ps(_mm_set1_ps(1.0f), _mm_sqrt_ps(f)));
  if (_mm_movemask_ps(normal) == 0xf) return (VDouble)inFloat;
  const __m256d useFloat = _mm256_castsi256_pd(_mm256_cvtepi32_epi64(_mm_castps_si128(normal)));
  return (VDouble)_mm256_blendv_pd((__m256d)(splat<VDouble>(1.0) / sqrtLanes(v)), inFloat, useFloat);
#else
  return splat<VDouble>(1.0) / sqrtLanes(v);
#endif
}

// Lanes of v as T (rounded to nearest for float), as kDoubleLanes values of T.
template <typename T>
struct HalfOf;
template <>
struct HalfOf<float> {
  typedef VFloatHalf V;
};
template <>
struct HalfOf<double> {
  typedef VDouble V;
};
template <typename T>
inline typename HalfOf<T>::V toLanesOf(VDouble v) {
  return __builtin_convertvector(v, typename HalfOf<T>::V);
}
// v rounded to T and back: the value a T holds.
template <typename T>
inline VDouble roundTo(VDouble v) {
  return __builtin_convertvector(toLanesOf<T>(v), VDouble);
}
// The first k (<= kDoubleLanes) lanes of v, rounded to T, to p.
template <typename T>
SIMDNORM_INLINE void storeLanesAs(T* p, VDouble v, int64_t k) {
  const typename HalfOf<T>::V t = toLanesOf<T>(v);
  if (k == kDoubleLanes) store(p, t);
  else storePartial(p, t, k);
}

// |v| of each lane, by clearing the sign bit (NaN stays NaN).
inline VDouble magnitude(VDouble v) { return (VDouble)((VDoubleMask)v & splat<VDoubleMask>(INT64_MAX)); }

// Whether any lane of a double mask is set.
inline bool anyLane(VDoubleMask m) {
#if defined(__AVX2__) && defined(__FMA__)
  return _mm256_movemask_pd((__m256d)m) != 0;
#elif defined(__SSE2__)
  return _mm_movemask_pd((__m128d)m) != 0;
#else
  int64_t any = 0;
  for (int i = 0; i < kDoubleLanes; i++) any |= m[i];
  return any != 0;
#endif
}

// Lane sum in a fixed order (deterministic).
inline double sumLanes(VDouble v) {
  double s = v[0];
  for (int i = 1; i < kDoubleLanes; i++) s += v[i];
  return s;
}

inline int64_t minOf(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t maxOf(int64_t a, int64_t b) { return a > b ? a : b; }
inline int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

}  // namespace SIMDNORM_ISA
}  // namespace simdnorm
