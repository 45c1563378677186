#!/bin/sh
# vckpt: info, verify, diff, convert, average, export and import on small
# random checkpoints; malformed files; the files checked by the Python
# safetensors and gguf packages when they are installed.
. "${0%/*}/../lib.sh"

py() { python3 "$VESPER_SRC/tests/ckpt/$@"; }
crashed() { [ "$1" -ge 128 ]; }

run 0 vckpt init -V 1000 -s 1 a
run 0 vckpt init -V 1000 -s 2 b.safetensors
[ -f a/model.safetensors ] && [ -f b.safetensors ]; ok $? "init: a directory or a file"
run 0 vckpt info -t a
like out '^config +vocab 1024 \(tokenizer 1000\), dim 128, layers 4' "info: the configuration"
params=$(sed -n 's/^parameters *\([0-9]*\).*/\1/p' out)
like out "^parameters +$params \(the configuration makes $params\)" "info: parameters agree with the configuration"
like out '^tensor +model.layers.3.mlp.down_proj.weight +F32 +\[128, 352\]' "info -t lists tensors"
run 0 vckpt verify a
like out '^ok +layout: 39 tensors' "verify: the layout"
like out '^ok +data hash' "verify: the recorded hash"
like out '^ok +values' "verify: no NaN"

# Damage one byte of data: the hash catches it.
cp b.safetensors d.safetensors
size=$(wc -c < d.safetensors)
printf 'Z' | dd of=d.safetensors bs=1 seek=$((size - 3)) conv=notrunc 2>/dev/null
run 1 vckpt verify d.safetensors
like out '^FAIL +data hash' "verify: a damaged byte fails the hash"

# diff: zero against itself, non-zero against another seed; -e decides.
run 0 vckpt diff a a
like out '^largest difference 0$' "diff: a checkpoint equals itself"
run 1 vckpt diff -e 0 a b.safetensors
run 0 vckpt diff -e 1 a b.safetensors

# convert: bf16 is within half a bf16 ulp (weights are below 0.2, so
# 2^-9 * 0.2 < 4e-4), and back to f32 loses nothing more.
run 0 vckpt convert -d bf16 a c.safetensors
run 0 vckpt info c.safetensors
like out '^dtype +BF16 +39 tensors' "convert: every tensor bf16"
run 0 vckpt diff -e 0.0004 a c.safetensors
run 1 vckpt diff -e 0 a c.safetensors
run 0 vckpt convert -d f32 c.safetensors e
run 0 vckpt diff -e 0 c.safetensors e
size_a=$(wc -c < a/model.safetensors); size_c=$(wc -c < c.safetensors)
[ "$size_c" -lt $((size_a / 2 + 4096)) ]; ok $? "convert: bf16 is half the size"
run 0 vckpt verify c.safetensors

# average: the mean of a and b is half-way, so its difference from a is
# half the difference between a and b, tensor by tensor.
run 0 vckpt average -o m.safetensors a b.safetensors
run 0 vckpt diff a b.safetensors
awk 'NR > 1 && $2 ~ /^[0-9]/ { print $1, $2 }' out > ab
run 0 vckpt diff a m.safetensors
awk 'NR > 1 && $2 ~ /^[0-9]/ { print $1, $2 }' out > am
join ab am | awk '{ r = $2 > 0 ? $3 / $2 : 0.5; if (r < 0.49 || r > 0.51) bad++ }
    END { exit bad > 0 || NR != 39 }'
ok $? "average: every tensor half-way between its inputs"
run 0 vckpt average -o self.safetensors a a
run 0 vckpt diff -e 0 a self.safetensors
vckpt init -p small -V 1000 other.safetensors
run 1 vckpt average -o x.safetensors a other.safetensors
like err 'configurations differ' "average: refuses different models"
[ ! -e x.safetensors ]; ok $? "average: no output after a refusal"
run 1 vckpt diff a other.safetensors
like out '^lm_head.weight +only in a$' "diff: a tensor of one checkpoint only (small ties its head)"
like out '^model.embed_tokens.weight +shapes differ' "diff: tensors of other sizes"

# Malformed files: exit 1 with the file's name, never a crash, for every
# command that reads one.
craft() {	# craft FILE HEADER DATA: a header length, the header, the data
	perl -e 'print pack("Q<", length $ARGV[0]), $ARGV[0], $ARGV[1]' "$2" "$3" > "$1"
}
printf '\377\377\377\377\0\0\0\0{}' > longhdr.safetensors
craft notjson.safetensors '{"a": not json}' ''
head -c 100000 a/model.safetensors > trunc.safetensors
craft dtype.safetensors '{"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,1]}}' x
craft shape.safetensors '{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}' xxxx
: > empty.safetensors
for f in longhdr notjson trunc dtype shape empty; do
	for cmd in "info" "verify" "convert" "diff a"; do
		case $cmd in convert) set -- convert "$f.safetensors" "out-$f.safetensors" ;;
		"diff a") set -- diff a "$f.safetensors" ;;
		*) set -- $cmd "$f.safetensors" ;; esac
		vckpt "$@" >out 2>err
		st=$?
		{ [ $st -eq 1 ] && grep -q "$f.safetensors" err out; } ||
		    { [ "$cmd" = verify ] && [ $st -eq 1 ] && grep -q "FAIL" out; }
		ok $? "$cmd $f.safetensors: exit 1 naming the file (got $st)"
	done
	[ ! -e "out-$f.safetensors" ]; ok $? "$f: no output file"
done
vckpt info longhdr.safetensors 2>err; like err 'beyond the end of the file' "header length beyond the file"
vckpt info notjson.safetensors 2>err; like err 'not valid JSON' "a header that is not JSON"
vckpt info trunc.safetensors 2>err; like err 'past the data' "truncated data"
vckpt info dtype.safetensors 2>err; like err 'unknown dtype' "unknown dtype"
vckpt info shape.safetensors 2>err; like err 'shape and dtype make 8 bytes' "shape disagrees with bytes"
run 1 vckpt info no-such-dir
like err 'no-such-dir' "a missing checkpoint is named"

# A write that fails half-way (a file-size limit standing in for a full
# disk) leaves neither the output nor a temporary file.
mkdir full && cd full || exit 1
for cmd in "vckpt init -V 1000 out" "vckpt convert -d f32 ../a out.safetensors" \
    "vckpt export --gguf out.gguf ../a" "vquant ../a out.safetensors" \
    "vckpt average -o out.safetensors ../a ../b.safetensors"; do
	# shellcheck disable=SC2086
	(ulimit -f 2000; trap '' XFSZ; exec $cmd) >../out 2>../err
	st=$?
	[ $st -eq 1 ] && grep -q 'write error: File too large' ../err
	ok $? "$cmd: a failed write is reported (status $st)"
	[ ! -e out/model.safetensors ] && [ ! -e out.safetensors ] && [ ! -e out.gguf ] &&
	    [ -z "$(find . -name '*.tmp.*')" ]
	ok $? "$cmd: no output and no temporary file left"
done
cd .. || exit 1

# Bad usage.
run 2 vckpt frobnicate
run 2 vckpt convert -d f64 a x
run 2 vckpt diff a
run 2 vckpt export a
run 2 vckpt init -p huge x

# Hugging Face export, and import of the export: the same weights.
printf '{"version":"1.0","added_tokens":[{"id":1,"content":"<bos>","special":true},{"id":2,"content":"<eos>","special":true}],"model":{"type":"BPE","vocab":{"<bos>":1,"<eos>":2,"a":3,"b":4,"ab":5},"merges":["a b"]}}\n' > tok.json
run 0 vckpt export -t tok.json --hf hf a
[ -f hf/model.safetensors ] && [ -f hf/config.json ]; ok $? "export --hf: weights and config.json"
same tok.json hf/tokenizer.json "export --hf copies the tokenizer"
like hf/config.json '"architectures": \[' "config.json names the architecture"
like hf/config.json '"LlamaForCausalLM"' "config.json: LlamaForCausalLM"
like hf/config.json '"hidden_size": 128' "config.json: hidden_size"
like hf/config.json '"vocab_size": 1024' "config.json: vocab_size"
run 0 vckpt import --hf hf -o back
run 0 vckpt diff -e 0 a back
run 0 vckpt verify back
mkdir bad-hf && sed 's/"silu"/"gelu_new"/' hf/config.json > bad-hf/config.json
cp hf/model.safetensors bad-hf/
run 1 vckpt import --hf bad-hf -o x
like err 'only silu' "import refuses another activation"
sed 's/"intermediate_size": 352/"intermediate_size": 384/' hf/config.json > bad-hf/config.json
run 1 vckpt import --hf bad-hf -o x
like err 'shape' "import refuses weights that disagree with config.json"
printf '{"vocab_size": ' > bad-hf/config.json
run 1 vckpt import --hf bad-hf -o x
like err 'config.json' "import: a broken config.json is named"
[ ! -e x ]; ok $? "import: no output after a refusal"

# GGUF: our own reader is in the unit tests and the fuzz target; here
# llama.cpp's gguf-py checks keys, names, the q/k permutation and values.
for q in f16 q8_0 q4_0; do
	run 0 vckpt export -t tok.json -q $q --gguf "m-$q.gguf" a
	head -c 4 "m-$q.gguf" > magic; printf 'GGUF' > want
	same magic want "export --gguf $q: GGUF magic"
done
size16=$(wc -c < m-f16.gguf); size4=$(wc -c < m-q4_0.gguf)
[ "$size4" -lt $((size16 / 3)) ]; ok $? "q4_0 is under a third of f16 ($size4 vs $size16)"
run 2 vckpt export -q q5_k --gguf x.gguf a
# vckpt info reads GGUF through the checking reader.
run 0 vckpt info -t m-q8_0.gguf
like out '^format +GGUF version 3, alignment 32' "info: a GGUF file"
like out '^metadata +llama.block_count = 4$' "info: GGUF keys"
like out '^metadata +tokenizer.ggml.tokens = \[1024 values\]$' "info: the tokens padded to the vocabulary"
like out '^dtype +Q8_0 +30 tensors' "info: all 30 matrices Q8_0 (352 inputs are 11 blocks)"
like out '^tensor +blk.3.ffn_down.weight +Q8_0 +\[352, 128\]' "info -t: GGUF sizes, fastest first"
head -c 3000 m-q8_0.gguf > cut.gguf
run 1 vckpt info cut.gguf
like err 'cut.gguf: ' "a truncated GGUF file is named"

if have_python safetensors && have_python numpy; then
	run 0 py st_check.py read a/model.safetensors
	run 0 py st_check.py read c.safetensors a/model.safetensors
	like out '39 compared' "safetensors: bf16 values are fp32 rounded to nearest even"
	run 0 py st_check.py read hf/model.safetensors
	like out "'format'" "safetensors reads the export's metadata"
	run 0 py st_check.py write pyfile.safetensors
	run 0 vckpt info -t pyfile.safetensors
	like out '^tensor +w +F32 +\[3, 5\]' "a file written by safetensors.numpy reads"
	like out '^metadata +note = from python' "its metadata reads"
	run 0 vckpt convert -d f32 pyfile.safetensors pyback.safetensors
	run 0 vckpt diff -e 0 pyfile.safetensors pyback.safetensors
	# Import of a model as transformers saves it: F16, grouped-query
	# attention, a tied head, a vocabulary to pad.
	mkdir pyhf && run 0 py st_check.py hfmodel pyhf
	run 0 vckpt import --hf pyhf -o pyimp.safetensors
	like out 'vocabulary 1000 \(padded to 1024\)' "import pads the vocabulary"
	run 0 py st_check.py hfcheck pyhf pyimp.safetensors
	run 0 vckpt verify pyimp.safetensors
	run 0 vckpt export --hf pyexp pyimp.safetensors
	like pyexp/config.json '"num_key_value_heads": 2' "export keeps grouped-query attention"
	like pyexp/config.json '"tie_word_embeddings": true' "export keeps the tied head"
else
	skip "safetensors package checks" "python safetensors/numpy not installed"
fi
if have_python gguf && have_python safetensors; then
	for q in f16 q8_0 q4_0; do
		run 0 py gguf_check.py "m-$q.gguf" a/model.safetensors $q tok.json
	done
	# verify scans GGUF values: an infinite block scale is caught.
	run 0 vckpt verify m-q8_0.gguf
	like out '^ok +values: ' "verify: a GGUF file's values"
	cp m-q8_0.gguf inf.gguf
	python3 -c '
import sys
from gguf import GGUFReader
t = [t for t in GGUFReader(sys.argv[1]).tensors if t.name == "blk.1.ffn_up.weight"][0]
print(t.data_offset)' inf.gguf > off
printf '\000\174' | dd of=inf.gguf bs=1 seek="$(cat off)" conv=notrunc 2>/dev/null
	run 1 vckpt verify inf.gguf
	like out '^FAIL +values: blk.1.ffn_up.weight has 32 NaN or infinite' "verify: an infinite Q8_0 scale"
else
	skip "gguf-py checks" "python gguf not installed"
fi
# A Vesper tokenizer: init records its hash; verify -t checks it; export
# makes its tokenizer.json (the same as vtokenize export) only for the
# checkpoint it belongs to.
vtokenize train -v 600 -o tokenizer.bpe "$VESPER_SRC/data/handwritten.txt" 2>/dev/null &&
    vtokenize train -v 500 -o other.bpe "$VESPER_SRC/data/handwritten.txt" 2>/dev/null
ok $? "two small tokenizers"
run 0 vckpt init -t tokenizer.bpe tk
run 0 vckpt info tk
like out '^config +vocab 640 \(tokenizer 600\)' "init -t: the tokenizer's size"
sum=$(sha256sum tokenizer.bpe | cut -d' ' -f1)
like out "^tokenizer +$sum" "init -t: the tokenizer's SHA-256"
run 0 vckpt verify -t tokenizer.bpe tk
like out '^ok +tokenizer' "verify -t: the right tokenizer"
run 1 vckpt verify -t other.bpe tk
like out '^FAIL +tokenizer: the checkpoint was trained with' "verify -t: another tokenizer fails"
run 0 vckpt export --hf hftk tk
vtokenize export -t tokenizer.bpe -o want.json
same want.json hftk/tokenizer.json "export finds tokenizer.bpe above the checkpoint and converts it"
run 1 vckpt export -t other.bpe --hf hfx tk
like err 'not the tokenizer' "export refuses another tokenizer"
run 0 vckpt export -q q8_0 --gguf tk.gguf tk
if have_python gguf && have_python safetensors; then
	run 0 py gguf_check.py tk.gguf tk/model.safetensors q8_0 want.json
else
	skip "gguf-py check of the tokenizer" "python gguf not installed"
fi
# A training checkpoint directory: verify also checks vtrain's optimizer
# moments (their checksum) and cursor; a run's directory opens its latest.
python3 - <<'EOF' > s.tok
import random, struct, sys
random.seed(4)
out = sys.stdout.buffer
out.write(b"VTOK" + struct.pack("<HHII", 1, 2, 1000, 0) + bytes(32))
docs = [[random.randrange(1000) for _ in range(40)] for _ in range(60)]
for d in docs:
    out.write(struct.pack("<I%dH" % len(d), len(d), *d))
out.write(struct.pack("<IQQ", 0xFFFFFFFF, len(docs), sum(map(len, docs))))
EOF
vshard --val-fraction 0.2 -o shards s.tok 2>/dev/null &&
    vtrain --device cpu --preset tiny --steps 2 --seq 32 --batch-tokens 256 \
    -d shards -o run >/dev/null 2>&1
ok $? "a two-step vtrain run"
run 0 vckpt verify run
like out '^ok +training state: step 2, optimizer moments' "verify: the optimizer checksum and cursor"
run 0 vckpt info run
like out '^step +2$' "info opens a run's latest step"
cp -R run run2
opt=$(ls run2/step-*/optimizer.bin)
printf 'Z' | dd of="$opt" bs=1 seek=100 conv=notrunc 2>/dev/null
run 1 vckpt verify run2
like out '^FAIL +training state: .*checksum' "verify: damaged optimizer moments fail"
done_testing
