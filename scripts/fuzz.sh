#!/usr/bin/env bash
# Runs hearth's libFuzzer targets (fuzz/*_fuzz.cc), each for a bounded time, and fails on a finding.
#
#   scripts/fuzz.sh SECONDS [TARGET...]      e.g. scripts/fuzz.sh 60, scripts/fuzz.sh 300 qmp_fuzz
#
# SECONDS is the budget for the whole run: it is split evenly across the targets, but every target
# runs at least HEARTH_FUZZ_MIN_SECONDS (default 10), so a run takes about
# max(SECONDS, targets x minimum). Without TARGETs, every target runs (the list is below).
#
# Configures build-fuzz (clang 14, ASan+UBSan, -DHEARTH_FUZZ=ON) when it is missing and builds the
# targets (a no-op when up to date). Target NAME_fuzz starts from the seed corpus
# fuzz/corpus/NAME, copied to a temporary directory first so that the inputs the fuzzer adds never
# land in the repository, and uses the dictionary fuzz/NAME.dict when there is one.
#
# Prints one line per target (runs, coverage, result). Exit status: 0 when no target found
# anything; 1 when one found a crash, a hang or a leak: its input is kept under
# build-fuzz/fuzz/artifacts/TARGET/, and the command that replays it is printed; 2 on a usage or
# build error.
#
# Environment: HEARTH_FUZZ_BUILD_DIR (default <repo>/build-fuzz), HEARTH_FUZZ_JOBS (ninja -j,
# default 2), HEARTH_FUZZ_MIN_SECONDS (default 10).
set -euo pipefail

ALL_TARGETS=(request_fuzz config_fuzz vm_spec_yaml_fuzz qmp_fuzz firecracker_api_fuzz
  firecracker_metrics_fuzz console_fuzz agent_fuzz snapshot_manifest_fuzz image_manifest_fuzz)

usage() {
  echo "usage: scripts/fuzz.sh SECONDS [TARGET...]   (e.g. scripts/fuzz.sh 60);" \
    "targets: ${ALL_TARGETS[*]}" >&2
  exit 2
}
[[ $# -ge 1 && $1 =~ ^[1-9][0-9]*$ ]] || usage
budget=$1
shift
targets=("$@")
((${#targets[@]})) || targets=("${ALL_TARGETS[@]}")
for t in "${targets[@]}"; do
  [[ " ${ALL_TARGETS[*]} " == *" $t "* ]] || { echo "fuzz: unknown target '$t'" >&2; usage; }
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${HEARTH_FUZZ_BUILD_DIR:-$root/build-fuzz}
jobs=${HEARTH_FUZZ_JOBS:-2}
min=${HEARTH_FUZZ_MIN_SECONDS:-10}
[[ $min =~ ^[1-9][0-9]*$ ]] || { echo "fuzz: HEARTH_FUZZ_MIN_SECONDS '$min' is not a number of seconds" >&2; exit 2; }
each=$((budget / ${#targets[@]}))
((each >= min)) || each=$min

if [[ ! -f $build/build.ninja ]]; then
  echo "fuzz: configuring $build"
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_CXX_COMPILER=clang++-14 -DHEARTH_FUZZ=ON \
    -DHEARTH_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null ||
    { echo "fuzz: configuring $build failed" >&2; exit 2; }
fi
ninja -C "$build" -j"$jobs" "${targets[@]}" >/dev/null ||
  { echo "fuzz: building failed (run: ninja -C $build ${targets[*]})" >&2; exit 2; }

work=$(mktemp -d /tmp/hearth-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT

# Runs target $1 for $each seconds; prints its summary line; returns 1 on a finding.
run_target() {
  local target=$1 name=${1%_fuzz}
  local fuzzer=$build/fuzz/$target artifacts=$build/fuzz/artifacts/$target
  local log=$build/fuzz/$target.log status=0
  mkdir -p "$artifacts" "$work/$target"
  [[ -d $root/fuzz/corpus/$name ]] && cp -r "$root/fuzz/corpus/$name/." "$work/$target/"
  local dict=()
  [[ -f $root/fuzz/$name.dict ]] && dict=(-dict="$root/fuzz/$name.dict")
  (
    # hearthd's io threads have 8 MiB stacks and take bodies up to 1 MiB; libFuzzer's inputs are
    # at most 4 KiB. A small stack makes recursion that grows with the input (e.g. JSON nesting)
    # fail here as it would in hearthd with a large input.
    ulimit -s 256
    # The outer timeout only guards against the fuzzer itself wedging; -timeout catches slow
    # inputs.
    exec timeout --kill-after=10 $((each + 120)) "$fuzzer" \
      -max_total_time="$each" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      "${dict[@]}" -artifact_prefix="$artifacts/" "$work/$target"
  ) >"$log" 2>&1 || status=$?
  local runs cov
  runs=$(grep -a -o -E '^stat::number_of_executed_units: [0-9]+' "$log" | grep -o -E '[0-9]+$' || true)
  cov=$(grep -a -E '^#[0-9]+[[:space:]].*cov:' "$log" | tail -n 1 | grep -o -E 'cov: [0-9]+' || true)
  if ((status == 0)); then
    printf 'fuzz: %-26s ok    %ss, %s runs, %s (log: %s)\n' "$target" "$each" "${runs:-?}" \
      "${cov:-cov: ?}" "$log"
    return 0
  fi
  printf 'fuzz: %-26s FAILED (exit status %s; log: %s); the report:\n' "$target" "$status" \
    "$log" >&2
  grep -a -E -A 40 'ERROR:|^fuzz: |^request_fuzz:|runtime error' "$log" | head -n 60 >&2 ||
    tail -n 40 "$log" >&2
  local input
  input=$(grep -a -o -E "Test unit written to [^ ]+" "$log" | tail -n 1 | cut -d' ' -f5)
  if [[ -n $input ]]; then
    echo "fuzz: $target: the input is $input; replay it with: (ulimit -s 256; $fuzzer $input)" >&2
  fi
  return 1
}

echo "fuzz: ${#targets[@]} target(s), ${each}s each"
failed=()
for t in "${targets[@]}"; do
  run_target "$t" || failed+=("$t")
done
if ((${#failed[@]})); then
  echo "fuzz: findings in ${failed[*]}; their inputs are under $build/fuzz/artifacts/" >&2
  exit 1
fi
echo "fuzz: no findings in ${#targets[@]} target(s)"
