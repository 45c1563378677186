#!/bin/sh
# train_cpu.sh: CPU training speed of vtrain's backend for presets, and the
# share of OpenBLAS's sgemm rate that its matrix products reach.
#   sh bench/train_cpu.sh [preset[:vocab]...]   (default: tiny:4000 small:32000)
# Builds bench/train_cpu.c against $B/lib/libvesper.a (B=build unless set)
# and prints a Markdown table.  OMP_NUM_THREADS sets the threads.  Timings
# on a shared machine are noisy: run it alone for figures worth quoting.
set -eu
B=${B:-build}
cd "$(dirname "$0")/.."
make --no-print-directory B="$B" NVCC= "$B/lib/libvesper.a" >/dev/null
mkdir -p "$B/bench"
# shellcheck disable=SC2046
cc -O2 -g -std=c11 -Wall -Wextra -fopenmp -D_DEFAULT_SOURCE \
    $(pkg-config --cflags openblas jansson) -o "$B/bench/train_cpu" \
    bench/train_cpu.c "$B/lib/libvesper.a" \
    $(pkg-config --libs openblas jansson libcrypto libxxhash libzstd) -lm \
    -Wl,-rpath,/usr/lib/$(cc -print-multiarch)/openblas-openmp
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, OMP_NUM_THREADS=${OMP_NUM_THREADS:-all}"
"$B/bench/train_cpu" "$@"
