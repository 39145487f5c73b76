#!/usr/bin/env bash
# Runs hearth's libFuzzer target request_fuzz (fuzz/request_fuzz.cc) for SECONDS.
#
#   scripts/fuzz.sh 60
#
# Configures build-fuzz (clang 14, ASan+UBSan, -DHEARTH_FUZZ=ON) when it is missing and builds
# request_fuzz (a no-op when up to date). The seed corpus fuzz/corpus/request is copied to a
# temporary directory first, so the inputs the fuzzer adds never land in the repository.
#
# Exit status: 0 when the fuzzer ran for SECONDS without a finding; 1 when it found a crash, a
# hang or a leak (the input is kept under build-fuzz/fuzz/artifacts/ and the command that
# replays it is printed); 2 on a usage or build error.
#
# Environment: HEARTH_FUZZ_BUILD_DIR (default <repo>/build-fuzz), HEARTH_FUZZ_JOBS (ninja -j,
# default 2).
set -euo pipefail

usage() {
  echo "usage: scripts/fuzz.sh SECONDS   (e.g. scripts/fuzz.sh 60)" >&2
  exit 2
}
[[ $# -eq 1 && $1 =~ ^[1-9][0-9]*$ ]] || usage
duration=$1

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${HEARTH_FUZZ_BUILD_DIR:-$root/build-fuzz}
jobs=${HEARTH_FUZZ_JOBS:-2}
fuzzer=$build/fuzz/request_fuzz

if [[ ! -f $build/build.ninja ]]; then
  echo "fuzz: configuring $build"
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++-14 -DHEARTH_FUZZ=ON \
    -DHEARTH_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null ||
    { echo "fuzz: configuring $build failed" >&2; exit 2; }
fi
ninja -C "$build" -j"$jobs" request_fuzz >/dev/null ||
  { echo "fuzz: building request_fuzz failed (run: ninja -C $build request_fuzz)" >&2; exit 2; }

work=$(mktemp -d /tmp/hearth-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp -r "$root/fuzz/corpus/request" "$work/corpus"
artifacts=$build/fuzz/artifacts
mkdir -p "$artifacts"
log=$build/fuzz/request_fuzz.log

echo "fuzz: running request_fuzz for ${duration}s (log: $log)"
status=0
(
  # hearthd's io threads have 8 MiB stacks and take bodies up to 1 MiB; libFuzzer's inputs are at
  # most 4 KiB. A small stack makes recursion that grows with the input (e.g. JSON nesting) fail
  # here as it would in hearthd with a large body.
  ulimit -s 256
  # The outer timeout only guards against the fuzzer itself wedging; -timeout catches slow inputs.
  exec timeout --kill-after=10 $((duration + 120)) "$fuzzer" \
    -max_total_time="$duration" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -dict="$root/fuzz/request.dict" -artifact_prefix="$artifacts/" "$work/corpus"
) >"$log" 2>&1 || status=$?

{ grep -a -E '^#[0-9]+[[:space:]].*cov:' "$log" | tail -n 1; grep -a -E '^stat::|^Done ' "$log"; } |
  sed 's/^/fuzz: /' || true
if ((status != 0)); then
  echo "fuzz: request_fuzz FAILED (exit status $status); the report:" >&2
  grep -a -E -A 40 'ERROR:|^request_fuzz:|runtime error' "$log" | head -n 80 >&2 || tail -n 40 "$log" >&2
  input=$(grep -a -o -E "Test unit written to [^ ]+" "$log" | tail -n 1 | cut -d' ' -f5)
  if [[ -n $input ]]; then
    echo "fuzz: the input is $input; replay it with: (ulimit -s 256; $fuzzer $input)" >&2
  fi
  exit 1
fi
echo "fuzz: no findings in ${duration}s"
