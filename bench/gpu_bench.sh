#!/bin/sh
# gpu_bench.sh: Vesper's CUDA trainer and its PyTorch peer side by side on
# the device machine, from the same initial weights and the same batch
# (written by the peer), then the optimizer step alone; prints a table.
#   sh bench/gpu_bench.sh [preset] [batch] [seq] [steps]
# Logs go to $OUT (the device tool's folder) or /tmp/vesper-bench.
set -eu
preset=${1:-medium}
batch=${2:-64}
seq=${3:-1024}
steps=${4:-20}
build=${VESPER_BUILD:-build}
dir=${OUT:-/tmp/vesper-bench}
mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PYTHONUNBUFFERED=1
export VESPER_CUDA_LIB=${VESPER_CUDA_LIB:-$build/lib/vesper/libvesper_cuda.so}

nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv,noheader \
    >"$dir/gpu.txt" 2>&1 || true
python3 bench/torch_peer.py train --preset "$preset" --batch "$batch" \
    --seq "$seq" --steps "$steps" --init "$work/init.safetensors" \
    --tokens "$work/tok.bin" 2>&1 | tee "$dir/peer-$preset.log"
"$build/bench/gpu_bench" -p "$preset" -b "$batch" -t "$seq" -n "$steps" \
    -w "$work/init.safetensors" -k "$work/tok.bin" 2>&1 | tee "$dir/vesper-$preset.log"
python3 bench/torch_peer.py adamw --preset medium --steps 200 2>&1 | tee "$dir/adamw.log"
"$build/bench/gpu_bench" -p medium -b 1 -t 64 -V 200 2>&1 | tee -a "$dir/adamw.log"

# The table: losses step by step, then the speeds.
echo
echo "step  peer loss   vesper loss"
grep '^step' "$dir/peer-$preset.log" | awk '{print $2, $4}' >"$work/p"
grep '^step' "$dir/vesper-$preset.log" | awk '{print $2, $4}' >"$work/v"
join "$work/p" "$work/v" | awk '{printf "%4d  %9.5f  %11.5f\n", $1, $2, $3}'
get() { grep "^$1 " "$2" | tr ' ' '\n' | sed -n "s/^$3=//p" | tail -1; }
pt=$(get peer "$dir/peer-$preset.log" tokens_per_s)
vt=$(get vesper "$dir/vesper-$preset.log" tokens_per_s)
pm=$(get peer "$dir/peer-$preset.log" mfu)
vm=$(get vesper "$dir/vesper-$preset.log" mfu)
pa=$(get adamw "$dir/adamw.log" ms)
va=$(get velvet "$dir/adamw.log" ms)
echo
printf '%-34s %14s %14s %8s\n' "$preset batch ${batch}x$seq" "PyTorch peer" "Vesper CUDA" "ratio"
printf '%-34s %14s %14s %8s\n' "tokens/s" "$pt" "$vt" \
    "$(awk -v a="$vt" -v b="$pt" 'BEGIN{printf "%.3f", a/b}')"
printf '%-34s %14s %14s\n' "MFU (989 TFLOP/s)" "$pm" "$vm"
printf '%-34s %14s %14s %8s\n' "optimizer step, medium (ms)" "$pa" "$va" \
    "$(awk -v a="$pa" -v b="$va" 'BEGIN{printf "%.3f", a/b}')"
