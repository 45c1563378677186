#!/bin/sh
# fetch.sh: vfetch's download against curl on loopback, same file, same
# server (tests/fetch/hubserver.py, which sends files with sendfile).
#   sh bench/fetch.sh [megabytes]      (default 256)
# Three measures, each the best of three runs:
#   curl -o FILE                    the reference
#   http_download (bench/fetch_bench.c): vfetch's download, hashed on the fly
#                                   and verified before the rename
#   vfetch --sha256 URL > /dev/null  the whole command: download, verify, and
#                                   cut the text into JSON Lines documents
# The issue asks for vfetch >= 0.8 x curl.  Timings are noisy on a shared
# machine.
set -eu
B=${B:-build}
cd "$(dirname "$0")/.."
make --no-print-directory B="$B" "$B/bin/vfetch" "$B/lib/libvesper.a" >/dev/null
mkdir -p "$B/bench"
# shellcheck disable=SC2046
cc -O2 -g -std=c11 -Wall -Wextra -D_DEFAULT_SOURCE -o "$B/bench/fetch_bench" \
    bench/fetch_bench.c "$B/lib/libvesper.a" \
    $(pkg-config --libs libcurl libcrypto jansson) -lm
MB=${1:-256}
W=$(mktemp -d "${TMPDIR:-/tmp}/vesper-bench-fetch.XXXXXX")
srv=""
trap '[ -n "$srv" ] && kill $srv; rm -rf "$W"' EXIT INT TERM

mkdir -p "$W/root"
python3 - "$MB" "$W/root/big.txt" <<'PY'
import random, sys
mb, path = int(sys.argv[1]), sys.argv[2]
rng = random.Random(1)
words = ("bonjour merci oui non alors donc parce que il elle nous vous ils "
         "maison travail demain hier toujours jamais peut-être très bien "
         "député séance amendement commission été à où ça").split()
with open(path, "w", encoding="utf-8") as f:
    size = 0
    while size < mb * 1000000:
        para = "\n".join("[speaker%03d:] " % rng.randrange(1, 9) +
                         " ".join(rng.choice(words) for _ in range(rng.randrange(5, 40)))
                         for _ in range(rng.randrange(2, 12))) + "\n\n"
        size += len(para.encode())
        f.write(para)
PY
python3 tests/fetch/hubserver.py --root "$W/root" --portfile "$W/ports" --log /dev/null &
srv=$!
while [ ! -s "$W/ports" ]; do sleep 0.05; done
read -r _ cp < "$W/ports"
URL="http://127.0.0.1:$cp/cdn/big.txt"
SIZE=$(wc -c < "$W/root/big.txt")
SUM=$(sha256sum "$W/root/big.txt" | cut -c1-64)

now() { python3 -c 'import time; print(time.monotonic())'; }
min() { awk -v a="$1" -v b="$2" 'BEGIN { print (a == "" || b < a) ? b : a }'; }
tc=""; td=""; tv=""
for i in 1 2 3; do
	rm -rf "$W/c" "$W/out"
	t0=$(now); curl -s -o "$W/out" "$URL"; t1=$(now)
	tc=$(min "$tc" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
	rm -f "$W/out"
	td=$(min "$td" "$("$B/bench/fetch_bench" "$URL" "$W/out" "$SIZE" "$SUM")")
	t0=$(now); "$B/bin/vfetch" --cache "$W/c" --sha256 "$SUM" "$URL" > /dev/null; t1=$(now)
	tv=$(min "$tv" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')")
done
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1 /proc/loadavg)"
awk -v n="$SIZE" -v tc="$tc" -v td="$td" -v tv="$tv" 'BEGIN {
	printf "file: %d bytes over loopback\n", n
	printf "| | seconds | MB/s | speed vs curl |\n|---|---|---|---|\n"
	printf "| curl -o | %.3f | %.0f | 1.00 |\n", tc, n / tc / 1e6
	printf "| vfetch download + SHA-256 | %.3f | %.0f | %.2f |\n", td, n / td / 1e6, tc / td
	printf "| vfetch URL > /dev/null (+ JSON Lines) | %.3f | %.0f | %.2f |\n", tv, n / tv / 1e6, tc / tv
}'
