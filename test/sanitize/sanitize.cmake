# The C ABI of wasm/abi.cpp and native/kernels built natively under sanitizers, for CI. Included
# by the top-level CMakeLists.txt with -DSIMDNORM_BUILD_SANITIZE_TESTS=ON, after
# native/kernels/kernels.cmake (its source lists and _simdnorm_kernel_objects() are used here):
#
#   simdnorm_abi_replay       test/sanitize/abi_replay.cpp: replays the property cases that
#                             test/sanitize/replay.test.ts writes, ASan + UBSan, the kernels with
#                             run-time dispatch (AVX2+FMA on such a CPU);
#   simdnorm_abi_replay_base  the same with the portable kernels only (the ISA the wasm build has);
#   simdnorm_abi_fuzz         test/fuzz/abi_fuzz.cpp: a libFuzzer harness over the C ABI's argument
#                             decoding, ASan + UBSan (clang only).
#
#   CXX=clang++-14 cmake -S . -B build-sanitize -DSIMDNORM_BUILD_SANITIZE_TESTS=ON
#   cmake --build build-sanitize -j2
# (test/fuzz/run.sh does this, then runs the fuzzer for a bounded time.)
#
# aarch64 (NEON), cross-compiled and replayed under qemu-aarch64 (ASan works there, LeakSanitizer
# does not; the toolchain file's -static is dropped, as ASan's runtime is a shared library):
#   cmake -S . -B build-arm64-sanitize -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
#     -DCMAKE_EXE_LINKER_FLAGS= -DSIMDNORM_BUILD_SANITIZE_TESTS=ON
#   cmake --build build-arm64-sanitize -j2 --target simdnorm_abi_replay
#   SIMDNORM_SANITIZE_BUILD=build-arm64-sanitize SIMDNORM_SANITIZE_EMULATOR="qemu-aarch64 -L /usr/aarch64-linux-gnu" \
#     npx vitest run test/sanitize
#
# One set of kernel objects serves the three: -O1 (as is usual under ASan; -O3 with both
# sanitizers takes minutes per file), and with clang also the fuzzer's coverage instrumentation
# (fuzzer-no-link), which the replay binaries simply do not use.

get_filename_component(SIMDNORM_SANITIZE_ROOT "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)
set(SIMDNORM_SANITIZE_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g)
set(_kernel_flags ${SIMDNORM_SANITIZE_FLAGS} -O1)
set(_fuzz OFF)
if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  set(_fuzz ON)
  list(APPEND _kernel_flags -fsanitize=fuzzer-no-link)
else()
  message(STATUS "simdnorm: simdnorm_abi_fuzz needs clang (CXX=clang++-14); only the replay targets are built")
endif()

_simdnorm_kernel_objects(simdnorm_sanitize_base "${SIMDNORM_KERNEL_ISA_SOURCES}" ${_kernel_flags})
target_compile_definitions(simdnorm_sanitize_base PRIVATE SIMDNORM_ISA=base)
# On x86-64, the portable kernels as WASM configures them (tuning.h's streams), as the ABI they
# serve. Elsewhere (aarch64, cross-compiled with cmake/aarch64-linux-gnu.cmake and run under
# qemu-aarch64) the portable ISA is NEON, built as the addon builds it: there the one replay
# binary, simdnorm_abi_replay, is the addon's kernels (simdnorm_abi_replay_base would be the same).
if(SIMDNORM_KERNEL_AVX2)
  target_compile_definitions(simdnorm_sanitize_base PRIVATE SIMDNORM_WASM_STREAMS)
endif()
_simdnorm_kernel_objects(simdnorm_sanitize_common_base "${SIMDNORM_KERNEL_COMMON_SOURCES}" ${_kernel_flags})
set(_dispatch_objects simdnorm_sanitize_base simdnorm_sanitize_common_base)
if(SIMDNORM_KERNEL_AVX2)
  _simdnorm_kernel_objects(simdnorm_sanitize_avx2 "${SIMDNORM_KERNEL_ISA_SOURCES}" -mavx2 -mfma ${_kernel_flags})
  target_compile_definitions(simdnorm_sanitize_avx2 PRIVATE SIMDNORM_ISA=avx2)
  _simdnorm_kernel_objects(simdnorm_sanitize_common "${SIMDNORM_KERNEL_COMMON_SOURCES}" ${_kernel_flags})
  target_compile_definitions(simdnorm_sanitize_common PRIVATE SIMDNORM_HAVE_AVX2)
  set(_dispatch_objects simdnorm_sanitize_base simdnorm_sanitize_avx2 simdnorm_sanitize_common)
endif()

find_package(Threads REQUIRED)

# An executable of `driver` + wasm/abi.cpp + the kernel object libraries, with `flags`.
function(_simdnorm_abi_target name driver objects flags)
  add_executable(${name} "${driver}" "${SIMDNORM_SANITIZE_ROOT}/wasm/abi.cpp")
  set_target_properties(${name} PROPERTIES CXX_STANDARD 17 CXX_STANDARD_REQUIRED ON)
  target_include_directories(${name} PRIVATE "${SIMDNORM_SANITIZE_ROOT}/native/kernels" "${SIMDNORM_SANITIZE_ROOT}/wasm")
  foreach(lib IN LISTS objects)
    target_sources(${name} PRIVATE $<TARGET_OBJECTS:${lib}>)
  endforeach()
  target_compile_options(${name} PRIVATE -O1 ${flags})
  target_link_options(${name} PRIVATE ${flags})
  target_link_libraries(${name} PRIVATE Threads::Threads)
endfunction()

set(_replay "${SIMDNORM_SANITIZE_ROOT}/test/sanitize/abi_replay.cpp")
_simdnorm_abi_target(simdnorm_abi_replay "${_replay}" "${_dispatch_objects}" "${SIMDNORM_SANITIZE_FLAGS}")
if(SIMDNORM_KERNEL_AVX2)
  _simdnorm_abi_target(simdnorm_abi_replay_base "${_replay}" "simdnorm_sanitize_base;simdnorm_sanitize_common_base" "${SIMDNORM_SANITIZE_FLAGS}")
endif()
if(_fuzz)
  _simdnorm_abi_target(simdnorm_abi_fuzz "${SIMDNORM_SANITIZE_ROOT}/test/fuzz/abi_fuzz.cpp" "${_dispatch_objects}"
    "-fsanitize=fuzzer,address,undefined;-fno-sanitize-recover=all;-fno-omit-frame-pointer;-g")
endif()
