#!/bin/sh
# dp_gpu.sh: data-parallel vtrain on the GPUs of one machine (issue 9):
#  1. the NCCL path with one rank (VTRAIN_NCCL=1) against the plain path;
#  2. N ranks against one process with the same global batch, for each N;
#  3. tokens/s from 1 to N GPUs on PRESET (medium), the global batch fixed
#     at 8 micro-batches (so 8 GPUs run one each), and the efficiency per
#     GPU against one GPU: tokens/s(N) / (N x tokens/s(1)).
#   sh bench/dp_gpu.sh [max-ranks]          (default: every GPU)
# Variables: B (build), DEVICE (cuda), PRESET (medium), SEQ (1024),
# MB (micro-batch, 8), STEPS (20; the first 3 are left out of the rate),
# CHECK_PRESET (small, for the comparisons).  DEVICE=cpu PRESET=tiny SEQ=64
# MB=2 runs the same on CPU ranks (the NCCL check is then skipped).
# NVLink multicast stays off (NCCL_NVLS_ENABLE=0).
set -eu
B=${B:-build}
DEVICE=${DEVICE:-cuda}
PRESET=${PRESET:-medium}
CHECK_PRESET=${CHECK_PRESET:-small}
SEQ=${SEQ:-1024}
MB=${MB:-8}
STEPS=${STEPS:-20}
cd "$(dirname "$0")/.."
BIN=$(pwd)/$B/bin
[ -x "$BIN/vtrain" ] || { echo "dp_gpu.sh: no $BIN/vtrain: make B=$B build first" >&2; exit 1; }
command -v mpirun >/dev/null || { echo "dp_gpu.sh: no mpirun (Open MPI)" >&2; exit 1; }
if [ "$DEVICE" = cuda ]; then
	NGPU=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
	[ "$NGPU" -ge 1 ] || { echo "dp_gpu.sh: no GPU" >&2; exit 1; }
else
	NGPU=$(nproc)
fi
MAX=${1:-$NGPU}
W=$(mktemp -d "${TMPDIR:-/tmp}/vesper-dpgpu.XXXXXX")
trap 'rm -rf "$W"' EXIT
MPIRUN="mpirun --oversubscribe --bind-to none -x NCCL_NVLS_ENABLE -x VESPER_NCCL_LIB"
[ "$(id -u)" = 0 ] && MPIRUN="$MPIRUN --allow-run-as-root"
NCCL_NVLS_ENABLE=0
export NCCL_NVLS_ENABLE

# NCCL: the system's, or the one a Python wheel (torch's nvidia-nccl) holds.
if [ -z "${VESPER_NCCL_LIB:-}" ] && ! ldconfig -p 2>/dev/null | grep -q 'libnccl\.so\.2'; then
	VESPER_NCCL_LIB=$(python3 -c '
import glob, os, nvidia.nccl
for p in nvidia.nccl.__path__:
    for f in glob.glob(os.path.join(p, "lib", "libnccl.so*")):
        print(f); raise SystemExit' 2>/dev/null || true)
fi
VESPER_NCCL_LIB=${VESPER_NCCL_LIB:-}
export VESPER_NCCL_LIB

# A learnable stream of 32000-token ids, about 6 M tokens.
python3 - > "$W/s.tok" <<'PY'
import random, struct, sys
rng, vocab, n, total = random.Random(1), 32000, 12000, 0
out = sys.stdout.buffer
out.write(b"VTOK" + struct.pack("<HHII", 1, 2, vocab, 0) + bytes(32))
for i in range(n):
    k, a, d = rng.randrange(200, 800), rng.randrange(vocab), rng.randrange(1, 50)
    out.write(struct.pack("<I%dH" % k, k, *[(a + d * j) % vocab for j in range(k)]))
    total += k
out.write(struct.pack("<IQQ", 0xFFFFFFFF, n, total))
PY
"$BIN/vshard" --val-fraction 0.01 -o "$W/shards" "$W/s.tok" 2>/dev/null

# worst A B: the largest weight difference of two checkpoints.
worst() {
	python3 - "$1/latest/model.safetensors" "$2/latest/model.safetensors" <<'PY'
import json, struct, sys
import numpy as np
def load(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n]); h.pop("__metadata__", None)
    return {k: np.frombuffer(b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]],
            dtype=np.float32) for k, v in h.items()}
a, b = load(sys.argv[1]), load(sys.argv[2])
print("%.3g" % max(float(np.max(np.abs(a[k] - b[k]))) for k in a))
PY
}

CHECK="--device $DEVICE --preset $CHECK_PRESET --micro-batch 2 --seq 256
    --batch-tokens 4096 --steps 10 --eval-every 0 -d $W/shards"
echo "# dp_gpu.sh on $(hostname): $NGPU ${DEVICE} device(s), NCCL ${VESPER_NCCL_LIB:-from the system}"
echo
# shellcheck disable=SC2086
"$BIN/vtrain" $CHECK -o "$W/c1" 2>/dev/null
if [ "$DEVICE" = cuda ]; then
	# shellcheck disable=SC2086
	VTRAIN_NCCL=1 "$BIN/vtrain" $CHECK -o "$W/cn" 2>"$W/cn.err" ||
	    { cat "$W/cn.err" >&2; exit 1; }
	echo "NCCL path, 1 rank, $CHECK_PRESET, 10 steps: worst weight difference" \
	    "$(worst "$W/c1" "$W/cn") against the plain path"
fi
for n in 2 4 8; do
	[ "$n" -le "$MAX" ] || break
	# shellcheck disable=SC2086
	$MPIRUN -np "$n" "$BIN/vtrain" $CHECK -o "$W/c$n" 2>"$W/c$n.err" ||
	    { cat "$W/c$n.err" >&2; exit 1; }
	echo "$n ranks, $CHECK_PRESET, 10 steps: worst weight difference" \
	    "$(worst "$W/c1" "$W/c$n") against 1 process"
done
echo

RUN="--device $DEVICE --preset $PRESET --micro-batch $MB --seq $SEQ
    --batch-tokens $((8 * MB * SEQ)) --steps $STEPS --eval-every 0
    --ckpt-every 0 --log-every 1 -d $W/shards"
echo "$PRESET, global batch $((8 * MB * SEQ)) tokens (8 x $MB x $SEQ), $STEPS steps"
echo
echo "| ranks | tokens/s (median of steps 4-$STEPS) | per rank | efficiency |"
echo "|---|---|---|---|"
base=""
for n in 1 2 4 8; do
	[ "$n" -le "$MAX" ] || break
	if [ "$n" = 1 ]; then
		# shellcheck disable=SC2086
		"$BIN/vtrain" $RUN -o "$W/s1" 2>"$W/s1.err" || { cat "$W/s1.err" >&2; exit 1; }
	else
		# shellcheck disable=SC2086
		$MPIRUN -np "$n" "$BIN/vtrain" $RUN -o "$W/s$n" 2>"$W/s$n.err" ||
		    { cat "$W/s$n.err" >&2; exit 1; }
	fi
	tps=$(python3 -c '
import json, statistics, sys
r = [json.loads(l)["tokens_per_s"] for l in open(sys.argv[1])][3:]
print("%.0f" % statistics.median(r))' "$W/s$n/metrics.jsonl")
	[ -z "$base" ] && base=$tps
	awk -v n="$n" -v t="$tps" -v b="$base" 'BEGIN {
	    printf "| %d | %d | %d | %.1f%% |\n", n, t, t / n, 100 * t / (n * b) }'
done
