#!/bin/sh
# gen.sh: CPU decode speed of vgen's inference (lib/infer) for presets.
#   sh bench/gen.sh [preset...]        (default: tiny small)
# Builds bench/gen_bench.c against $B/lib/libvesper.a (B=build unless set)
# and prints a Markdown table.  OMP_NUM_THREADS sets the threads.
set -eu
B=${B:-build}
cd "$(dirname "$0")/.."
make --no-print-directory B="$B" "$B/lib/libvesper.a" >/dev/null
mkdir -p "$B/bench"
# shellcheck disable=SC2046
cc -O2 -g -std=c11 -Wall -Wextra -fopenmp -D_DEFAULT_SOURCE \
    $(pkg-config --cflags openblas jansson) -o "$B/bench/gen_bench" \
    bench/gen_bench.c "$B/lib/libvesper.a" \
    $(pkg-config --libs openblas jansson libcrypto libxxhash libzstd) -lm
[ $# -gt 0 ] || set -- tiny small
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, OMP_NUM_THREADS=${OMP_NUM_THREADS:-all}"
"$B/bench/gen_bench" "$@"
