// The kernels' arrays in the calling thread's scratch memory (parallel.h's scratch()): Carver and
// carveScratch, which state a kernel's arrays once, for sizing and for assigning.
#pragma once

#include <cstddef>
#include <cstdint>

#include "parallel.h"
#include "simd.h"

namespace simdnorm {
namespace SIMDNORM_ISA {

// Assigns typed arrays in the calling thread's scratch memory: layout(carver) runs twice, once
// to size and once to assign, so a kernel states its arrays once.
struct Carver {
  char* base;
  size_t used;
  template <typename U>
  void take(U*& p, int64_t n) {
    p = base ? reinterpret_cast<U*>(base + used) : nullptr;
    used += (static_cast<size_t>(n) * sizeof(U) + 63) & ~size_t{63};
  }
};
// False when the memory cannot be had (the kernel must then return at once: see scratch()).
template <typename Layout>
[[nodiscard]] bool carveScratch(Layout layout) {
  Carver sizing{nullptr, 0};
  layout(sizing);
  Carver carver{static_cast<char*>(scratch(sizing.used)), 0};
  if (carver.base == nullptr) return false;
  layout(carver);
  return true;
}

}  // namespace SIMDNORM_ISA
}  // namespace simdnorm
