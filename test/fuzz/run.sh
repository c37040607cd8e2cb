#!/usr/bin/env bash
# Builds the sanitizer targets with clang-14 (test/sanitize/sanitize.cmake) and runs the libFuzzer
# harness over the C ABI (test/fuzz/abi_fuzz.cpp) for a bounded time, from an empty corpus.
#
#   test/fuzz/run.sh [seconds (default $FUZZ_SECONDS or 60)] [build dir (default build-sanitize)]
#
# Needs: apt-get install -y clang-14 libclang-rt-14-dev. Prints the execution count; on a crash,
# the fuzzer's report and the input (also kept as <build dir>/fuzz-artifacts/crash-*), exit 1.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-${FUZZ_SECONDS:-60}}"
build="${2:-build-sanitize}"

CXX="${CXX:-clang++-14}" cmake -S . -B "$build" -DSIMDNORM_BUILD_SANITIZE_TESTS=ON > /dev/null
cmake --build "$build" -j2 --target simdnorm_abi_fuzz > /dev/null

corpus="$(mktemp -d)"
artifacts="$build/fuzz-artifacts/"
mkdir -p "$artifacts"
log="$build/fuzz.log"
if ! "$build/simdnorm_abi_fuzz" -max_total_time="$seconds" -print_final_stats=1 -timeout=10 \
    -rss_limit_mb=4096 -artifact_prefix="$artifacts" "$corpus" > "$log" 2>&1; then
  grep -vE '^#[0-9]+\s+(NEW|REDUCE|pulse|RELOAD)' "$log" | tail -80
  echo "simdnorm_abi_fuzz found a problem (input kept in $artifacts)" >&2
  exit 1
fi
rm -rf "$corpus"
grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added|abi_fuzz:)' "$log"
echo "fuzzed the C ABI for ${seconds} s"
