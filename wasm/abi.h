// The WASM C ABI over native/kernels (defined in wasm/abi.cpp, exported from the .wasm modules;
// also linked natively by the sanitizer replay and the fuzzer under test/). Pointers are module
// addresses of arrays inside live sn_alloc blocks; (o, c, i) is the geometry (outer, channels,
// inner). Each kernel returns 0, or -(code << 8 | argument) and writes nothing.
#pragma once

#include <cstdint>

extern "C" {
uintptr_t sn_alloc(uint32_t bytes);
int32_t sn_free(uintptr_t p);
int32_t sn_in_block(uintptr_t p, uint32_t bytes, uint32_t align);
void sn_set_scratch_limit(uint32_t bytes);  // testing only

int32_t sn_moments_f32(uintptr_t x, int32_t o, int32_t c, int32_t i, uintptr_t mean, uintptr_t var);
int32_t sn_moments_f64(uintptr_t x, int32_t o, int32_t c, int32_t i, uintptr_t mean, uintptr_t var);
int32_t sn_train_f32(uintptr_t x, int32_t o, int32_t c, int32_t i, uintptr_t gamma, uintptr_t beta,
                     double eps, int32_t relu, uintptr_t y, uintptr_t mean, uintptr_t invStd,
                     uintptr_t rMean, uintptr_t rVar, double factor, double varScale, int32_t skip);
int32_t sn_train_f64(uintptr_t x, int32_t o, int32_t c, int32_t i, uintptr_t gamma, uintptr_t beta,
                     double eps, int32_t relu, uintptr_t y, uintptr_t mean, uintptr_t invStd,
                     uintptr_t rMean, uintptr_t rVar, double factor, double varScale, int32_t skip);
int32_t sn_infer_f32(uintptr_t x, int32_t o, int32_t c, int32_t i, uintptr_t rMean, uintptr_t rVar,
                     uintptr_t gamma, uintptr_t beta, double eps, int32_t relu, uintptr_t y);
int32_t sn_infer_f64(uintptr_t x, int32_t o, int32_t c, int32_t i, uintptr_t rMean, uintptr_t rVar,
                     uintptr_t gamma, uintptr_t beta, double eps, int32_t relu, uintptr_t y);
int32_t sn_backward_f32(uintptr_t dy, uintptr_t x, int32_t o, int32_t c, int32_t i, uintptr_t mean,
                        uintptr_t invStd, uintptr_t gamma, uintptr_t y, int32_t training,
                        uintptr_t dx, uintptr_t dgamma, uintptr_t dbeta);
int32_t sn_backward_f64(uintptr_t dy, uintptr_t x, int32_t o, int32_t c, int32_t i, uintptr_t mean,
                        uintptr_t invStd, uintptr_t gamma, uintptr_t y, int32_t training,
                        uintptr_t dx, uintptr_t dgamma, uintptr_t dbeta);
int32_t sn_update_running_f32(uintptr_t rMean, uintptr_t rVar, uintptr_t bMean, uintptr_t bVar,
                              int32_t c, double factor, double varScale, int32_t skip);
int32_t sn_update_running_f64(uintptr_t rMean, uintptr_t rVar, uintptr_t bMean, uintptr_t bVar,
                              int32_t c, double factor, double varScale, int32_t skip);

const char* sn_simd_level();
int32_t sn_abi_version();
}
