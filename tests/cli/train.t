#!/bin/sh
# vtrain on the CPU: a small model learns, metrics and checkpoints appear,
# a stopped or killed run resumes bit for bit, NaN losses stop or roll back,
# and resuming with another shape, tokenizer or vocabulary is refused.
. "${0%/*}/../lib.sh"

# Threads that sleep at barriers: these models are tiny and the test
# machine is shared.
OMP_WAIT_POLICY=passive
export OMP_WAIT_POLICY

# mkstream DOCS VOCAB SEED HASHBYTE: documents counting upward by a stride
# modulo VOCAB (learnable), as a vesper-tokens(5) stream whose tokenizer
# hash is HASHBYTE repeated.
cat > mkstream.py <<'PY'
import random, struct, sys
n, vocab, seed, hb = (int(a) for a in sys.argv[1:5])
rng = random.Random(seed)
out = sys.stdout.buffer
out.write(b"VTOK" + struct.pack("<HHII", 1, 2, vocab, 0) + bytes([hb]) * 32)
total = 0
for i in range(n):
    k, a, d = rng.randrange(40, 200), rng.randrange(vocab), rng.randrange(1, 4)
    ids = [(a + d * j) % vocab for j in range(k)]
    out.write(struct.pack("<I%dH" % k, k, *ids))
    total += k
out.write(struct.pack("<IQQ", 0xFFFFFFFF, n, total))
PY
python3 mkstream.py 300 64 1 7 > s.tok
vshard --shard-tokens 4000 --val-fraction 0.1 -o shards s.tok 2>/dev/null
python3 mkstream.py 300 64 1 9 > other.tok
vshard --shard-tokens 4000 --val-fraction 0.1 -o shards-tok s.tok 2>/dev/null
vshard --shard-tokens 4000 --val-fraction 0.1 -o shards-tok other.tok 2>/dev/null
python3 mkstream.py 300 80 1 7 > v80.tok
vshard --shard-tokens 4000 --val-fraction 0.1 -o shards-v80 v80.tok 2>/dev/null

M="--device cpu -d shards --layers 2 --dim 32 --heads 4 --kv-heads 2 --hidden 64 --ctx 32"
R="--micro-batch 2 --seq 16 --batch-tokens 64 --lr 3e-3"

# A run that learns.
run 0 vtrain $M $R --steps 80 --eval-every 20 --ckpt-every 30 --keep 2 -o a
like err '^vtrain: cpu: 26784 parameters \(2 layers, width 32, 4 heads, 2 key/value' \
    "the model is described on stderr"
like err 'batch 64 tokens = 2 x 2 x 16' "batch geometry: 2 micro-batches of 2 x 16"
python3 - a/metrics.jsonl <<'PY' 2>py.err
import json, math, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
keys = {"step", "tokens", "loss", "ppl", "val_loss", "val_ppl", "lr",
        "grad_norm", "tokens_per_s", "elapsed"}
assert all(keys <= set(r) for r in rows), rows[0]
assert [r["step"] for r in rows] == [10, 20, 30, 40, 50, 60, 70, 80]
assert rows[-1]["tokens"] == 80 * 64
val = [r["val_loss"] for r in rows if r["val_loss"] is not None]
assert len(val) == 4, val
assert val[-1] < val[0] - 0.5, val
assert abs(rows[0]["ppl"] - math.exp(rows[0]["loss"])) < 1e-3 * rows[0]["ppl"]
assert rows[-1]["lr"] < rows[3]["lr"], "cosine decay"
PY
ok $? "metrics: every key, a line per 10 steps, validation loss falls"
[ -s py.err ] && diag "$(cat py.err)"
[ "$(readlink a/latest)" = step-00000080 ] && [ -d a/step-00000060 ] &&
    [ ! -e a/step-00000030 ]
ok $? "checkpoints every 30 steps and at the end, the last 2 kept, latest"
[ -z "$(ls -A a | grep -v -e '^step-0000' -e '^latest$' -e '^metrics.jsonl$')" ]
ok $? "no temporary files left in the output directory"

# N steps, a stop, a resume, N more: the weights of 2N steps, bit for bit
# (a cosine schedule over the 2N steps, checkpoints off the stop's beat).
run 0 vtrain $M $R --steps 40 --ckpt-every 7 -o full
run 0 vtrain $M $R --steps 40 --ckpt-every 7 --stop-at 20 -o half
like err 'stopped after step 20 of 40' "--stop-at says where it stopped"
[ "$(readlink half/latest)" = step-00000020 ]
ok $? "--stop-at writes its checkpoint"
run 0 vtrain --device cpu -d shards -o half --resume half/latest
like err 'steps 21 to 40' "the resumed run takes its settings from the checkpoint"
same full/latest/model.safetensors half/latest/model.safetensors \
    "stop + resume gives the weights of an uninterrupted run, byte for byte"
same full/latest/optimizer.bin half/latest/optimizer.bin "and the same moments"
run 0 vtrain --device cpu -d shards -o half --resume half
like err 'the checkpoint is at step 40: nothing to do for --steps 40' \
    "resuming a finished run says there is nothing to do"
same full/latest/model.safetensors half/latest/model.safetensors "and changes nothing"

# SIGTERM at an arbitrary step: a checkpoint there, then resume to the end
# (a constant rate, so that the schedule does not depend on --steps).
C="--schedule constant --warmup 0"
vtrain $M $R $C --steps 3000 --log-every 1 --ckpt-every 0 -o killed \
    >/dev/null 2>killed.err &
pid=$!
i=0
while [ "$(grep -c '' killed/metrics.jsonl 2>/dev/null || echo 0)" -lt 3 ] &&
    [ $i -lt 200 ]; do
	sleep 0.1
	i=$((i + 1))
done
kill -TERM $pid
wait $pid
st=$?
[ $st -eq 1 ]; ok $? "SIGTERM: exit status 1 (got $st)"
like killed.err 'Terminated at step [0-9]+; checkpoint written' "SIGTERM: says where"
k=$(readlink killed/latest | sed 's/step-0*//')
[ -n "$k" ] && [ "$k" -lt 3000 ]; ok $? "SIGTERM: checkpoint of step $k"
run 0 vtrain $M $R $C --steps $((k + 5)) --ckpt-every 0 -o straight
run 0 vtrain -d shards -o killed --resume killed --steps $((k + 5))
same straight/latest/model.safetensors killed/latest/model.safetensors \
    "killed at step $k and resumed: the weights of an uninterrupted run"

# Non-finite losses.
VTRAIN_FAULT_NAN_STEP=5 run 1 vtrain $M $R --steps 8 -o nan1
like err '^vtrain: step 5: the loss is NaN' "a NaN loss stops, naming the step"
VTRAIN_FAULT_NAN_STEP=5 run 0 vtrain $M $R --steps 8 --ckpt-every 2 \
    --on-nan rollback -o nan2
like err 'step 5: the loss is not finite; back to step 4, skipping' \
    "--on-nan rollback goes back to the last checkpoint"
[ "$(readlink nan2/latest)" = step-00000008 ]; ok $? "and finishes the run"
VTRAIN_FAULT_NAN_STEP=1 run 1 vtrain $M $R --steps 8 --on-nan rollback -o nan3
like err 'no checkpoint to go back to' "rollback with no checkpoint is an error"

# --init: a new run (step 1, fresh moments) from trained weights.
run 0 vtrain $M $R --steps 10 --log-every 1 --init a/latest/model.safetensors -o init
like err 'steps 1 to 10' "--init starts at step 1"
python3 - a/metrics.jsonl init/metrics.jsonl <<'PY' 2>py.err
import json, sys
trained = [json.loads(l) for l in open(sys.argv[1])][-1]["loss"]
first = json.loads(open(sys.argv[2]).readline())
assert first["step"] == 1 and first["loss"] < trained + 0.5, (first, trained)
PY
ok $? "--init: the first step's loss is the trained model's, not a fresh one's"
run 1 vtrain $M $R --steps 2 --layers 3 --init a/latest -o init2
like err 'has layers 2, the options ask for 3' "--init with another shape is refused"
run 2 vtrain $M $R --init a/latest --resume a/latest -o init3
like err 'not both' "--init and --resume together are bad usage"

# What a resumed run refuses.
run 1 vtrain -d shards -o a --resume a/latest --layers 3
like err 'has layers 2, the options ask for 3; a resumed run keeps its shape' \
    "resuming with another shape"
run 1 vtrain -d shards -o a --resume a/latest --act era
like err 'activation 0, the options ask for 2' "resuming with another activation"
run 1 vtrain -d shards-tok -o a --resume a/latest
like err 'trained with tokenizer 070707070707\.\.\., the shards in shards-tok were made with 090909090909' \
    "resuming on shards of another tokenizer"
run 1 vtrain -d shards-v80 -o a --resume a/latest
like err 'shards of a 80-token vocabulary, the checkpoint.s model has 64' \
    "resuming on shards of another vocabulary"
run 1 vtrain -d shards -o a --resume a/latest/model.safetensors
like err 'a model file alone cannot resume' "a bare model cannot resume"
vshard --shard-tokens 3000 --val-fraction 0.1 -o shards-re s.tok 2>/dev/null
run 1 vtrain -d shards-re -o a --resume a/latest
like err 'cursor.json: data position: the cursor was saved for another shard directory' \
    "a data position saved for other shards (same tokenizer) is refused"
sed 's/"rng": \[/"rng": [ "xyz",/' a/latest/cursor.json > cur.json
cp -r a/step-00000080 badcur
cp cur.json badcur/cursor.json
run 1 vtrain -d shards -o a --resume badcur
like err 'badcur: cursor.json' "a damaged cursor.json, named"
cp -r a/step-00000060 broken
head -c 1000 a/step-00000060/optimizer.bin > broken/optimizer.bin
run 1 vtrain -d shards -o a --resume broken
like err 'broken/optimizer.bin: 1000 bytes where' "a truncated optimizer file, named"
run 1 vtrain -d shards -o a --resume nowhere
like err 'nowhere' "a missing checkpoint, named"

# Options apply over the preset in any order.
run 0 vtrain --device cpu -d shards --layers 1 --preset tiny --dim 32 --heads 2 \
    --hidden 48 --ctx 16 --steps 1 --micro-batch 1 -o order
like err 'cpu: [0-9]+ parameters \(1 layers, width 32, 2 heads, 2 key/value, MLP 48' \
    "--layers before --preset still counts"

# Bad usage.
run 2 vtrain $M --micro-batch 2 --seq 16 --batch-tokens 100 -o u
like err 'batch-tokens 100 is not a multiple of' "--batch-tokens must be whole micro-batches"
run 2 vtrain $M --seq 64 -o u
like err 'seq 64 is longer than the model.s context 32' "--seq beyond the context"
run 2 vtrain $M --on-nan retry -o u
run 2 vtrain $M --heads 3 -o u
like err 'do not divide width 32' "heads that do not divide the width"
run 2 vtrain --device cpu -o u
like err 'both -d' "-d is needed"
run 1 vtrain --device cpu -d nowhere -o u
[ ! -e u ]; ok $? "no output directory for a failed start"
run 0 vtrain $M $R --steps 2 --metrics - --log-every 1 -o m
[ "$(grep -c '"step":' out)" -eq 2 ]; ok $? "--metrics - writes to stdout"
done_testing
