#!/bin/sh
# vshard: write, verify, cat, stats; the split and the shuffle; damaged
# shards, manifests and streams; a file size limit and leftovers of a
# killed run.
. "${0%/*}/../lib.sh"

# mkstream DOCS VOCAB SEED: random documents (some empty, some long) in the
# vesper-tokens(5) format, written here independently of lib/tokstream.c.
cat > mkstream.py <<'PY'
import random, struct, sys
n, vocab, seed = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
width = 2 if vocab <= 65536 else 4
rng = random.Random(seed)
out = sys.stdout.buffer
out.write(b"VTOK" + struct.pack("<HHII", 1, width, vocab, 0) + bytes(range(32)))
total = 0
for i in range(n):
    k = rng.choice([0, 1, 7, 60, rng.randrange(1, 900)])
    ids = [rng.randrange(vocab) for _ in range(k)]
    out.write(struct.pack("<I%d%s" % (k, "H" if width == 2 else "I"), k, *ids))
    total += k
if len(sys.argv) < 5:
    out.write(struct.pack("<IQQ", 0xFFFFFFFF, n, total))
PY
mkstream() { python3 mkstream.py "$@"; }
# docs FILE: the documents of a token stream, one line each, sorted.
cat > docs.py <<'PY'
import struct, sys
b = open(sys.argv[1], "rb").read()
w = struct.unpack_from("<H", b, 6)[0]
p, docs = 48, []
while True:
    (n,) = struct.unpack_from("<I", b, p); p += 4
    if n == 0xFFFFFFFF:
        break
    docs.append(b[p:p + n * w].hex()); p += n * w
print("\n".join(sorted(docs)))
PY
mkstream 400 3000 1 > s.tok
mkstream 300 60000 4 > big.tok

run 0 vshard --shard-tokens 2000 --val-fraction 0.1 --seed 5 -o d s.tok
like err 'train [0-9]+ shards, 360 documents' "360 documents to train"
like err 'val [0-9]+ shards, 40 documents' "40 documents (10%) to val"
[ -f d/manifest.json ] && [ -f d/train-00000.vsh ] && [ -f d/val-00000.vsh ]
ok $? "manifest and shards of both splits"
run 0 vshard verify d
like err 'd: ok' "verify reports ok"
run 0 vshard stats --format json d
python3 -c '
import json, sys
s = json.load(open("out"))
assert s["vocab_size"] == 3000 and s["train"]["docs"] == 360 and s["val"]["docs"] == 40
assert s["tokenizer_sha256"] == bytes(range(32)).hex()
' 2>err.py
ok $? "stats --format json: counts and the tokenizer hash of the stream"
run 0 vshard stats d
like out '^vocabulary +3000' "stats as text"

# cat gives back the same documents, shuffled; all = train then val.
run 0 vshard cat d
python3 docs.py out > got.docs && python3 docs.py s.tok > want.docs
same got.docs want.docs "cat of a shuffled directory holds the same documents"
cmp -s out s.tok
ok $((! $?)) "and they are shuffled"
vshard cat --split val d > val.tok && vshard cat --split train d > train.tok
python3 docs.py val.tok | wc -l | tr -d ' ' > nval
echo 40 > want.n
same nval want.n "cat --split val gives the 40 validation documents"

# Stream order and no validation: cat is the identity, byte for byte, and
# a document longer than a shard spans shards.
run 0 vshard --no-shuffle --val-fraction 0 --shard-tokens 333 -o plain - < s.tok
run 0 vshard cat plain
same out s.tok "--no-shuffle --val-fraction 0: cat gives the stream back exactly"
mkstream 50 70000 2 > wide.tok
run 0 vshard --no-shuffle --val-fraction 0 --shard-tokens 1k -o wide wide.tok
vshard cat wide > wide.out
same wide.out wide.tok "4-byte ids (vocabulary 70000) round-trip"

# Same seed, same shards; another seed, another split.
vshard --shard-tokens 2000 --val-fraction 0.1 --seed 5 -o d2 s.tok 2>/dev/null
same d/manifest.json d2/manifest.json "the same seed gives the same manifest"
same d/train-00001.vsh d2/train-00001.vsh "and the same shards"
vshard --shard-tokens 2000 --val-fraction 0.1 --seed 6 -o d3 s.tok 2>/dev/null
cmp -s d/val-00000.vsh d3/val-00000.vsh
ok $((! $?)) "another seed gives another split"

# zstd's worker threads: any number from 1 gives the same bytes.
vshard --threads 1 --shard-tokens 20000 -o t1 big.tok 2>/dev/null
vshard --threads 3 --shard-tokens 20000 -o t3 big.tok 2>/dev/null
same t1/train-00000.vsh t3/train-00000.vsh "--threads 1 and --threads 3 write the same shard"
run 0 vshard --threads 0 --shard-tokens 20000 -o t0 big.tok
run 0 vshard verify t0

# An empty stream makes an empty, valid directory.
mkstream 0 100 1 > empty.tok
run 0 vshard -o empty empty.tok
run 0 vshard verify empty

# Damage.  One flipped byte in a body:
cp -r d bad1
printf '\377' | dd of=bad1/train-00002.vsh bs=1 seek=150 conv=notrunc 2>/dev/null
run 1 vshard verify bad1
like err 'train-00002.vsh.*checksum' "a flipped body byte: checksum error naming the shard"
cp -r d bad2
printf 'X' | dd of=bad2/val-00000.vsh bs=1 seek=9 conv=notrunc 2>/dev/null
run 1 vshard cat bad2
like err 'val-00000.vsh.*header' "a flipped header byte: error naming the shard"
cp -r d bad3
head -c 300 d/train-00001.vsh > bad3/train-00001.vsh
run 1 vshard verify bad3
like err 'train-00001.vsh.*(truncated|ends early)' "a truncated shard"
cp -r d bad4
cp d3/train-00000.vsh bad4/train-00000.vsh
run 1 vshard verify bad4
like err 'train-00000.vsh.*disagrees with the manifest' "a shard from another run"
cp -r d bad5
python3 -c '
import json
m = json.load(open("bad5/manifest.json"))
m["splits"]["train"]["docs"] += 1
json.dump(m, open("bad5/manifest.json", "w"))'
run 1 vshard verify bad5
like err 'manifest says 361 train documents' "a manifest whose counts disagree"
cp -r d bad6
rm bad6/train-00003.vsh
run 1 vshard verify bad6
like err 'train-00003.vsh' "a missing shard is named"
echo '{"format":"vesper-shards"' > bad6/manifest.json
run 1 vshard stats bad6
like err 'manifest.json.*JSON' "a broken manifest is named"
# Hostile manifests: a shard name that leaves the directory, numbers out
# of range, a wrong type.
for edit in 'm["splits"]["train"]["shards"][0]["file"] = "../s.tok"' \
    'm["splits"]["val"]["shards"][0]["tokens"] = -5' \
    'm["vocab_size"] = 2**40' \
    'm["splits"]["train"]["shards"][0]["xxh3"] = 12' \
    'm["splits"] = []'; do
	rm -rf bad7 && cp -r d bad7
	python3 -c "
import json
m = json.load(open('bad7/manifest.json'))
$edit
json.dump(m, open('bad7/manifest.json', 'w'))"
	run 1 vshard verify bad7
	like err 'bad7/manifest.json' "a manifest with $edit is refused, naming it"
done
run 1 vshard verify nowhere
like err 'nowhere/manifest.json' "no directory: the missing manifest is named"

# Bad streams: nothing is written under a final name.
python3 - <<'PY'
import struct
h = b"VTOK" + struct.pack("<HHII", 1, 2, 100, 0) + bytes(32)
open("oov.tok", "wb").write(h + struct.pack("<I3H", 3, 5, 100, 7) + struct.pack("<IQQ", 0xFFFFFFFF, 1, 3))
PY
run 1 vshard -o oov oov.tok
like err 'oov.tok.*id 100 beyond vocabulary 100' "an id beyond the vocabulary names the stream"
[ ! -e oov/manifest.json ]; ok $? "no manifest for a bad stream"
mkstream 30 3000 3 cut > cut.tok
run 1 vshard -o cut cut.tok
like err 'cut.tok.*end record' "a stream without its end record is refused"
run 1 vshard -o x notatoken.stream
like err 'notatoken.stream' "a missing input is named"
echo 'hello' > text.txt
run 1 vshard -o x text.txt
like err 'text.txt: not a token stream' "text is not a token stream"

# A file size limit half-way: the run fails, no shard or manifest of it is
# left under a final name (the old manifest is gone too), and a re-run
# finishes.
vshard --shard-tokens 500 --seed 1 -o lim s.tok 2>/dev/null
(ulimit -f 4; exec vshard --shard-tokens 3000 -o lim big.tok) >out 2>err
ok $(($? != 1)) "under ulimit -f, vshard fails with status 1"
like err 'lim/train-00000.vsh' "naming the shard it could not write"
[ ! -e lim/manifest.json ]; ok $? "no manifest is left"
ls lim | grep -q 'tmp' ; ok $((! $?)) "no temporary file is left"
run 0 vshard --shard-tokens 3000 -o lim big.tok
run 0 vshard verify lim
ls lim | grep -c vsh > n.got
python3 -c 'import json; m = json.load(open("lim/manifest.json")); print(sum(len(s["shards"]) for s in m["splits"].values()))' > n.want
same n.got n.want "the re-run removed the shards of the earlier run it replaced"

# Leftovers of a run killed with SIGKILL are swept by the next run.
: > lim/train-00004.vsh.tmp.AbC123
: > lim/manifest.json.tmp.XyZ789
: > lim/notes.txt
run 0 vshard --shard-tokens 3000 -o lim big.tok
[ ! -e lim/train-00004.vsh.tmp.AbC123 ] && [ ! -e lim/manifest.json.tmp.XyZ789 ]
ok $? "temporary files of a killed run are removed"
[ -e lim/notes.txt ]; ok $? "files that are not vshard's are left alone"

# A kill in the middle of the writing: SIGTERM removes the open temporary
# file; whatever finished is never taken for a complete directory.
mkstream 3000 60000 5 > huge.tok
vshard --level 19 --shard-tokens 20000 -o killed huge.tok 2>/dev/null &
pid=$!
i=0
while [ ! -e killed/train-00001.vsh ] && [ $i -lt 400 ]; do
	sleep 0.01
	i=$((i + 1))
done
kill -TERM $pid 2>/dev/null
wait $pid
st=$?
if [ "$st" -eq 0 ]; then
	skip "a killed run leaves no manifest" "vshard finished before the signal"
elif [ -e killed/manifest.json ]; then
	# The signal came after the manifest (while exiting): then the
	# directory must be complete.
	vshard verify killed >/dev/null 2>&1
	ok $? "killed after its manifest: the directory is complete"
else
	! ls killed 2>/dev/null | grep -q tmp
	r=$?
	ok $r "a killed run leaves no manifest and no temporary file"
	[ $r -eq 0 ] || diag "status $st; left: $(ls killed 2>&1)"
fi
run 0 vshard --level 19 --shard-tokens 20000 -o killed huge.tok
run 0 vshard verify killed

if [ -w /dev/full ]; then
	vshard cat d > /dev/full 2>err
	ok $(($? != 1)) "cat to a full standard output fails"
	like err 'standard output: write error' "saying so"
fi

# Usage.
run 2 vshard s.tok
like err '^vshard: -o dir is required' "-o is required"
run 2 vshard --val-fraction 0.9 -o x s.tok
like err 'val-fraction' "a fraction out of range names the option"
run 2 vshard --shard-tokens 0 -o x s.tok
run 2 vshard cat --split test d
run 2 vshard verify
run 2 vshard stats a b
done_testing
