# native/kernels for the top-level CMakeLists.txt (include() this file). The source lists below
# are the only ones cmake has: wasm/wasm.cmake includes this file for them (under EMSCRIPTEN it
# stops right after the lists), and binding.gyp's copy is checked against them by
# test/package/build-sources.test.ts.
#
#   simdnorm_add_native_kernels(<target>)  compiles the kernels into <target>: the per-ISA sources
#     once for the portable baseline (SIMDNORM_ISA=base) and, on x86-64, once more with
#     -mavx2 -mfma (SIMDNORM_ISA=avx2), picked at run time by dispatch.cpp.
#   SIMDNORM_BUILD_CHECKS=ON   adds the executables simdnorm_kernel_check (test/native/kernel_check.cpp)
#                              and simdnorm_family_check (test/native/family_check.cpp)
#   SIMDNORM_SANITIZE=ON       ... built with -fsanitize=address,undefined, kernels included.
# Never -march=native: the binary runs on any x86-64 (and arm64 from the same source).

get_filename_component(SIMDNORM_KERNEL_DIR "${CMAKE_CURRENT_LIST_DIR}" ABSOLUTE)
set(SIMDNORM_KERNEL_ISA_SOURCES
  "${SIMDNORM_KERNEL_DIR}/stats.cpp"
  "${SIMDNORM_KERNEL_DIR}/forward.cpp"
  "${SIMDNORM_KERNEL_DIR}/backward.cpp"
  "${SIMDNORM_KERNEL_DIR}/running.cpp"
  "${SIMDNORM_KERNEL_DIR}/general.cpp"
  "${SIMDNORM_KERNEL_DIR}/general_backward.cpp"
  "${SIMDNORM_KERNEL_DIR}/columns.cpp"
  "${SIMDNORM_KERNEL_DIR}/rows.cpp"
  "${SIMDNORM_KERNEL_DIR}/rows_backward.cpp"
  "${SIMDNORM_KERNEL_DIR}/entry.cpp")
set(SIMDNORM_KERNEL_COMMON_SOURCES
  "${SIMDNORM_KERNEL_DIR}/parallel.cpp"
  "${SIMDNORM_KERNEL_DIR}/dispatch.cpp"
  "${SIMDNORM_KERNEL_DIR}/core.cpp")
# The sources without element loops (the dispatch, the descriptor's checks, the routing of phases,
# the running update), which the WASM build compiles for size (wasm/wasm.cmake).
set(SIMDNORM_KERNEL_SIZE_SOURCES
  "${SIMDNORM_KERNEL_DIR}/dispatch.cpp"
  "${SIMDNORM_KERNEL_DIR}/core.cpp"
  "${SIMDNORM_KERNEL_DIR}/running.cpp"
  "${SIMDNORM_KERNEL_DIR}/entry.cpp")

if(EMSCRIPTEN)
  return()  # wasm/wasm.cmake wants the lists only
endif()

option(SIMDNORM_BUILD_CHECKS "Build simdnorm_kernel_check" OFF)
option(SIMDNORM_SANITIZE "Build simdnorm_kernel_check with address and undefined-behaviour sanitizers" OFF)

if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64|x64)$" AND NOT EMSCRIPTEN)
  set(SIMDNORM_KERNEL_AVX2 ON)
else()
  set(SIMDNORM_KERNEL_AVX2 OFF)
endif()

find_package(Threads REQUIRED)

# One OBJECT library of kernel sources with the kernels' common settings. -ffp-contract=off:
# no FMA the source does not ask for (mulAdd), as binding.gyp says; GCC 12 contracts even with
# -std=c++17.
function(_simdnorm_kernel_objects name sources)
  add_library(${name} OBJECT ${sources})
  set_target_properties(${name} PROPERTIES
    POSITION_INDEPENDENT_CODE ON CXX_STANDARD 17 CXX_STANDARD_REQUIRED ON CXX_EXTENSIONS OFF)
  target_include_directories(${name} PRIVATE "${SIMDNORM_KERNEL_DIR}")
  # -falign-loops=64: see binding.gyp.
  target_compile_options(${name} PRIVATE -O3 -ffp-contract=off -falign-loops=64 ${ARGN})
endfunction()

# Compiles the kernels (with extra compile options, e.g. sanitizers) into target.
function(_simdnorm_kernels target prefix)
  _simdnorm_kernel_objects(${prefix}_base "${SIMDNORM_KERNEL_ISA_SOURCES}" ${ARGN})
  target_compile_definitions(${prefix}_base PRIVATE SIMDNORM_ISA=base)
  _simdnorm_kernel_objects(${prefix}_common "${SIMDNORM_KERNEL_COMMON_SOURCES}" ${ARGN})
  set(objects ${prefix}_base ${prefix}_common)
  if(SIMDNORM_KERNEL_AVX2)
    _simdnorm_kernel_objects(${prefix}_avx2 "${SIMDNORM_KERNEL_ISA_SOURCES}" -mavx2 -mfma ${ARGN})
    target_compile_definitions(${prefix}_avx2 PRIVATE SIMDNORM_ISA=avx2)
    target_compile_definitions(${prefix}_common PRIVATE SIMDNORM_HAVE_AVX2)
    list(APPEND objects ${prefix}_avx2)
  endif()
  foreach(lib IN LISTS objects)
    target_sources(${target} PRIVATE $<TARGET_OBJECTS:${lib}>)
  endforeach()
  target_include_directories(${target} PRIVATE "${SIMDNORM_KERNEL_DIR}")
  target_link_libraries(${target} PRIVATE Threads::Threads)
endfunction()

function(simdnorm_add_native_kernels target)
  _simdnorm_kernels(${target} ${target}_kernels)
endfunction()

if(SIMDNORM_BUILD_CHECKS)
  set(_simdnorm_check_flags "")
  if(SIMDNORM_SANITIZE)
    set(_simdnorm_check_flags -fsanitize=address,undefined -fno-omit-frame-pointer)
  endif()
  add_executable(simdnorm_kernel_check "${SIMDNORM_KERNEL_DIR}/../../test/native/kernel_check.cpp")
  set_target_properties(simdnorm_kernel_check PROPERTIES CXX_STANDARD 17 CXX_STANDARD_REQUIRED ON)
  _simdnorm_kernels(simdnorm_kernel_check simdnorm_kernel_check_kernels ${_simdnorm_check_flags})
  # On x86-64, the portable ISA as WASM configures it (tuning.h's streams): the checks cover
  # both configurations, the native one through AVX2. Elsewhere (aarch64: NEON) the portable ISA
  # is what the addon runs, so it is checked as the addon builds it.
  if(SIMDNORM_KERNEL_AVX2)
    target_compile_definitions(simdnorm_kernel_check_kernels_base PRIVATE SIMDNORM_WASM_STREAMS)
  endif()
  # -ffp-contract=off as the kernels: the float64 reference computes what it writes (GCC would
  # fuse its a * b + c where the target has FMA, as aarch64 does).
  target_compile_options(simdnorm_kernel_check PRIVATE -O2 -ffp-contract=off ${_simdnorm_check_flags})
  target_link_options(simdnorm_kernel_check PRIVATE ${_simdnorm_check_flags})
  # The op families through the C ABI (LayerNorm, RMSNorm, GroupNorm, InstanceNorm, ghost
  # BatchNorm) against a double reference with js.ts's formulas (test/native/family_check.cpp).
  add_executable(simdnorm_family_check "${SIMDNORM_KERNEL_DIR}/../../test/native/family_check.cpp")
  set_target_properties(simdnorm_family_check PROPERTIES CXX_STANDARD 17 CXX_STANDARD_REQUIRED ON)
  _simdnorm_kernels(simdnorm_family_check simdnorm_family_check_kernels ${_simdnorm_check_flags})
  if(SIMDNORM_KERNEL_AVX2)
    target_compile_definitions(simdnorm_family_check_kernels_base PRIVATE SIMDNORM_WASM_STREAMS)
  endif()
  target_compile_options(simdnorm_family_check PRIVATE -O2 -ffp-contract=off ${_simdnorm_check_flags})
  target_link_options(simdnorm_family_check PRIVATE ${_simdnorm_check_flags})
endif()
