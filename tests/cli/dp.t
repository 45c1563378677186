#!/bin/sh
# vtrain data parallel on the CPU, started by mpirun: 2 and 3 ranks give the
# weights and moments of one process with the same global batch, byte for
# byte; rank 0 alone writes; a checkpoint of 2 ranks resumes on 1 and one
# of 1 on 2; an uneven batch, a bad launcher environment and a missing MPI
# shim are clear errors; and test_dp's collectives run on 3 ranks.
. "${0%/*}/../lib.sh"

OMP_WAIT_POLICY=passive
export OMP_WAIT_POLICY
SHIM="$VESPER_BUILD/lib/vesper/libvesper_mpi.so"
# As root (CI containers) Open MPI wants --allow-run-as-root; two cores
# run three ranks with --oversubscribe.
MPIRUN="mpirun --allow-run-as-root --oversubscribe"
# Open MPI keeps allocations to the end of the process; LeakSanitizer
# would take them for vtrain's.
ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0"

if ! command -v mpirun >/dev/null 2>&1 || [ ! -f "$SHIM" ]; then
	skip "data parallel over MPI" "no mpirun or no $SHIM (Open MPI's mpicc)"
	done_testing
	exit
fi

cat > mkstream.py <<'PY'
import random, struct, sys
n, vocab, seed = (int(a) for a in sys.argv[1:4])
rng = random.Random(seed)
out = sys.stdout.buffer
out.write(b"VTOK" + struct.pack("<HHII", 1, 2, vocab, 0) + bytes([7]) * 32)
total = 0
for i in range(n):
    k, a, d = rng.randrange(40, 200), rng.randrange(vocab), rng.randrange(1, 4)
    ids = [(a + d * j) % vocab for j in range(k)]
    out.write(struct.pack("<I%dH" % k, k, *ids))
    total += k
out.write(struct.pack("<IQQ", 0xFFFFFFFF, n, total))
PY
python3 mkstream.py 200 64 1 > s.tok
vshard --shard-tokens 4000 --val-fraction 0.1 -o shards s.tok 2>/dev/null

# The largest difference between two checkpoints' weights, printed.
cat > worst.py <<'PY'
import json, struct, sys
def load(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    h.pop("__metadata__", None)
    out = {}
    for k, v in h.items():
        lo, hi = v["data_offsets"]
        raw = b[8 + n + lo:8 + n + hi]
        out[k] = struct.unpack("<%df" % (len(raw) // 4), raw)
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
assert a.keys() == b.keys()
print("%.3g" % max(abs(x - y) for k in a for x, y in zip(a[k], b[k])))
PY
# worst DIR1 DIR2 DESC: the weights of two runs equal, the worst difference
# in the test's output either way.
worst() {
	w=$(python3 worst.py "$1/latest/model.safetensors" \
	    "$2/latest/model.safetensors" 2>&1)
	diag "$3: worst weight difference $w"
	same "$1/latest/model.safetensors" "$2/latest/model.safetensors" "$3"
}

M="--device cpu -d shards --layers 2 --dim 32 --heads 4 --kv-heads 2 --hidden 64 --ctx 32"
# 4 micro-batches of 2 x 16 tokens a step.
R="--micro-batch 2 --seq 16 --batch-tokens 128 --lr 3e-3 --steps 8 --eval-every 4 --log-every 2"

run 0 vtrain $M $R -o one
run 0 $MPIRUN -np 2 vtrain $M $R -o two
like err 'data parallel: 2 ranks \(mpirun, .*\), 2 micro-batches each' \
    "the ranks are reported"
[ "$(grep -c 'cpu: 26784 parameters' err)" = 1 ]
ok $? "rank 0 alone describes the run"
unlike err '^vtrain\[1\]' "rank 1 has nothing to say"
worst one two "2 ranks, 2 micro-batches each: the weights of 1 process, byte for byte"
same one/latest/optimizer.bin two/latest/optimizer.bin "and its moments"
for d in one two; do
	sed 's/"tokens_per_s".*//' $d/metrics.jsonl > $d.losses
done
same one.losses two.losses "the same metrics (losses, validation, gradient norms)"
[ "$(wc -l < two/metrics.jsonl)" = 4 ]
ok $? "one metrics file, each line once"

run 0 $MPIRUN -np 4 vtrain $M $R -o four
worst one four "4 ranks, 1 micro-batch each: the same weights"

# Odd ranks, and micro-batches that are not a power of two.
R3="--micro-batch 2 --seq 16 --batch-tokens 192 --lr 3e-3 --steps 4 --eval-every 0"
run 0 vtrain $M $R3 -o one3
run 0 $MPIRUN -np 3 vtrain $M $R3 -o three
worst one3 three "3 ranks: the weights of 1 process"

# ZeRO-1 (--zero): the moments in slices, one per rank; with clipping at
# work every step and checkpoints on the way, the weights and moments of
# the plain run, on 1, 2 and 3 ranks.  A NaN rolled back on 2 ranks with
# ZeRO-1 ends where 1 process rolled back ends.
Z="--micro-batch 2 --seq 16 --batch-tokens 384 --lr 3e-3 --steps 10 --eval-every 5 --ckpt-every 4 --clip 0.3"
run 0 vtrain $M $Z -o zplain
run 0 vtrain $M $Z --zero -o zone
worst zplain zone "ZeRO-1 on 1 process: the weights of the plain run"
run 0 $MPIRUN -np 2 vtrain $M $Z --zero -o ztwo
like err 'ZeRO-1: the Velvet moments in 2 slices' "ZeRO-1 is reported"
worst zplain ztwo "ZeRO-1 on 2 ranks: the weights of the plain run"
same zplain/latest/optimizer.bin ztwo/latest/optimizer.bin \
    "and the moments gathered into its checkpoint"
same zplain/step-00000008/optimizer.bin ztwo/step-00000008/optimizer.bin \
    "and those of a checkpoint on the way"
run 0 $MPIRUN -np 3 vtrain $M $Z --zero -o zthree
worst zplain zthree "ZeRO-1 on 3 ranks: the weights of the plain run"
run 0 env VTRAIN_FAULT_NAN_STEP=6 vtrain $M $Z --on-nan rollback -o nan1
run 0 $MPIRUN -np 2 -x VTRAIN_FAULT_NAN_STEP=6 vtrain $M $Z --zero \
    --on-nan rollback -o nan2
[ "$(grep -c 'not finite; back to step 4' err)" = 1 ]
ok $? "the rollback is said once, by rank 0"
worst nan1 nan2 "a rollback on 2 ranks with ZeRO-1: the weights of 1 process's"

# Resume on another number of ranks: 2 ranks to step 4 then 1 to 8, and
# 1 to step 4 then 2 to 8, both the uninterrupted run's weights.
run 0 $MPIRUN -np 2 vtrain $M $R --stop-at 4 -o two-one
[ "$(readlink two-one/latest)" = step-00000004 ] &&
    [ "$(ls two-one | grep -c '^step-')" = 1 ]
ok $? "2 ranks stop at step 4: one checkpoint, written once"
run 0 vtrain --device cpu -d shards -o two-one --resume two-one/latest
like err 'steps 5 to 8' "1 process resumes it"
worst one two-one "2 ranks then 1: the uninterrupted run's weights"
same one/latest/optimizer.bin two-one/latest/optimizer.bin "and moments"
run 0 vtrain $M $R --stop-at 4 -o one-two
run 0 $MPIRUN -np 2 vtrain --device cpu -d shards -o one-two \
    --resume one-two/latest
worst one one-two "1 process then 2 ranks: the uninterrupted run's weights"

# SIGTERM to mpirun reaches every rank: all stop after the same step, rank
# 0 writes its checkpoint, and the run resumes on 1 process as if nothing
# had happened (a constant rate, so that --steps does not matter).
L="$M --micro-batch 2 --seq 16 --batch-tokens 128 --schedule constant --warmup 0 --eval-every 0 --log-every 5 --steps 1000000"
$MPIRUN -np 2 vtrain $L -o sig >sig.out 2>sig.err &
pid=$!
i=0
while [ "$i" -lt 600 ] && [ "$(cat sig/metrics.jsonl 2>/dev/null | wc -l)" -lt 2 ]; do
	sleep 0.1
	i=$((i + 1))
done
kill -TERM "$pid"
wait "$pid"
ok $(( $? != 1 )) "SIGTERM to mpirun: exit 1"
n=$(sed -n 's/^vtrain: Terminated at step \([0-9]*\); checkpoint written.*/\1/p' sig.err)
[ -n "$n" ] && [ "$(readlink sig/latest)" = "$(printf 'step-%08d' "$n")" ]
ok $? "every rank stopped after step ${n:-?}, and its checkpoint is latest"
[ -n "$n" ] || diag "$(head -c 1000 sig.err)"
run 0 vtrain --device cpu -d shards -o sig --resume sig/latest --stop-at $(( ${n:-1} + 3 ))
run 0 vtrain $L --stop-at $(( ${n:-1} + 3 )) -o nosig
worst nosig sig "stopped on 2 ranks, resumed on 1: the weights of a run never stopped"

# Errors: every rank stops, none hangs (mpirun is given a deadline).
run 1 timeout 60 $MPIRUN -np 2 vtrain $M $R --batch-tokens 96 -o bad
like err 'batch-tokens 96 is 3 micro-batches of 32 tokens, which 2 ranks cannot share' \
    "3 micro-batches do not split over 2 ranks"
[ ! -e bad/latest ]
ok $? "and nothing is written"
run 1 env OMPI_COMM_WORLD_RANK=x OMPI_COMM_WORLD_SIZE=2 vtrain $M $R -o bad
like err "OMPI_COMM_WORLD_RANK='x' is not a rank" "a hostile launcher variable"
run 1 env SLURM_PROCID=2 SLURM_NTASKS=2 vtrain $M $R -o bad
like err 'SLURM_PROCID=2 is not a rank of SLURM_NTASKS=2' "a rank outside the size"
run 1 env VESPER_MPI_LIB=/nonexistent/libvesper_mpi.so \
    OMPI_COMM_WORLD_RANK=0 OMPI_COMM_WORLD_SIZE=2 vtrain $M $R -o bad
like err 'no MPI support \(/nonexistent/libvesper_mpi.so not found' \
    "several ranks and no MPI shim: said so"
run 1 timeout 60 env SLURM_PROCID=0 SLURM_NTASKS=2 vtrain $M $R -o bad
like err 'srun says rank 0 of 2, MPI \(.*\) says 0 of 1: the launcher and the MPI' \
    "Slurm's variables without srun's processes: a mismatch, not a hang"
run 0 env SLURM_PROCID=0 SLURM_NTASKS=1 vtrain $M $R --steps 2 -o slurm1
unlike err 'data parallel' "srun with one task: a plain run, no MPI"

# The collectives themselves, on 3 ranks (rank 0 speaks TAP).
run 0 $MPIRUN -np 3 "$VESPER_BUILD/tests/test_dp.t"
like out '^1\.\.17$' "test_dp on 3 ranks: every check ran"
unlike out '^not ok' "test_dp on 3 ranks: the sums in rank order, bit for bit"

done_testing
