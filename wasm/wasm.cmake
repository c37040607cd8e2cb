# The WASM build of native/kernels (emscripten), included by the top-level CMakeLists.txt when
# EMSCRIPTEN is set. Driven by wasm/build.mjs (npm run build:wasm), which copies the two
# artifacts into wasm/bin/ and checks them. No second copy of any kernel: the sources below are
# native/kernels' own, with the portable ISA (its header picks wasm SIMD128 under
# __wasm_simd128__, scalar otherwise; the pool runs serially without pthreads).
#
# Output: simdnorm-simd.wasm (-msimd128) and simdnorm-scalar.wasm, standalone modules without
# emscripten JS glue; lib/backends/wasm/ instantiates them with its own two stub imports.

set(SIMDNORM_ROOT "${CMAKE_CURRENT_LIST_DIR}/..")
get_filename_component(SIMDNORM_ROOT "${SIMDNORM_ROOT}" ABSOLUTE)
set(SIMDNORM_KERNELS "${SIMDNORM_ROOT}/native/kernels")

# The kernel sources as native/kernels/kernels.cmake lists them (the one list): the per-ISA ones
# (compiled once per ISA natively; here only for the portable one), then the common ones.
include("${SIMDNORM_KERNELS}/kernels.cmake")
set(SIMDNORM_WASM_ISA_SOURCES ${SIMDNORM_KERNEL_ISA_SOURCES})
set(SIMDNORM_WASM_SOURCES
  ${SIMDNORM_WASM_ISA_SOURCES}
  ${SIMDNORM_KERNEL_COMMON_SOURCES}
  "${SIMDNORM_ROOT}/wasm/abi.cpp")
set_source_files_properties(${SIMDNORM_WASM_ISA_SOURCES} PROPERTIES COMPILE_DEFINITIONS "SIMDNORM_ISA=base")

# The export list, generated from native/abi/table.mjs's wasmExports (native/abi/generate.mjs).
include("${SIMDNORM_ROOT}/wasm/exports.cmake")
list(JOIN SIMDNORM_WASM_EXPORTS "," SIMDNORM_WASM_EXPORT_LIST)

# Deterministic bytes (CI compares a fresh build with the committed files): fixed flags, no
# debug info, and source paths mapped away so the checkout's location cannot leak in.
# -unswitch-threshold=0: no loop unswitching. The kernels' run-time flags in WASM (store.h's
# RuntimeFlag: relu, training, the residual and dz) are there so that each output loop has one
# copy; unswitching would copy the loops back per flag value (7 kB gzipped of the 128 kB budget,
# README "Browsers and bundlers").
set(SIMDNORM_WASM_COMPILE_OPTIONS
  -O3 -DNDEBUG -g0 -std=c++17 -fno-exceptions -fno-rtti -mllvm -unswitch-threshold=0
  "-ffile-prefix-map=${SIMDNORM_ROOT}=.")
set(SIMDNORM_WASM_LINK_OPTIONS
  -O3 -g0 --no-entry
  -sSTANDALONE_WASM=1
  "-sEXPORTED_FUNCTIONS=${SIMDNORM_WASM_EXPORT_LIST}"
  -sERROR_ON_UNDEFINED_SYMBOLS=1
  -sFILESYSTEM=0
  -sALLOW_MEMORY_GROWTH=1
  -sINITIAL_MEMORY=2MB
  -sTOTAL_STACK=512KB
  -sMAXIMUM_MEMORY=4GB
  -sMALLOC=emmalloc)  # 2.5 kB gzipped smaller than dlmalloc; the kernels allocate rarely (scratch.h)

# For profiling only (never for the committed artifacts), e.g.
# -DSIMDNORM_WASM_EXTRA_LINK_OPTIONS=--profiling-funcs keeps function names.
set(SIMDNORM_WASM_EXTRA_LINK_OPTIONS "" CACHE STRING "extra emcc link options (profiling)")

# kernels.cmake's sources without element loops for size: -Os, about 2 kB of the budget. (Not
# the pool's nor the ABI's: at -Os the threaded variant gave wrong results on 2 threads,
# test/conformance.)
set_source_files_properties(${SIMDNORM_KERNEL_SIZE_SOURCES} PROPERTIES COMPILE_OPTIONS "-Os")

function(simdnorm_wasm_module target simd_flags)
  add_executable(${target} ${SIMDNORM_WASM_SOURCES})
  set_target_properties(${target} PROPERTIES SUFFIX ".wasm" CXX_STANDARD 17 CXX_EXTENSIONS OFF
    POSITION_INDEPENDENT_CODE OFF)
  target_include_directories(${target} PRIVATE "${SIMDNORM_KERNELS}")
  target_compile_options(${target} PRIVATE ${SIMDNORM_WASM_COMPILE_OPTIONS} ${simd_flags})
  target_link_options(${target} PRIVATE ${SIMDNORM_WASM_LINK_OPTIONS} ${simd_flags}
    ${SIMDNORM_WASM_EXTRA_LINK_OPTIONS})
endfunction()

simdnorm_wasm_module(simdnorm-simd "-msimd128")
simdnorm_wasm_module(simdnorm-scalar "")

# The threaded variant (simdnorm-threads.wasm): the same sources with SIMD128 and -pthread
# (atomics, shared memory), whose pool (parallel.cpp in native/kernels, SIMDNORM_WASM_THREADS) runs on
# workers that lib/backends/wasm/threads.ts starts itself. emscripten 3.1.6 refuses STANDALONE_WASM
# with pthreads, so this links the ordinary way and only the .wasm is used: the JS glue it writes
# beside it is discarded; the module imports its shared memory and a few runtime functions
# (wasm/build.mjs lists them; lib/backends/wasm/threads.ts provides them). emmalloc: its lock is a
# plain spin lock, so no allocation ever reaches emscripten's pthread/futex machinery.
set(SIMDNORM_WASM_THREAD_EXPORTS ${SIMDNORM_WASM_EXPORTS}
  _sn_thread_stack _sn_thread_run _sn_thread_pool _sn_set_threads _sn_get_threads _sn_thread_joins)
list(JOIN SIMDNORM_WASM_THREAD_EXPORTS "," SIMDNORM_WASM_THREAD_EXPORT_LIST)
add_executable(simdnorm-threads ${SIMDNORM_WASM_SOURCES})
set_target_properties(simdnorm-threads PROPERTIES SUFFIX ".js" CXX_STANDARD 17 CXX_EXTENSIONS OFF
  POSITION_INDEPENDENT_CODE OFF)
target_include_directories(simdnorm-threads PRIVATE "${SIMDNORM_KERNELS}")
target_compile_options(simdnorm-threads PRIVATE ${SIMDNORM_WASM_COMPILE_OPTIONS} -msimd128 -pthread)
target_link_options(simdnorm-threads PRIVATE
  -O3 -g0 --no-entry -msimd128 -pthread
  "-sEXPORTED_FUNCTIONS=${SIMDNORM_WASM_THREAD_EXPORT_LIST}"
  -sERROR_ON_UNDEFINED_SYMBOLS=1
  -sFILESYSTEM=0
  -sALLOW_MEMORY_GROWTH=1
  -Wno-pthreads-mem-growth
  -sINITIAL_MEMORY=2MB
  -sTOTAL_STACK=512KB
  -sMAXIMUM_MEMORY=4GB
  -sMALLOC=emmalloc
  -sENVIRONMENT=web,worker
  -sDECLARE_ASM_MODULE_EXPORTS=0
  ${SIMDNORM_WASM_EXTRA_LINK_OPTIONS})
