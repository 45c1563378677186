#!/bin/sh
# dp.sh: data-parallel scaling of vtrain on the CPU: the time of the
# gradient sum alone (bench/dp_sum.c), then tokens/s of one process against
# mpirun -np N for N = 1, 2, ... up to the cores, each rank on one thread,
# the same global batch, and a check that every run ended with the same
# weights.
#   sh bench/dp.sh [max-ranks] [steps]      (default: the cores, 6 steps)
# Uses the programs of $B (B=build unless set) and a synthetic corpus made
# in a temporary directory.  On a shared, loaded machine the figures are
# noise: run it alone for figures worth quoting.
set -eu
B=${B:-build}
cd "$(dirname "$0")/.."
BIN=$(pwd)/$B/bin
MAX=${1:-$(nproc)}
STEPS=${2:-6}
W=$(mktemp -d "${TMPDIR:-/tmp}/vesper-dp.XXXXXX")
trap 'rm -rf "$W"' EXIT
[ -x "$BIN/vtrain" ] || { echo "dp.sh: no $BIN/vtrain: make B=$B build first" >&2; exit 1; }
command -v mpirun >/dev/null || { echo "dp.sh: no mpirun (Open MPI)" >&2; exit 1; }
MPIRUN="mpirun --oversubscribe --bind-to none"
[ "$(id -u)" = 0 ] && MPIRUN="$MPIRUN --allow-run-as-root"

# A learnable stream of 400 documents over a 512-token vocabulary.
python3 - > "$W/s.tok" <<'PY'
import random, struct, sys
rng, vocab, n, total = random.Random(1), 512, 400, 0
out = sys.stdout.buffer
out.write(b"VTOK" + struct.pack("<HHII", 1, 2, vocab, 0) + bytes(32))
for i in range(n):
    k, a, d = rng.randrange(100, 400), rng.randrange(vocab), rng.randrange(1, 5)
    out.write(struct.pack("<I%dH" % k, k, *[(a + d * j) % vocab for j in range(k)]))
    total += k
out.write(struct.pack("<IQQ", 0xFFFFFFFF, n, total))
PY
"$BIN/vshard" --val-fraction 0.05 -o "$W/shards" "$W/s.tok" 2>/dev/null

# 8 micro-batches a step: any rank count up to 8 that divides it.
ARGS="--device cpu --preset tiny --micro-batch 4 --seq 128 --batch-tokens 4096
    --steps $STEPS --eval-every 0 --log-every 1 -d $W/shards"
OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMP_WAIT_POLICY=passive
export OMP_NUM_THREADS OPENBLAS_NUM_THREADS OMP_WAIT_POLICY

# The sum alone: one round (all-to-all and adds) and the all-gather, for
# the sizes of tiny (0.84 M) and small (about 20 M) parameters.
# shellcheck disable=SC2046
cc -O2 -std=c11 -Wall -Wextra -D_DEFAULT_SOURCE -o "$W/dp_sum" bench/dp_sum.c \
    "$B/lib/libvesper.a" $(pkg-config --libs jansson libcrypto libxxhash libzstd) -ldl -lm
echo "| ranks | floats | ms per round | ms all-gather |"
echo "|---|---|---|---|"
n=2
while [ "$n" -le "$MAX" ] && [ "$n" -le 8 ]; do
	VESPER_MPI_LIB=$(pwd)/$B/lib/vesper/libvesper_mpi.so \
	    $MPIRUN -x VESPER_MPI_LIB -np "$n" "$W/dp_sum" 836736 20000000
	n=$((n * 2))
done
echo

echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
echo "tiny preset, global batch 4096 tokens (8 x 4 x 128), $STEPS steps, 1 thread per rank"
echo
echo "| ranks | wall s | tokens/s (median step) | speed-up | efficiency | weights |"
echo "|---|---|---|---|---|---|"
base=""
n=1
while [ "$n" -le "$MAX" ] && [ "$n" -le 8 ]; do
	if [ $((8 % n)) -ne 0 ]; then n=$((n + 1)); continue; fi
	t0=$(date +%s.%N)
	if [ "$n" = 1 ]; then
		# shellcheck disable=SC2086
		"$BIN/vtrain" $ARGS -o "$W/r1" 2>/dev/null
	else
		# shellcheck disable=SC2086
		$MPIRUN -np "$n" "$BIN/vtrain" $ARGS -o "$W/r$n" 2>/dev/null
	fi
	t1=$(date +%s.%N)
	# The first step warms up: the median of the others.
	tps=$(python3 -c '
import json, statistics, sys
r = [json.loads(l)["tokens_per_s"] for l in open(sys.argv[1])][1:]
print("%.0f" % statistics.median(r))' "$W/r$n/metrics.jsonl")
	[ -z "$base" ] && base=$tps
	if cmp -s "$W/r1/latest/model.safetensors" "$W/r$n/latest/model.safetensors"
	then same="same bytes"; else same="DIFFERENT"; fi
	awk -v n="$n" -v w="$t1" -v w0="$t0" -v t="$tps" -v b="$base" \
	    -v s="$same" 'BEGIN { printf "| %d | %.1f | %d | %.2f | %.0f%% | %s |\n",
	    n, w - w0, t, t / b, 100 * t / b / n, s }'
	n=$((n + 1))
done
