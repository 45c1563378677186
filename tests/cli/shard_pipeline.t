#!/bin/sh
# The data half of the pipeline on the test fixtures: vfetch -> vtokenize
# -> vshard, and back with vshard cat -> vtokenize decode.  The tokenizer's
# hash must travel from the tokenizer file into the manifest.
. "${0%/*}/../lib.sh"

FR="$VESPER_SRC/tests/fetch/hub/OpenLLM-France/Claire-Dialogue-French-0.1/FR"
if ! vtokenize train -h >/dev/null 2>&1; then
	skip "pipeline" "vtokenize is not built"
	done_testing
	exit 0
fi
run 0 vfetch "$FR"
cp out docs.jsonl
[ "$(wc -l < docs.jsonl)" -eq 10 ]; ok $? "vfetch: 10 dialogues in the fixture directory"
run 0 vtokenize train -v 400 -o tok.bpe docs.jsonl
run 0 vtokenize encode -t tok.bpe -o c.tok docs.jsonl
run 0 vshard --val-fraction 0.2 --seed 3 --shard-tokens 300 -o sh c.tok
run 0 vshard verify sh
run 0 vshard stats --format json sh
python3 - "$(sha256sum tok.bpe | cut -c1-64)" <<'PY'
import json, sys
s = json.load(open("out"))
assert s["tokenizer_sha256"] == sys.argv[1], (s["tokenizer_sha256"], sys.argv[1])
assert s["train"]["docs"] == 8 and s["val"]["docs"] == 2, s
PY
ok $? "the manifest carries the tokenizer's SHA-256; 8 train and 2 val dialogues"
vshard cat sh > back.tok
vtokenize decode -J -t tok.bpe back.tok | sort > back.txt
vtokenize decode -J -t tok.bpe c.tok | sort > want.txt
[ -s want.txt ] && cmp -s back.txt want.txt
ok $? "decoding the shards gives the same dialogues as decoding the stream"
run 0 vshard --val-fraction 0 --no-shuffle -o plain c.tok
vshard cat plain > plain.tok
same plain.tok c.tok "stream order, no validation: the stream comes back byte for byte"
done_testing
