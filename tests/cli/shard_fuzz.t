#!/bin/sh
# Short libFuzzer runs of the shard and manifest readers and of vfetch's
# document splitter (tests/fuzz/fuzz_shard.c, fuzz_docs.c), from seeds
# made here.  Skipped where clang cannot build a libFuzzer target.
. "${0%/*}/../lib.sh"

CC=${FUZZ_CC:-clang}
FUZZ_SECONDS=${FUZZ_SECONDS:-5}
printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' > probe.c
if ! "$CC" -fsanitize=fuzzer,address -o probe probe.c >/dev/null 2>&1; then
	skip "fuzzing" "$CC has no libFuzzer here"
	done_testing
	exit 0
fi
S="$VESPER_SRC"
FLAGS="-g -O1 -std=c11 -D_DEFAULT_SOURCE -D_FILE_OFFSET_BITS=64 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
# shellcheck disable=SC2086
$CC $FLAGS -o fuzz_shard "$S/tests/fuzz/fuzz_shard.c" "$S/lib/shard.c" "$S/lib/verr.c" \
    "$S/lib/vio.c" "$S/lib/vjson.c" $(pkg-config --cflags --libs jansson libzstd libxxhash) 2>build.log
ok $? "fuzz_shard builds"
# shellcheck disable=SC2086
$CC $FLAGS -o fuzz_docs "$S/tests/fuzz/fuzz_docs.c" "$S/lib/fetch_docs.c" "$S/lib/verr.c" \
    "$S/lib/vjson.c" $(pkg-config --cflags --libs jansson) 2>>build.log
ok $? "fuzz_docs builds"
[ -s build.log ] && diag "$(head -20 build.log)"

# Seeds: real shards and a manifest from vshard, and text in each format.
mkdir -p seeds-shard seeds-docs
python3 - <<'PY'
import struct
h = b"VTOK" + struct.pack("<HHII", 1, 2, 50, 0) + bytes(32)
docs = [[1, 2, 3], [], [49] * 30, list(range(40))]
body = b"".join(struct.pack("<I%dH" % len(d), len(d), *d) for d in docs)
open("s.tok", "wb").write(h + body + struct.pack("<IQQ", 0xFFFFFFFF, len(docs), sum(map(len, docs))))
PY
vshard --shard-tokens 20 --val-fraction 0.25 -o sd s.tok 2>/dev/null
i=0
for f in sd/*.vsh; do
	i=$((i + 1)); { printf '\000'; cat "$f"; } > "seeds-shard/shard$i"
done
{ printf '\001'; cat sd/manifest.json; } > seeds-shard/manifest
for fmt in 0 1 2 3 4; do
	{ printf "\\$(printf %o $((fmt + 8 * fmt)))"; printf '[A:] Bonjour\r\n[B:] Ça va ?\n\n<|endoftext|>{"text":"x\\u00e9","id":3}\n'; } > "seeds-docs/f$fmt"
done

for t in shard docs; do
	for s in seeds-$t/*; do
		./fuzz_$t "$s" >log 2>&1
		ok $? "fuzz_$t runs the seed ${s##*/}"
	done
	./fuzz_$t -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=1024 -artifact_prefix=./crash-$t- \
	    seeds-$t >fuzz-$t.log 2>&1
	st=$?
	ok $st "fuzz_$t: $FUZZ_SECONDS s without a crash"
	[ $st -eq 0 ] || diag "$(grep -E 'ERROR|SUMMARY|abort' fuzz-$t.log | head -10)"
	diag "fuzz_$t: $(grep -E '^Done [0-9]+ runs' fuzz-$t.log | tail -1)"
done
rm -rf /tmp/vesper-fuzz-shard.*
done_testing
