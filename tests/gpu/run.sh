#!/bin/sh
# run.sh: the CUDA backend's checks, for `make test-gpu` on a machine with
# a GPU (the device machine): every kernel against the CPU reference, then
# the whole trainer against the CPU trainer.  Prints each TAP stream and a
# summary; exits non-zero when a check fails.  VESPER_GPU_CURVE=N adds N
# steps of the small preset on French text, CPU and CUDA side by side.
set -u
build=${VESPER_BUILD:-build}
src=${VESPER_SRC:-.}
status=0
summary=""

if command -v nvidia-smi >/dev/null 2>&1; then
	nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
fi

run_tap() {
	name=$1
	shift
	log=$(mktemp)
	t0=$(date +%s)
	"$@" >"$log" 2>&1
	rc=$?
	t1=$(date +%s)
	cat "$log"
	pass=$(grep -c '^ok ' "$log")
	fail=$(grep -c '^not ok ' "$log")
	skip=$(grep -c 'SKIP' "$log")
	if [ "$rc" -ne 0 ] || [ "$fail" -ne 0 ] || grep -q '^Bail out' "$log"; then
		status=1
		verdict=FAIL
	elif [ "$skip" -ne 0 ]; then
		verdict=SKIP
	else
		verdict=PASS
	fi
	summary="$summary$(printf '%-28s %-5s %3d passed %3d failed %4ds' \
	    "$name" "$verdict" "$pass" "$fail" $((t1 - t0)))
"
	rm -f "$log"
}

run_tap kernels "$build/tests/gpu/test_kernels"
VESPER_CUDA_LIB=${VESPER_CUDA_LIB:-$build/lib/vesper/libvesper_cuda.so} \
    run_tap trainer "$build/tests/gpu/test_trainer"
if [ "${VESPER_GPU_CURVE:-0}" -gt 0 ]; then
	VESPER_CUDA_LIB=${VESPER_CUDA_LIB:-$build/lib/vesper/libvesper_cuda.so} \
	    run_tap "small preset curve" "$build/tests/gpu/test_trainer" curve \
	    "$src/data/handwritten.txt" "$VESPER_GPU_CURVE"
fi

if [ -d "$build/gpu-inputs/shards" ]; then
	VESPER_BIN=${VESPER_BIN:-$build/bin} \
	    run_tap "vtrain end to end" sh "$src/tests/gpu/e2e.sh" "$build/gpu-inputs"
fi

echo
echo "CUDA backend checks"
printf '%s' "$summary"
exit $status
