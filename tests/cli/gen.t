#!/bin/sh
# vgen: what a user types, on two small models whose behaviour is known
# (tests/cli/gen-model.py): "chain" writes "Oui. Zéphyr!" with p ~ 1 after
# any prompt, "random" is unsure of everything.  The tokenizer has the 326
# fixed tokens and one merge, so every id below is known.
. "${0%/*}/../lib.sh"

if ! command -v python3 >/dev/null 2>&1; then
	skip "vgen tests" "python3 is needed to write the test models"
	done_testing
	exit
fi
GM="$VESPER_SRC/tests/cli/gen-model.py"
# One merge: the bytes C3 A9 (ids 70+195, 70+169) make "é".
printf 'vesper-tokenizer 1\nnormalize all\nvocab 327\nmerges 1\n265 239\nend\n' \
    >tok.bpe
mkdir -p chain rnd run/ckpt/step-00000001
python3 "$GM" chain chain/model.safetensors 327 tok.bpe
python3 "$GM" random rnd/model.safetensors 327 tok.bpe
cp tok.bpe chain/tokenizer.bpe
cp tok.bpe rnd/tokenizer.bpe
cp chain/model.safetensors run/ckpt/step-00000001/
ln -s step-00000001 run/ckpt/latest
cp tok.bpe run/tokenizer.bpe
printf 'Oui. Zéphyr!' >want

run 0 vgen -m chain -p 'Bonjour :'
same out want "a known model writes its known answer"
[ ! -s err ]; ok $? "nothing on stderr"
printf 'Bonjour :\n' | vgen -m chain >out 2>err
same out want "the prompt from standard input"
run 0 vgen -m run/ckpt/latest -p 'x :'
same out want "the tokenizer found in the run directory, two levels up"
run 0 vgen -m chain/model.safetensors -t tok.bpe -p 'x :'
same out want "a .safetensors file and -t"

# Stop strings, including one that spans tokens (é is two byte tokens
# here when the merge does not apply across the stream) and the earliest
# of two.
run 0 vgen -m chain -p 'x :' --stop ph
printf 'Oui. Zé' >w
same out w "--stop ph: the text before it, not the stop string"
run 0 vgen -m chain -p 'x :' --stop 'Zé' --stop '. '
printf 'Oui' >w
same out w "two --stop strings: the first to appear wins"
run 0 vgen -m chain -p 'x :' --stop '!'
printf 'Oui. Zéphyr' >w
same out w "--stop at the last token"
run 0 vgen -m chain -p 'x :' -n 3
printf 'Oui' >w3
same out w3 "-n 3 stops after three tokens"

# Quantised and bf16 checkpoints of the same model say the same (the
# margins are large): the INT8/INT4 kernels through real vquant output.
if vquant -b 8 chain q8 >/dev/null 2>&1 && vquant -b 4 -g 32 chain q4 >/dev/null 2>&1 &&
    vckpt convert -d bf16 chain bf16 >/dev/null 2>&1; then
	for q in q8 q4 bf16; do
		run 0 vgen -m $q -t tok.bpe -p 'x :' --confidence
		same out want "$q checkpoint: the same answer"
		like err '"stop":"eos"' "$q: ends at <eos>"
	done
else
	skip "quantised checkpoints" "vquant or vckpt convert failed"
fi

# --confidence: JSON Lines on stderr when stdout is not a terminal.
run 0 vgen -m chain -p 'x :' --confidence
same out want "--confidence leaves stdout alone"
n=$(grep -c '"type":"token"' err)
[ "$n" -eq 13 ]; ok $? "one token line per token (13, got $n)"
like err '^\{"type":"token","i":0,"id":149,"text":"O","p":1\.0000,"entropy":0\.0000,"low":false\}$' \
    "a token line: id, text, p, entropy, low"
like err '"i":6,"id":265,"text":"\\ufffd"' "half a character shows as U+FFFD"
like err '^\{"type":"summary","tokens":13,"mean_p":1\.0000,.*"low_spans":0,"stop":"eos"\}$' \
    "the summary: 13 sure tokens, stopped at <eos>"
run 0 vgen -m rnd -p 'x' --seed 3 -n 20 --confidence=c.jsonl
[ ! -s err ]; ok $? "--confidence=FILE: nothing on stderr"
like c.jsonl '"type":"low_span","from":0,"to":20' "an unsure model: one low span over all 20 tokens"
like c.jsonl '"low":true' "low tokens flagged"
like c.jsonl '"stop":"max_tokens"' "stopped by -n"
if have_python json; then
	python3 -c 'import json,sys
for l in open(sys.argv[1]): json.loads(l)' c.jsonl
	ok $? "every confidence line is JSON"
fi
run 1 vgen -m chain -p x --confidence=nodir/c.jsonl
like err "nodir" "an unwritable confidence file: exit 1 naming it"

# --satisfice: stop at the first sentence end once sure.
run 0 vgen -m chain -p 'x :' --satisfice
printf 'Oui.' >w
same out w "--satisfice stops after the first sure sentence"
run 0 vgen -m chain -p 'x :' --satisfice 0.99 --confidence c2.jsonl
same out w "--satisfice TAU and --confidence FILE as separate words"
like c2.jsonl '"stop":"satisficed"' "the summary says why it stopped"
run 0 vgen -m rnd -p 'x' --seed 3 -n 25 --satisfice=0.5 --confidence
like err '"tokens":25,.*"stop":"max_tokens"' "an unsure model never satisfices"

# Sampling: a seed is a text.
vgen -m rnd -p 'x' --seed 42 -n 40 >a 2>/dev/null
vgen -m rnd -p 'x' --seed 42 -n 40 >b 2>/dev/null
vgen -m rnd -p 'x' --seed 43 -n 40 >c 2>/dev/null
same a b "the same seed, the same text"
cmp -s a c; ok $((! $?)) "another seed, another text"
vgen -m rnd -p 'x' --seed 1 -n 30 --temperature 0 >a 2>/dev/null
vgen -m rnd -p 'x' --seed 2 -n 30 --temperature 0 >b 2>/dev/null
same a b "--temperature 0 is greedy: no seed dependence"
vgen -m rnd -p 'x' --seed 1 -n 30 --temperature 0 --repeat-penalty 1 >c 2>/dev/null
vgen -m rnd -p 'x' --seed 1 -n 30 --temperature 0 --top-k 1 >d 2>/dev/null
same b d "top-k 1 is greedy too"
vgen -m rnd -p 'x' --seed 5 -n 30 --top-k 1 --repeat-penalty 1 >e 2>/dev/null
same c e "top-k 1 at any temperature == temperature 0 (no penalty)"

# --batch: one answer a line, in order, each independent of its neighbours.
printf 'a :\nb :\nc :\n' | vgen -m chain --batch >out 2>err
n=$(grep -c '^Oui\. Zéphyr!$' out)
[ "$n" -eq 3 ] && [ "$(wc -l <out)" -eq 3 ]; ok $? "--batch: three prompts, three answers"
seq 1 20 | sed 's/^/ligne /' >lines
vgen -m rnd --batch --seed 9 -n 12 <lines >all 2>/dev/null
sed -n 7p lines | vgen -m rnd --batch --seed 15 -n 12 >one 2>/dev/null
sed -n 7p all >seven
same one seven "line 7 of a batch of 20 == line 7 alone with seed + 6"
[ "$(wc -l <all)" -eq 20 ]; ok $? "--batch: 20 lines in, 20 out"

# --chat without a terminal: one answer line per input line.
printf 'Bonjour\nÇa va ?\n' | vgen -m chain --chat >out 2>err
printf 'Oui. Zéphyr!\nOui. Zéphyr!\n' >w
same out w "--chat: each turn answered on its own line"
yes 'une longue question pour remplir le contexte' | head -40 |
    vgen -m rnd --chat --seed 1 -n 8 >out 2>err
st=$?
[ $st -eq 0 ] && [ "$(wc -l <out)" -eq 40 ]; ok $? "--chat: 40 turns overflow the context of 128 and go on (oldest dropped)"

# Errors.
run 2 vgen -p x
like err "no model" "no -m: bad usage"
run 2 vgen -m chain --top-p 0 -p x
run 2 vgen -m chain --temperature -1 -p x
run 2 vgen -m chain -p x --batch
run 2 vgen -m chain --stop '' -p x
run 2 vgen -m chain -p x extra
run 1 vgen -m nowhere -p x
like err "nowhere" "a missing model is named"
head -c 100 chain/model.safetensors >bad.safetensors
run 1 vgen -m bad.safetensors -t tok.bpe -p x
like err "bad.safetensors" "a truncated checkpoint is refused, naming it"
mkdir -p lonely && cp chain/model.safetensors lonely/
run 1 vgen -m lonely -p x
like err "no tokenizer.bpe beside" "no tokenizer found: says to use -t"
printf 'vesper-tokenizer 1\nnormalize none\nvocab 327\nmerges 1\n265 239\nend\n' >other.bpe
run 1 vgen -m chain -t other.bpe -p x
like err "another tokenizer" "a tokenizer with another hash is refused"
python3 "$GM" chain nosha.safetensors 327
printf 'vesper-tokenizer 1\nnormalize all\nvocab 326\nmerges 0\nend\n' >small.bpe
run 1 vgen -m nosha.safetensors -t small.bpe -p x
like err "326 tokens, the model 327" "a tokenizer of another size is refused"
python3 "$GM" nan nan.safetensors 327
run 1 vgen -m nan.safetensors -t tok.bpe -p x
like err "not finite" "a NaN in the weights: a clear error, not NaN text"
if [ -w /dev/full ]; then
	vgen -m chain -p 'x :' >/dev/full 2>err
	[ $? -eq 1 ]; ok $? "a write error on stdout: exit 1"
	like err "standard output" "and it says where"
fi
done_testing
