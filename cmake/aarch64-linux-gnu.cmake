# Cross-compiling for arm64 Linux (aarch64, glibc) with Debian's g++-aarch64-linux-gnu:
#   cmake -S . -B build-arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake -DSIMDNORM_BUILD_CHECKS=ON
#   cmake --build build-arm64 -j2
#   qemu-aarch64 build-arm64/simdnorm_kernel_check                 (Debian's qemu-user)
# The target is aarch64's baseline, armv8-a, where NEON (Advanced SIMD) is mandatory: nothing
# beyond it (never -march=native). Executables are linked statically, so that qemu-aarch64 runs
# them without -L /usr/aarch64-linux-gnu; shared libraries (an addon) are not affected. The C ABI
# replay under ASan (test/sanitize/sanitize.cmake) overrides it with -DCMAKE_EXE_LINKER_FLAGS=
# (ASan's runtime is a shared library) and runs under qemu-aarch64 -L /usr/aarch64-linux-gnu.
# The prebuilt arm64 addons (native/prebuild.mjs) use the same compiler and -march=armv8-a.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(SIMDNORM_AARCH64_TRIPLE aarch64-linux-gnu)
set(CMAKE_C_COMPILER ${SIMDNORM_AARCH64_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${SIMDNORM_AARCH64_TRIPLE}-g++)
# -Wno-psabi: GCC's note that GCC 10.1 changed how some aggregates are passed on aarch64 (only
# matters when linking with objects of GCC < 10.1).
set(CMAKE_CXX_FLAGS_INIT "-march=armv8-a -Wno-psabi")
set(CMAKE_C_FLAGS_INIT "-march=armv8-a")
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")

set(CMAKE_FIND_ROOT_PATH /usr/${SIMDNORM_AARCH64_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# try_run and the like cannot run target binaries on the build machine without an emulator.
find_program(SIMDNORM_QEMU_AARCH64 qemu-aarch64)
if(SIMDNORM_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${SIMDNORM_QEMU_AARCH64} -L /usr/${SIMDNORM_AARCH64_TRIPLE})
endif()
