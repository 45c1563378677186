#!/bin/sh
# e2e.sh: vtrain end to end on the device machine, through the commands a
# user types.  The same run on the CUDA and the CPU backend must give loss
# curves within a bf16 tolerance; the NCCL path with one rank
# (VTRAIN_NCCL=1) must give the weights of the plain CUDA path; the model,
# exported with `vckpt export --hf`, must give in transformers the
# probabilities vgen gives.  TAP on stdout.
#   sh tests/gpu/e2e.sh INPUTS
# INPUTS holds tokenizer.bpe, tokenizer.json and shards/ made by
# `make gpu-inputs` on a machine with the whole toolchain (the device
# machine has no utf8proc for vtokenize).
set -u
in=${1:?usage: e2e.sh INPUTS}
src=${VESPER_SRC:-.}
bin=${VESPER_BIN:-$src/build/bin}
w=$(mktemp -d "${TMPDIR:-/tmp}/vesper-e2e.XXXXXX")
trap 'rm -rf "$w"' EXIT
n=0
fail=0
ok() { n=$((n + 1)); if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fail=$((fail + 1)); fi; }

if [ ! -d "$in/shards" ]; then
	echo "1..0 # SKIP no inputs in $in (make gpu-inputs)"
	exit 0
fi
if ! "$bin/vtrain" --device cuda -h >/dev/null 2>&1 || [ ! -e /dev/nvidiactl ]; then
	echo "1..0 # SKIP no GPU"
	exit 0
fi

args="-d $in/shards --preset tiny --steps ${E2E_STEPS:-150} --seq 128 \
--batch-tokens 8192 --lr 3e-3 --warmup 10 --eval-every 50 --log-every 10 \
--ckpt-every 1000 --seed 7"
# shellcheck disable=SC2086
"$bin/vtrain" --device cuda $args -o "$w/cuda" --metrics "$w/cuda.jsonl" 2>"$w/cuda.err"
ok $? "vtrain --device cuda trains the tiny preset"
# shellcheck disable=SC2086
"$bin/vtrain" --device cpu $args -o "$w/cpu" --metrics "$w/cpu.jsonl" 2>"$w/cpu.err"
ok $? "vtrain --device cpu, the same run"
tail -3 "$w/cuda.err" | sed 's/^/# cuda: /'
# Loss at each logged step, side by side; the largest difference.
python3 - "$w/cpu.jsonl" "$w/cuda.jsonl" <<'EOP'
import json, sys
def load(p):
    return {r["step"]: r for r in map(json.loads, open(p)) if "loss" in r}
a, b = load(sys.argv[1]), load(sys.argv[2])
steps = sorted(set(a) & set(b))
worst = max(abs(a[s]["loss"] - b[s]["loss"]) for s in steps)
print("# step   cpu loss  cuda loss   cuda tokens/s")
for s in steps[:: max(1, len(steps) // 8)] + [steps[-1]]:
    print("# %5d  %8.4f  %8.4f  %12.0f" % (s, a[s]["loss"], b[s]["loss"], b[s].get("tokens_per_s", 0)))
print("# worst loss difference %.4f nats over %d logged steps" % (worst, len(steps)))
first, last = b[steps[0]]["loss"], b[steps[-1]]["loss"]
sys.exit(0 if worst < 0.08 and last < first - 1.0 else 1)
EOP
ok $? "CPU and CUDA loss curves agree within 0.08 nats and the loss falls"

# shellcheck disable=SC2086
VTRAIN_NCCL=1 "$bin/vtrain" --device cuda $args -o "$w/nccl" 2>"$w/nccl.err"
ok $? "VTRAIN_NCCL=1: the NCCL path with one rank trains"
"$bin/vckpt" diff -e 0 "$w/cuda/latest" "$w/nccl/latest" >"$w/diff" 2>&1
rc=$?
tail -2 "$w/diff" | sed 's/^/# /'
ok $rc "the NCCL path with one rank gives the plain path's weights exactly"

prompt="[Intervenant 1:] Bonjour, je voudrais"
"$bin/vckpt" export -t "$in/tokenizer.json" --hf "$w/hf" "$w/cuda/latest" >/dev/null 2>"$w/exp.err"
ok $? "vckpt export --hf of the CUDA-trained model"
"$bin/vgen" --device cpu -m "$w/cuda/latest" -t "$in/tokenizer.bpe" -p "$prompt" -n 48 \
    --temperature 0 --repeat-penalty 1 --confidence="$w/c.jsonl" >"$w/text" 2>"$w/gen.err"
ok $? "vgen runs the CUDA-trained model"
sed 's/^/# vgen: /' "$w/text" | head -5
for dt in float32 bfloat16; do
	python3 "$src/tests/gpu/hf_logits.py" "$w/hf" "$w/c.jsonl" "$prompt" "$dt" >"$w/hf.out" 2>&1
	rc=$?
	sed 's/^/# /' "$w/hf.out" | tail -4
	ok $rc "transformers ($dt) gives vgen's probabilities on the export"
done
echo "1..$n"
[ "$fail" -eq 0 ]
