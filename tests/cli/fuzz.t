#!/bin/sh
# A short libFuzzer run of each parser's fuzz target (make fuzz runs them
# longer).  Skipped where clang cannot build a libFuzzer target.
. "${0%/*}/../lib.sh"

FUZZ_CC=${FUZZ_CC:-clang}
printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' > probe.c
if ! "$FUZZ_CC" -fsanitize=fuzzer,address -o probe probe.c >/dev/null 2>&1; then
	skip "make fuzz" "$FUZZ_CC has no libFuzzer here"
	done_testing
	exit 0
fi
: "${VESPER_BUILD:?run the tests through make test}"
make -s -C "$VESPER_SRC" B="$VESPER_BUILD" fuzz-build >build.log 2>&1
ok $? "the fuzz targets build"
# One target per parser: safetensors, GGUF, shards and manifests, the
# document splitter of vfetch, the tokenizer file and text.
targets="safetensors gguf shard docs tok"
FUZZ_TOK="$VESPER_SRC/tests/fuzz/corpus/tok/tokenizer"
export FUZZ_TOK
for t in $targets; do
	# Each seed is a valid input: the target runs it without complaint.
	for s in "$VESPER_SRC/tests/fuzz/corpus/$t"/*; do
		"$VESPER_BUILD/fuzz/fuzz_$t" "$s" >log 2>&1
		ok $? "fuzz_$t runs the seed ${s##*/}"
	done
done
make -s -C "$VESPER_SRC" B="$VESPER_BUILD" fuzz FUZZ_TIME="${FUZZ_TIME:-5}" >fuzz.log 2>&1
st=$?
ok $st "make fuzz: ${FUZZ_TIME:-5} s per target, no crash"
[ $st -eq 0 ] || diag "$(grep -E 'ERROR|SUMMARY|crash' fuzz.log | head -20)"
grep -c 'DONE' fuzz.log > done.count
[ "$(cat done.count)" -eq 5 ]; ok $? "all five targets ran to the end"
grep -E '^Done [0-9]+ runs' fuzz.log | sed 's/^/# /'
done_testing
