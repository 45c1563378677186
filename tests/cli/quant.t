#!/bin/sh
# vquant: INT8 and INT4 checkpoints with the layout of vesper-checkpoint(5),
# the error they report, what they refuse.
. "${0%/*}/../lib.sh"

vckpt init -V 1000 -s 5 a >/dev/null 2>&1
ok $? "a random checkpoint to quantise"

run 0 vquant -b 8 a q8
like out '^q8/model.safetensors: int8 per row, 29 matrices' "int8: 29 matrices (7 per block, and the head)"
e8=$(sed -n 's/.*mean \([0-9.]*\),.*/\1/p' out)
run 0 vquant -b 4 -g 32 a q4-32.safetensors
e32=$(sed -n 's/.*mean \([0-9.]*\),.*/\1/p' out)
run 0 vquant -b 4 -g 64 -v a q4-64.safetensors
e64=$(sed -n 's/.*mean \([0-9.]*\),.*/\1/p' out)
like out '^model.layers.0.mlp.down_proj.weight +int4-g32 ' "-v: 352 inputs fall back to groups of 32"
like out '^model.layers.0.mlp.up_proj.weight +int4-g64 ' "-v: 128 inputs keep groups of 64"
run 0 vquant -b 4 -g 128 a q4-128.safetensors
e128=$(sed -n 's/.*mean \([0-9.]*\),.*/\1/p' out)
diag "relative RMS error: int8 $e8, int4 g32 $e32, g64 $e64, g128 $e128"
awk -v a="$e8" -v b="$e32" -v c="$e64" -v d="$e128" \
    'BEGIN { exit !(a > 0 && a < 0.01 && b < c && c <= d && d < 0.15 && a < b) }'
ok $? "errors: int8 under 1%, int4 under 15%, growing with the group size"

# The layout vgen reads.
run 0 vckpt info -t q8
like out '^quant +int8$' "info: int8"
like out '^tensor +model.layers.0.self_attn.q_proj.weight +I8 +\[128, 128\]' "int8: I8 (out, in)"
like out '^tensor +model.layers.0.self_attn.q_proj.weight_scale +BF16 +\[128\]' "int8: bf16 scale per row"
like out '^tensor +model.embed_tokens.weight +F32' "int8: the embedding stays"
like out '^tensor +model.norm.weight +F32' "int8: norms stay"
like out '^tensor +lm_head.weight +I8' "int8: the untied head is quantised"
run 0 vckpt info -t q4-64.safetensors
like out '^quant +int4, groups of 64$' "info: int4 groups of 64"
like out '^tensor +model.layers.0.mlp.up_proj.weight +U8 +\[352, 64\]' "int4: U8 (out, in/2)"
like out '^tensor +model.layers.0.mlp.up_proj.weight_scale +BF16 +\[352, 2\]' "int4: scales (out, in/64)"
like out '^tensor +model.layers.0.mlp.down_proj.weight_scale +BF16 +\[128, 11\]' "int4: down_proj in groups of 32"
params=$(vckpt info a | sed -n 's/^parameters *\([0-9]*\).*/\1/p')
like out "^parameters +$params " "int4: the parameter count is the model's"

# The quantised checkpoints verify, and dequantise close to the original.
for q in q8 q4-32.safetensors q4-128.safetensors; do
	run 0 vckpt verify "$q"
done
run 0 vckpt diff a q8
awk 'NR > 1 && $4 ~ /^[0-9]/ && $4 > 0.01 { bad++ } END { exit bad > 0 }' out
ok $? "diff: every int8 matrix within 1% relative RMS"
run 0 vckpt convert -d f32 q4-64.safetensors deq.safetensors
run 0 vckpt diff -e 0 q4-64.safetensors deq.safetensors
run 0 vckpt info deq.safetensors
unlike out '^quant' "convert dequantises and drops the quant metadata"

# To standard output: the same tensors, the report on stderr, no hash
# (it cannot be patched into a pipe).
vquant -b 8 a - > piped.safetensors 2> report
ok $? "vquant to standard output"
like report '^-: int8 per row, 29 matrices' "the report goes to stderr"
run 0 vckpt diff -e 0 q8 piped.safetensors
run 0 vckpt verify piped.safetensors
like out '^note +data hash: none recorded' "no hash recorded in a pipe"

# Refusals.
run 1 vquant -b 8 q8 again
like err 'already quantised' "a quantised checkpoint is refused"
[ ! -e again ]; ok $? "no output after a refusal"
run 2 vquant -b 3 a x
run 2 vquant -g 48 a x
run 2 vquant a
run 1 vquant a nodir/sub/x.safetensors
[ ! -e nodir/sub/x.safetensors ]; ok $? "no output in a missing directory"
printf 'junk' > junk.safetensors
run 1 vquant junk.safetensors x.safetensors
like err 'junk.safetensors' "a malformed input is named"
[ ! -e x.safetensors ]; ok $? "no output from a malformed input"
if have_python numpy && have_python safetensors; then
	# A checkpoint with a NaN: rewritten by safetensors.numpy.
	python3 - a/model.safetensors nan.safetensors <<'EOF'
import sys
from safetensors.numpy import load_file, save_file
from safetensors import safe_open
t = load_file(sys.argv[1])
t["model.layers.1.mlp.up_proj.weight"][3, 4] = float("nan")
save_file(t, sys.argv[2], metadata=safe_open(sys.argv[1], "np").metadata())
EOF
	run 1 vquant nan.safetensors x.safetensors
	like err 'NaN' "a NaN weight is refused"
	run 1 vckpt verify nan.safetensors
	like out '^FAIL +values: model.layers.1.mlp.up_proj.weight has 1 NaN' "verify finds the NaN"
	like out '^FAIL +data hash' "and the stale hash"
else
	skip "NaN checks" "python numpy/safetensors not installed"
fi

# --eval: the validation perplexity before and after, through vgen's CPU
# inference.  A random model is close to uniform over the tokenizer's 1000
# ids, and INT8 barely moves it.
python3 - <<'EOF' > s.tok
import random, struct, sys
random.seed(3)
out = sys.stdout.buffer
out.write(b"VTOK" + struct.pack("<HHII", 1, 2, 1000, 0) + bytes(32))
total = 0
for d in range(100):
    ids = [random.randrange(1000) for _ in range(random.randint(20, 60))]
    out.write(struct.pack("<I%dH" % len(ids), len(ids), *ids))
    total += len(ids)
out.write(struct.pack("<IQQ", 0xFFFFFFFF, 100, total))
EOF
vshard --val-fraction 0.5 -o shards s.tok 2>/dev/null
ok $? "a shard directory of random tokens"
run 0 vquant -b 8 -e shards -n 512 a q8e
like out '^validation perplexity over 512 tokens: ' "--eval reports the perplexity"
sed -n 's/.*tokens: \([0-9.]*\) -> \([0-9.]*\).*/\1 \2/p' out > ppl
awk '{ exit !($1 > 500 && $1 < 2000 && $2 / $1 < 1.01 && $2 / $1 > 0.99) }' ppl
ok $? "a near-uniform perplexity ($(cat ppl)), INT8 within 1%"
run 0 vquant -b 4 -g 32 --eval shards --eval-tokens 256 a q4e
like out '^validation perplexity over 256 tokens: ' "--eval with INT4"
run 2 vquant -e shards a -
run 1 vquant -e no-shards a q8x
like err 'no-shards' "a missing shard directory is named"
done_testing
