#!/bin/sh
# tokenize.sh: vtokenize against tiktoken and Hugging Face tokenizers on
# tens of MB of real French text, side by side in one run (see
# bench/tokenize.py for what is measured and how).
#   sh bench/tokenize.sh [MB-for-training]        (default 100)
# The text is Debian's French documentation: the manual pages of
# manpages-fr and manpages-fr-dev rendered with mandoc, and the HTML of
# gimp-help-fr and debian-handbook as text; the packages are installed
# when missing (as root).  The corpus is kept in $VESPER_BENCH_DIR
# (default /tmp/vesper-bench) so that later runs skip building it.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dir=${VESPER_BENCH_DIR:-/tmp/vesper-bench}
mkdir -p "$dir"
need=""
for p in manpages-fr manpages-fr-dev gimp-help-fr debian-handbook; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q " installed" ||
		need="$need $p"
done
if [ -n "$need" ]; then
	echo "tokenize.sh: installing$need" >&2
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >&2
fi
[ -s "$dir/corpus.txt" ] || python3 "$here/tokenize_corpus.py" "$dir/corpus.txt"
make -C "$here/.." build >&2
python3 "$here/tokenize.py" "$dir/corpus.txt" \
	--vtokenize "$here/../build/bin/vtokenize" --train-mb "${1:-100}"
