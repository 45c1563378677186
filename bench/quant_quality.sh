#!/bin/sh
# quant_quality.sh: what INT8 and INT4 cost in validation perplexity.
#   sh bench/quant_quality.sh CHECKPOINT SHARDS [TOKENS]
# The bf16 copy of CHECKPOINT is the reference (the bar: INT8
# within 1% of bf16, INT4 within 5%); each scheme quantises that copy and
# `vquant -e` measures both on the same validation windows.  Prints a
# Markdown table.
set -eu
ckpt=$1 shards=$2 tokens=${3:-16384}
bin=${VESPER_BIN:-build/bin}
work=$(mktemp -d "${TMPDIR:-/tmp}/vesper-qq.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$bin/vckpt" convert -d bf16 "$ckpt" "$work/bf16.safetensors"
bytes16=$(wc -c < "$work/bf16.safetensors")
echo "| scheme | size (MB) | bf16 perplexity | quantised perplexity | change | weight rel. RMS error (mean) |"
echo "|---|---|---|---|---|---|"
for s in "8" "4 -g 128" "4 -g 64" "4 -g 32"; do
	# shellcheck disable=SC2086
	"$bin/vquant" -b $s -e "$shards" -n "$tokens" "$work/bf16.safetensors" \
	    "$work/q.safetensors" > "$work/report"
	name=$(echo "$s" | sed 's/^8$/int8/; s/^4 -g \(.*\)/int4 g\1/')
	size=$(wc -c < "$work/q.safetensors")
	err=$(sed -n 's/.*mean \([0-9.]*\),.*/\1/p' "$work/report")
	sed -n 's/.*tokens: \([0-9.]*\) -> \([0-9.]*\) (\(.*\)).*/\1 \2 \3/p' "$work/report" |
	    awk -v n="$name" -v s="$size" -v e="$err" -v b="$bytes16" \
	    '{ printf "| %s | %.2f (bf16 %.2f) | %.3f | %.3f | %s | %s |\n", n, s / 1e6, b / 1e6, $1, $2, $3, e }'
done
