#!/bin/sh
# gen.sh: CPU decode speed of vgen's inference (lib/infer) for presets.
#   sh bench/gen.sh                  tiny (vocab 2048, as the demo) and small
#   sh bench/gen.sh [-V vocab] preset...
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
    $(pkg-config --libs openblas jansson libcrypto libxxhash libzstd) -lm \
    -Wl,-rpath,/usr/lib/$(cc -print-multiarch)/openblas-openmp
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, OMP_NUM_THREADS=${OMP_NUM_THREADS:-all}"
if [ $# -eq 0 ]; then
	"$B/bench/gen_bench" -V 2048 tiny
	echo
	"$B/bench/gen_bench" small
else
	"$B/bench/gen_bench" "$@"
fi
