#!/bin/sh
# shard.sh: vshard (write + verify) against zstd -3 on one core, on the
# same token stream.
#   sh bench/shard.sh [tokens]        (default 30000000)
# The stream has Zipf-distributed ids (vocabulary 32000, like text) in
# documents of 50 to 3000 tokens, written to /tmp and removed after.
# Prints the best of three runs of each and the ratio of speeds; the issue
# asks for vshard >= 0.8 x zstd.  Timings are noisy on a shared machine.
set -eu
B=${B:-build}
cd "$(dirname "$0")/.."
make --no-print-directory B="$B" "$B/bin/vshard" >/dev/null
N=${1:-30000000}
W=$(mktemp -d "${TMPDIR:-/tmp}/vesper-bench-shard.XXXXXX")
trap 'rm -rf "$W"' EXIT INT TERM

python3 - "$N" "$W/s.tok" <<'PY'
import struct, sys
import numpy as np
n, path = int(sys.argv[1]), sys.argv[2]
rng = np.random.default_rng(1)
with open(path, "wb") as f:
    f.write(b"VTOK" + struct.pack("<HHII", 1, 2, 32000, 0) + bytes(32))
    done = docs = 0
    while done < n:
        lens = rng.integers(50, 3000, size=4096)
        ids = (rng.zipf(1.2, size=int(lens.sum())) - 1) % 32000
        ids = ids.astype("<u2")
        at = 0
        for k in lens:
            k = int(min(k, n - done))
            if k <= 0:
                break
            f.write(struct.pack("<I", k))
            f.write(ids[at:at + k].tobytes())
            at += k
            done += k
            docs += 1
    f.write(struct.pack("<IQQ", 0xFFFFFFFF, docs, done))
PY

# best CMD...: "wall cpu" seconds, the best of three runs of each (cpu is
# user + system time of the command, which a busy machine disturbs less).
best() {
	python3 - "$@" <<'PY'
import resource, subprocess, sys, time
walls, cpus = [], []
for _ in range(3):
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    walls.append(time.monotonic() - t0)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpus.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
print("%.4f %.4f" % (min(walls), min(cpus)))
PY
}

bytes=$(wc -c < "$W/s.tok")
set -- $(best zstd -3 -T1 -q -f -o "$W/s.zst" "$W/s.tok"); tz=$1 cz=$2
set -- $(best "$B/bin/vshard" -o "$W/d" "$W/s.tok"); tw=$1 cw=$2
set -- $(best "$B/bin/vshard" verify "$W/d"); tv=$1 cv=$2
zs=$(wc -c < "$W/s.zst")
vs=$(du -cb "$W"/d/*.vsh | tail -1 | cut -f1)
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1 /proc/loadavg)"
echo "stream: $N tokens, $bytes bytes"
awk -v n="$bytes" -v tz="$tz" -v tw="$tw" -v tv="$tv" -v cz="$cz" -v cw="$cw" -v cv="$cv" \
    -v zs="$zs" -v vs="$vs" 'BEGIN {
	printf "| | wall s | CPU s | MB/s (wall) | output bytes |\n|---|---|---|---|---|\n"
	printf "| zstd -3 -T1 | %.3f | %.3f | %.0f | %d |\n", tz, cz, n / tz / 1e6, zs
	printf "| vshard write | %.3f | %.3f | %.0f | %d |\n", tw, cw, n / tw / 1e6, vs
	printf "| vshard verify | %.3f | %.3f | %.0f | |\n", tv, cv, n / tv / 1e6
	printf "| vshard write + verify | %.3f | %.3f | %.0f | |\n", tw + tv, cw + cv, n / (tw + tv) / 1e6
	printf "speed of vshard write+verify / zstd -3: %.2f by wall time, %.2f by CPU time (target >= 0.80)\n", tz / (tw + tv), cz / (cw + cv)
}'
