#!/bin/sh
# hf_export.sh: `vckpt export --hf` loads in Hugging Face transformers and
# gives vgen's probabilities (tests/gpu/hf_logits.py), in fp32 and bf16, on
# the device machine (transformers on the GPU, vgen on the CPU).  Skips when
# torch or transformers is missing.
#   sh tests/gpu/hf_export.sh [CHECKPOINT TOKENIZER.bpe]
# Without a checkpoint it trains the small pipeline's tiny model first.
# vgen decodes greedily (temperature 0, no repetition penalty) so that its
# tokens are transformers' argmax.
set -u
src=${VESPER_SRC:-.}
bin=${VESPER_BIN:-$src/build/bin}
work=$(mktemp -d "${TMPDIR:-/tmp}/vesper-hf.XXXXXX")
trap 'rm -rf "$work"' EXIT
if ! python3 -c 'import torch, transformers, tokenizers' 2>/dev/null; then
	echo "1..0 # SKIP torch, transformers or tokenizers not installed"
	exit 0
fi
if [ $# -ge 2 ]; then
	ckpt=$1 tok=$2
else
	make -s -f "$src/pipelines/small.mk" RUN="$work/run" VESPER_BIN="$bin" \
	    train >"$work/train.log" 2>&1 ||
	    { tail -20 "$work/train.log"; exit 1; }
	ckpt=$work/run/ckpt/latest tok=$work/run/tokenizer.bpe
fi
"$bin/vtokenize" export -t "$tok" -o "$work/tokenizer.json" || exit 1
"$bin/vckpt" export -t "$work/tokenizer.json" --hf "$work/hf" "$ckpt" || exit 1
prompt="[Intervenant 1:] Bonjour, je voudrais"
"$bin/vgen" --device cpu -m "$ckpt" -t "$tok" -p "$prompt" -n 48 \
    --temperature 0 --repeat-penalty 1 --confidence="$work/c.jsonl" >"$work/text" || exit 1
status=0
for dt in float32 bfloat16; do
	echo "# transformers in $dt"
	python3 "$src/tests/gpu/hf_logits.py" "$work/hf" "$work/c.jsonl" "$prompt" "$dt" ||
	    status=1
done
# An INT8 checkpoint: vgen runs its INT8 kernels, the export holds the
# dequantised weights in bf16.
"$bin/vquant" -b 8 "$ckpt" "$work/q8" >/dev/null &&
    "$bin/vckpt" export -t "$work/tokenizer.json" --hf "$work/hf8" "$work/q8" &&
    "$bin/vgen" --device cpu -m "$work/q8" -t "$tok" -p "$prompt" -n 48 \
    --temperature 0 --repeat-penalty 1 --confidence="$work/c8.jsonl" >"$work/text8" ||
    exit 1
echo "# an INT8 checkpoint, transformers in float32 on its bf16 export"
python3 "$src/tests/gpu/hf_logits.py" "$work/hf8" "$work/c8.jsonl" "$prompt" float32 loose ||
    status=1
exit $status
