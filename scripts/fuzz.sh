#!/usr/bin/env bash
# Builds the libFuzzer harnesses (fuzz/) with clang into build-fuzz/ and runs each for a bounded
# time on a copy of its checked-in seed corpus, so fuzz/corpus never grows by itself.
#
#   scripts/fuzz.sh                   every harness, 15 s each (the CI mode)
#   scripts/fuzz.sh --seconds 180     longer
#   scripts/fuzz.sh --only npy        one harness (repeatable: --only npy --only csv)
#   scripts/fuzz.sh --keep DIR        keep each grown corpus in DIR/<name> (to pick seeds from)
#   scripts/fuzz.sh --merge           merge each grown corpus back into fuzz/corpus/<name>
#                                     (libFuzzer -merge=1: only inputs that add coverage)
#   scripts/fuzz.sh --make-corpus     regenerate fuzz/corpus with fuzz/make_corpus.c, then stop
#   scripts/fuzz.sh --ledger          the executions so far per harness (fuzz/executions.tsv)
#   scripts/fuzz.sh --list            the harness names
#
# Every run of --seconds 60 or more appends one line per harness to fuzz/executions.tsv (date,
# harness, executions, seconds, result), the ledger that --ledger sums; the CI mode's 15 s runs
# are not counted.
#
# Limits: -rss_limit_mb=1024, -malloc_limit_mb=256 (one allocation sized from a hostile header
# is a finding), -timeout=10 s an input. Harnesses run one at a time, single-threaded. Inputs
# that crash, leak or break a limit are saved in build-fuzz/fuzz-artifacts/ (reproduce with
# build-fuzz/fuzz/fuzz_NAME FILE). Prints one line per harness; exits 1 if any found something.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

all=(safetensors ckpt_config classifier_config unet_config idx npy csv image args
     train_state schedule unet_weights eval_lists image_walk scheduler_config image_cache)
# the longest input worth trying, per format (the seeds are smaller: unet_weights' is 60 KB)
declare -A max_len=([safetensors]=16384 [ckpt_config]=8192 [classifier_config]=8192
                    [unet_config]=8192 [idx]=4096
                    [npy]=4096 [csv]=4096 [image]=16384 [args]=1024
                    [train_state]=8192 [schedule]=16384 [unet_weights]=65536
                    [eval_lists]=1024 [image_walk]=512 [scheduler_config]=8192
                    [image_cache]=8192)
# harnesses sharing a dictionary
declare -A dict_of=([ckpt_config]=json_config [classifier_config]=json_config
                   [unet_config]=json_config [train_state]=safetensors
                   [schedule]=safetensors [unet_weights]=safetensors)
ledger=fuzz/executions.tsv

seconds=15
only=()
keep=""
make_corpus=0
merge=0
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --only) only+=("$2"); shift 2 ;;
    --keep) keep="$2"; shift 2 ;;
    --make-corpus) make_corpus=1; shift ;;
    --merge) merge=1; shift ;;
    --ledger)
      [ -f "$ledger" ] || { echo "fuzz.sh: no $ledger yet" >&2; exit 1; }
      printf "%-18s %14s %8s %5s %9s\n" harness executions seconds runs findings
      awk -F'\t' 'NR > 1 { e[$2] += $3; s[$2] += $4; r[$2]++; if ($5 != "ok") f[$2]++ }
        END { for (h in e) printf "%-18s %14d %8d %5d %9d\n", h, e[h], s[h], r[h], f[h] }' \
        "$ledger" | sort
      exit 0 ;;
    --list) printf '%s\n' "${all[@]}"; exit 0 ;;
    -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "fuzz.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[[ "$seconds" =~ ^[0-9]+$ ]] && [ "$seconds" -ge 1 ] || { echo "fuzz.sh: --seconds takes a whole number >= 1" >&2; exit 2; }
for n in "${only[@]}"; do
  [[ " ${all[*]} " == *" $n "* ]] || { echo "fuzz.sh: no harness '$n' (${all[*]})" >&2; exit 2; }
done
[ ${#only[@]} -gt 0 ] && names=("${only[@]}") || names=("${all[@]}")

# One thread everywhere, and no spinning: the machine may be shared.
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive OPENBLAS_NUM_THREADS=1
# Fill the first 64 KiB of every allocation with 0xbe (ASan's default is 4 KiB): reads of
# uninitialised heap memory then behave the same on every run, so their crashes reproduce.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:max_malloc_fill_size=65536}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"

bash scripts/install-deps.sh checks
build=build-fuzz
start_build=$(date +%s)
if [ ! -f "$build/CMakeCache.txt" ]; then
  CC=clang cmake -S . -B "$build" -DDM_FUZZ=ON -DDM_NATIVE=OFF -DDM_SANITIZE=OFF \
    -DCMAKE_BUILD_TYPE=Release >"$build.configure.log" 2>&1 ||
    { cat "$build.configure.log" >&2; rm -f "$build.configure.log"; exit 1; }
  rm -f "$build.configure.log"
fi
targets=(fuzzers)
[ "$make_corpus" = 1 ] && targets=(fuzz_make_corpus)
cmake --build "$build" -j2 --target "${targets[@]}" >"$build/fuzz-build.log" 2>&1 ||
  { tail -40 "$build/fuzz-build.log" >&2; exit 1; }
echo "fuzz.sh: built the harnesses in $(( $(date +%s) - start_build )) s"

if [ "$make_corpus" = 1 ]; then
  "$build/fuzz/fuzz_make_corpus" fuzz/corpus
  echo "fuzz.sh: wrote the seed corpus into fuzz/corpus ($(du -sb fuzz/corpus | cut -f1) bytes)"
  exit 0
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/dm_fuzz_run.XXXXXX")
trap 'rm -rf "$work"' EXIT
artifacts="$root/$build/fuzz-artifacts"
mkdir -p "$artifacts"
failed=0
printf '%-17s %10s %6s %8s %16s  %s\n' harness execs secs exec/s "corpus files" result
for name in "${names[@]}"; do
  corpus="$work/corpus-$name"
  scratch="$work/tmp-$name" # the harness's TMPDIR: must be empty again when it ends
  mkdir -p "$corpus" "$scratch" "$artifacts/$name"
  cp fuzz/corpus/"$name"/* "$corpus"/
  seeds=$(ls "$corpus" | wc -l)
  dict=fuzz/dict/${dict_of[$name]:-$name}.dict
  args=(-max_total_time="$seconds" -max_len="${max_len[$name]}" -rss_limit_mb=1024
        -malloc_limit_mb=256 -timeout=10 -print_final_stats=1
        -artifact_prefix="$artifacts/$name/")
  [ -f "$dict" ] && args+=(-dict="$dict")
  log="$work/$name.log"
  t0=$(date +%s)
  rc=0
  TMPDIR="$scratch" "$build/fuzz/fuzz_$name" "${args[@]}" "$corpus" >"$log" 2>&1 || rc=$?
  secs=$(( $(date +%s) - t0 ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  files=$(ls "$corpus" | wc -l)
  result=ok
  if [ "$rc" -ne 0 ]; then
    if grep -q "ERROR: LeakSanitizer" "$log"; then result="FAIL: leak"
    elif grep -q "out-of-memory (malloc" "$log"; then result="FAIL: allocation over the malloc limit"
    elif grep -q "out-of-memory (used" "$log"; then result="FAIL: over the RSS limit"
    elif grep -q "ERROR: libFuzzer: timeout" "$log"; then result="FAIL: timeout"
    elif grep -q "ERROR: AddressSanitizer" "$log"; then
      result="FAIL: $(grep -m1 -o 'ERROR: AddressSanitizer: [a-z-]*' "$log" | cut -d' ' -f3)"
    elif grep -q "runtime error:" "$log"; then result="FAIL: undefined behaviour"
    else result="FAIL: crash (exit $rc)"; fi
  elif [ -n "$(ls -A "$scratch")" ]; then
    result="FAIL: left files in TMPDIR: $(ls -A "$scratch" | head -3 | tr '\n' ' ')"
  fi
  printf '%-17s %10s %6s %8s %16s  %s\n' "$name" "${execs:-?}" "$secs" "${rate:-?}" \
    "$seeds -> $files" "$result"
  if [ "$result" != ok ]; then
    failed=1
    cp "$log" "$artifacts/$name/last.log"
    echo "---- $name: last lines of the log (whole log: $artifacts/$name/last.log)" >&2
    grep -v '^#[0-9]' "$log" | tail -30 >&2
    echo "----" >&2
  fi
  if [ -n "$keep" ]; then
    mkdir -p "$keep/$name"
    cp "$corpus"/* "$keep/$name"/ 2>/dev/null || true
  fi
  if [ "$seconds" -ge 60 ]; then
    [ -f "$ledger" ] || printf 'date\tharness\texecutions\tseconds\tresult\n' >"$ledger"
    printf '%s\t%s\t%s\t%s\t%s\n' "$(date -u +%Y-%m-%dT%H:%MZ)" "$name" "${execs:-0}" "$secs" \
      "$result" >>"$ledger"
  fi
  if [ "$merge" = 1 ] && [ "$result" = ok ]; then
    # adds to the checked-in corpus the grown corpus's inputs that bring new coverage (libFuzzer
    # picks the smallest input for each feature); the seeds already there all stay
    before=$(ls fuzz/corpus/"$name" | wc -l)
    TMPDIR="$scratch" "$build/fuzz/fuzz_$name" -merge=1 -max_len="${max_len[$name]}" \
      -rss_limit_mb=1024 -malloc_limit_mb=256 -timeout=10 \
      fuzz/corpus/"$name" "$corpus" >"$work/$name.merge.log" 2>&1 ||
      { echo "fuzz.sh: merging $name failed:" >&2; tail -5 "$work/$name.merge.log" >&2; failed=1; }
    echo "  merged into fuzz/corpus/$name: $before -> $(ls fuzz/corpus/"$name" | wc -l) files"
  fi
done
if [ "$failed" = 1 ]; then
  echo "fuzz.sh: FAILED; inputs that reproduce a finding are in $artifacts" >&2
  exit 1
fi
echo "fuzz.sh: every harness ran clean"
