#!/bin/sh
# deps.sh: install the Debian packages (and the Python packages the tests
# compare against) that Vesper needs.  Idempotent; prints nothing when
# everything is there.  Run by `make deps`, which make, make test and make
# demo call first.
set -u

# Build: compiler, libraries.  Tests and tools: prove (perl), mandoc,
# zstd, curl and bsdtar/7z to make fixture archives, mpirun, gnuplot and jq (the pipelines' plots).  clang: libFuzzer for make fuzz.
DEBS="build-essential pkg-config libzstd-dev libarchive-dev libutf8proc-dev
libcurl4-openssl-dev libjansson-dev libopenblas-dev libopenblas0-openmp libedit-dev
libopenmpi-dev openmpi-bin libssl-dev libxxhash-dev mandoc perl zstd curl libarchive-tools
p7zip-full gnuplot-nox jq python3 python3-pip clang"
# Peers the tests and benchmarks check Vesper against (never used by the
# programs themselves).
PIPS="numpy safetensors tokenizers tiktoken gguf"

missing=""
for p in $DEBS; do
	s=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)
	case "$s" in
	*" installed") ;;
	*) missing="$missing $p" ;;
	esac
done
# python3 from elsewhere (pyenv, a venv) counts as present.
if command -v python3 >/dev/null 2>&1; then
	missing=$(echo "$missing" | sed 's/ python3-pip//; s/ python3\b//')
fi
missing=$(echo "$missing" | sed 's/^ *//')

if [ -n "$missing" ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "make deps: missing Debian packages: $missing" >&2
		echo "make deps: run as root, or: sudo apt-get install -y $missing" >&2
		exit 1
	fi
	echo "make deps: installing $missing" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2 || { echo "make deps: apt-get update failed" >&2; exit 1; }
	# shellcheck disable=SC2086
	apt-get install -y -qq $missing >&2 ||
		{ echo "make deps: apt-get install failed" >&2; exit 1; }
fi

if command -v python3 >/dev/null 2>&1; then
	need=""
	for m in $PIPS; do
		python3 -c "import $m" 2>/dev/null || need="$need $m"
	done
	if [ -n "$need" ]; then
		echo "make deps: installing Python packages for the tests:$need" >&2
		# shellcheck disable=SC2086
		python3 -m pip install -q $need >&2 2>/dev/null ||
		python3 -m pip install -q --break-system-packages $need >&2 ||
			echo "make deps: pip failed; the tests that compare with$need will be skipped" >&2
	fi
fi
exit 0
