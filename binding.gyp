# node-gyp build of the native addon: build/Release/simdnorm.node.
# Offline: node-gyp rebuild --nodedir="$(node -p 'require("path").resolve(process.execPath,"../..")')"
# (native/build.mjs does this). CMakeLists.txt builds the same addon with cmake-js.
#
# The per-ISA kernel sources are compiled twice on x86-64: once for the baseline ISA and once
# with AVX2+FMA (a static library of their own, so only those objects get -mavx2 -mfma);
# dispatch.cpp picks one at run time. Never -march=native: the binary must run on any x86-64.
{
  'variables': {
    'kernel_isa_sources': [
      'native/kernels/stats.cpp',
      'native/kernels/forward.cpp',
      'native/kernels/backward.cpp',
      'native/kernels/running.cpp',
      'native/kernels/general.cpp',
      'native/kernels/general_backward.cpp',
      'native/kernels/columns.cpp',
      'native/kernels/rows.cpp',
      'native/kernels/rows_backward.cpp',
      'native/kernels/entry.cpp',
    ],
  },
  'target_defaults': {
    # C++ exceptions on everywhere: the binding throws JsError internally and turns it into a JS
    # exception at each entry point (native/node/addon.cpp), never further.
    'cflags!': ['-fno-exceptions'],
    'cflags_cc!': ['-fno-exceptions'],
    # -ffp-contract=off (as in native/kernels/kernels.cmake): otherwise GCC and clang contract
    # a*b+c into FMAs on their own, differently in different inlined copies of one formula (a
    # vector body and its tail: results changed with the alignment of the caller's arrays), and
    # the plain per-channel paths would no longer repeat the reference's operations (an FMA keeps
    # Inf - r*r/n at Inf where the reference's rounded product overflows to Inf - Inf = NaN).
    # The kernels' explicit mulAdd is unaffected.
    # -falign-loops=64: every loop starts a 64-byte line, so that a short hot loop never
    # straddles two (the instruction fetch then takes two lines per iteration). Without it where
    # a loop lands is chance: the training output loop of NCHW [8,256,14,14], the same
    # instructions in two builds, took 17% longer where it crossed a line.
    'cflags': ['-O3', '-fPIC', '-pthread', '-ffp-contract=off', '-falign-loops=64'],
    'cflags_cc': ['-O3'],
    'ldflags': ['-pthread'],
    'xcode_settings': {
      'GCC_ENABLE_CPP_EXCEPTIONS': 'YES',
      'CLANG_CXX_LANGUAGE_STANDARD': 'c++17',
      'GCC_OPTIMIZATION_LEVEL': '3',
      'OTHER_CFLAGS': ['-ffp-contract=off'],
    },
  },
  'targets': [
    {
      'target_name': 'simdnorm_kernels_base',
      'type': 'static_library',
      'sources': ['<@(kernel_isa_sources)'],
      'defines': ['SIMDNORM_ISA=base'],
    },
    {
      'target_name': 'simdnorm',
      'sources': [
        'native/node/addon.cpp',
        'native/node/args.cpp',
        'native/node/operations.cpp',
        # the one file on V8's C++ API (pins async calls' memory): ties the addon to the major
        # version of the Node it is compiled against (see native/node/pin.h)
        'native/node/pin.cpp',
        'native/kernels/parallel.cpp',
        'native/kernels/dispatch.cpp',
        'native/kernels/core.cpp',
      ],
      # Plain N-API (node_api.h) and, in pin.cpp, v8.h: both from the running Node's headers.
      'dependencies': ['simdnorm_kernels_base'],
      'defines': ['NAPI_VERSION=8', 'SIMDNORM_BUILD_NODE_GYP'],
      'conditions': [
        ['target_arch=="x64"', {
          'dependencies': ['simdnorm_kernels_avx2'],
          'defines': ['SIMDNORM_HAVE_AVX2'],
        }],
      ],
    },
  ],
  'conditions': [
    ['target_arch=="x64"', {
      'targets': [
        {
          'target_name': 'simdnorm_kernels_avx2',
          'type': 'static_library',
          'sources': ['<@(kernel_isa_sources)'],
          'defines': ['SIMDNORM_ISA=avx2'],
          'cflags': ['-mavx2', '-mfma'],
          'xcode_settings': { 'OTHER_CFLAGS': ['-ffp-contract=off', '-mavx2', '-mfma'] },
        },
      ],
    }],
  ],
}
