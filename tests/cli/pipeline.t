#!/bin/sh
# The pipelines: each one's plan (make -n), an interrupted run's plan
# (resume, nothing redone), the plots and the live view from a metrics log,
# and the small pipeline run for real on a reduced budget.
. "${0%/*}/../lib.sh"
P=$VESPER_SRC/pipelines
mk() { make --no-print-directory "$@"; }

# --- The plans --------------------------------------------------------------
for pl in small large tinystories; do
	run 0 mk -n -f "$P/$pl.mk" RUN="$T/plan-$pl"
	for step in 'vtokenize train' 'vtokenize encode' 'vshard ' 'vtrain ' \
	    'vquant ' 'vgen ' 'gnuplot '; do
		like out "$step" "$pl.mk: the plan runs $step"
	done
	like out "vtrain .*--metrics $T/plan-$pl/metrics.jsonl" \
	    "$pl.mk: vtrain writes the metrics the plots read"
	unlike out '--resume' "$pl.mk: a fresh run does not resume"
	[ ! -e "$T/plan-$pl" ]; ok $? "$pl.mk: make -n creates nothing"
done
run 0 mk -n -f "$P/small.mk" RUN="$T/plan-small"
like out 'vtokenize train -v 1024 ' 'small.mk: a 1024-token tokenizer'
like out 'vtrain --device auto --preset tiny ' 'small.mk: the tiny preset, GPU when there is one'
like out "$VESPER_SRC/data/handwritten.txt" 'small.mk: trains on data/'
run 0 mk -n -f "$P/large.mk" RUN="$T/plan-large"
like out 'vfetch .*claire' 'large.mk: fetches Claire'
like out 'vtokenize train -v 32000 ' 'large.mk: a 32,000-token tokenizer'
like out 'vtrain --device cuda --preset large ' 'large.mk: the large preset on the GPU'
run 0 mk -n -f "$P/large.mk" RUN="$T/plan-large" PRESET=medium DEVICE=cpu \
    STEPS=7 VOCAB=4096
like out 'vtrain --device cpu --preset medium --steps 7 ' 'large.mk: variables set the model, device and steps'
like out 'vtokenize train -v 4096 ' 'large.mk: VOCAB sets the tokenizer size'
run 0 mk -n -f "$P/large.mk" RUN="$T/plan-large" LAUNCH='mpirun -np 4'
like out '^mpirun -np 4 .*/vtrain --device cuda ' 'large.mk: LAUNCH starts vtrain data parallel'
run 0 mk -n -f "$P/large.mk" RUN="$T/plan-large" export
like out 'vckpt export .*--hf ' 'large.mk: export writes a Hugging Face directory'
run 0 mk -n -f "$P/tinystories.mk" RUN="$T/plan-ts"
like out 'vfetch .*tinystories' 'tinystories.mk: fetches TinyStories'

run 0 mk -f "$P/small.mk" help STEPS=77
like out '^  STEPS +77$' 'help: the variables with their values'
like out '^  PRESET +tiny$' 'help: small.mk trains tiny'
run 0 mk -f "$P/large.mk" help
like out '^targets: .* export' 'help: large.mk can export'

# An interrupted run: every step up to the shards done, checkpoints there,
# no train.done.  The plan redoes nothing and resumes from ckpt/latest.
R=$T/interrupted
mkdir -p "$R/shards" "$R/ckpt/step-00000500"
ln -s step-00000500 "$R/ckpt/latest"
for f in claire.jsonl tokenizer.bpe corpus.tok shards/manifest.json; do
	touch "$R/$f"
	sleep 0.01 2>/dev/null || sleep 1
done
run 0 mk -n -f "$P/large.mk" RUN="$R"
like out "vtrain .*--resume $R/ckpt/latest" 'large.mk: an interrupted run resumes from ckpt/latest'
unlike out 'vfetch|vtokenize|vshard' 'large.mk: the steps already done are not redone'

# --- large.mk for real, on a local corpus and a model a hundredth of tiny ---
# CORPUS given: nothing to fetch.  Then export, and a longer run that
# resumes from the last checkpoint (large.mk keeps going when options change).
G=$T/large
large() {
	mk -f "$P/large.mk" RUN="$G" CORPUS="$VESPER_SRC/data/handwritten.txt" \
	    VOCAB=512 PRESET=tiny DEVICE=cpu STEPS=8 SEQ=64 BATCH_TOKENS=512 \
	    MICRO_BATCH=8 WARMUP=2 EVAL_EVERY=4 CKPT_EVERY=4 GEN_TOKENS=8 \
	    SHARD_TOKENS=64k VAL_FRACTION=0.05 \
	    TRAIN_FLAGS='--layers 2 --dim 64 --heads 2 --kv-heads 2 --hidden 128' "$@"
}
large > out 2> err
st=$?
missing=$(grep -Eo '^v[a-z]+: .*(not built yet|not implemented)' err | head -n 1)
if [ $st -ne 0 ] && [ -n "$missing" ]; then
	skip 'large.mk runs on a local corpus' "a program is not built yet: $missing"
else
	ok $st 'large.mk runs on a local corpus'
	[ $st -eq 0 ] || diag "$(tail -n 30 err)"
	unlike out 'vfetch' 'large.mk: a corpus given is not fetched'
	like out 'vtrain .*--micro-batch 8' 'large.mk: MICRO_BATCH reaches vtrain'
	like out '^validation loss .* at step 8,' 'large.mk: evaluated at the last step'
	run 0 large export
	[ -s "$G/hf/config.json" ] && [ -s "$G/hf/model.safetensors" ] &&
	    [ -s "$G/hf/tokenizer.json" ]
	ok $? 'large.mk export: config.json, model.safetensors, tokenizer.json'
	run 0 large STEPS=10
	like out "vtrain .*--steps 10 .*--resume $G/ckpt/latest" 'large.mk: more steps resume the run'
	unlike out 'afresh' 'large.mk: nothing is thrown away'
	[ "$(jq -s 'map(.step) | max' "$G/metrics.jsonl")" = 10 ]
	ok $? 'large.mk: the resumed run reaches the new last step'
fi

# --- Plots and the live view from a metrics log -------------------------------
# 120 steps of a loss that falls, evaluations every 20 steps, as vtrain
# writes them (lib/train.c).
awk 'BEGIN {
	for (i = 1; i <= 120; i++) {
		l = 3 + 5 * exp(-i / 30)
		v = (i % 20 == 0) ? sprintf("%.4f", l + 0.2) : "null"
		vp = (i % 20 == 0) ? sprintf("%.4f", exp(l + 0.2)) : "null"
		printf "{\"step\":%d,\"tokens\":%d,\"loss\":%.4f,\"ppl\":%.4f," \
		    "\"val_loss\":%s,\"val_ppl\":%s,\"lr\":%.6g,\"grad_norm\":1.5," \
		    "\"tokens_per_s\":%d,\"elapsed\":%.2f}\n", i, i * 4096, l,
		    exp(l), v, vp, 0.003 * (i < 10 ? i / 10 : 1), 9000 + i, i * 0.5
	}
}' > metrics.jsonl
run 0 mk -f "$P/metrics.mk" RUN="$T/m" METRICS=metrics.jsonl plot
[ "$(head -c 8 "$T/m/plots/training.png" | od -An -tx1 | tr -d ' \n')" = \
    89504e470d0a1a0a ]
ok $? 'plot: training.png is a PNG'
like "$T/m/plots/training.svg" '<svg' 'plot: training.svg is an SVG'
like "$T/m/plots/training.svg" 'Perplexity' 'plot: the SVG has the perplexity panel'
[ "$(wc -l < "$T/m/plots/train.tsv")" -eq 120 ]; ok $? 'plot: every step plotted'
[ "$(wc -l < "$T/m/plots/val.tsv")" -eq 6 ]; ok $? 'plot: every evaluation plotted'
like out "plots: $T/m/plots/training.png" 'plot: says where the plots are'

run 0 sh "$P/watch.sh" -1 -s 200 -t demo metrics.jsonl
like out '^demo  step 120/200  loss 3\.[0-9]+  val 3\.[0-9]+ \(step 120\)  9120 tok/s  60s  ETA 0m40s' \
    'watch: step, loss, validation loss, speed and ETA'
like out 'validation loss' 'watch: draws the loss trend'
like out '^ +8 \+--' 'watch: the loss axis starts near the first loss'

# A resumed run logs some steps twice: each step is plotted once.
sed -n '90,110p' metrics.jsonl >> metrics.jsonl
run 0 mk -f "$P/metrics.mk" RUN="$T/m" METRICS=metrics.jsonl plot
[ "$(wc -l < "$T/m/plots/train.tsv")" -eq 120 ]; ok $? 'plot: steps logged twice are plotted once'
cut -f1 "$T/m/plots/train.tsv" > steps
sort -n steps | cmp -s - steps; ok $? 'plot: in step order'

# A line cut short at the end (a run killed mid-write) is left out.
head -n 50 metrics.jsonl > cut.jsonl
printf '{"step":51,"tokens":20' >> cut.jsonl
run 0 mk -f "$P/metrics.mk" RUN="$T/cut" METRICS=cut.jsonl plot
[ "$(wc -l < "$T/cut/plots/train.tsv")" -eq 50 ]; ok $? 'plot: a cut last line is left out'

# Hostile logs: a clear error naming the file and line, no image left.
for bad in 'not json at all' '{"step":"7","tokens":1,"loss":2}' '[1,2,3]' \
    '{"step":7,"tokens":1,"loss":"NaN"}' '{"tokens":1,"loss":2}'; do
	{ head -n 6 metrics.jsonl; echo "$bad"; tail -n 3 metrics.jsonl; } > bad.jsonl
	rm -rf "$T/bad"
	run 2 mk -f "$P/metrics.mk" RUN="$T/bad" METRICS=bad.jsonl plot
	like err "plot: bad.jsonl: .*line 7" "plot: '$bad' is reported with its file and line"
	[ ! -e "$T/bad/plots/training.png" ] && [ ! -e "$T/bad/plots/train.tsv" ]
	ok $? "plot: '$bad' leaves no plot behind"
done
: > empty.jsonl
run 2 mk -f "$P/metrics.mk" RUN="$T/empty" METRICS=empty.jsonl plot
like err 'no metrics to plot' 'plot: an empty log is refused'
[ ! -e "$T/empty/plots/training.png" ]; ok $? 'plot: an empty log leaves no image'
run 2 mk -f "$P/metrics.mk" RUN="$T/none" METRICS=no-such.jsonl plot
like err 'no-such.jsonl' 'plot: a missing log is named'

run 0 sh "$P/watch.sh" -1 no-such.jsonl
like out 'waiting for no-such.jsonl' 'watch: waits for a log that is not there yet'
run 2 sh "$P/watch.sh" -n x metrics.jsonl
like err '^usage: watch.sh' 'watch: bad usage'

# --- The small pipeline, for real ----------------------------------------------
# A reduced budget (the hand-written part of data/, a 512-token vocabulary,
# 12 steps of a two-layer model a quarter of `tiny`) keeps it to seconds on
# a busy machine; `make demo` runs the full one.
S=$T/small
small() {
	mk -f "$P/small.mk" RUN="$S" CORPUS="$VESPER_SRC/data/handwritten.txt" \
	    VOCAB=512 STEPS=12 SEQ=64 BATCH_TOKENS=512 WARMUP=2 EVAL_EVERY=6 \
	    CKPT_EVERY=6 GEN_TOKENS=16 \
	    TRAIN_FLAGS='--layers 2 --dim 64 --heads 2 --kv-heads 2 --hidden 128' "$@"
}
small > out 2> err
st=$?
missing=$(grep -Eo '^v[a-z]+: .*(not built yet|not implemented)' err | head -n 1)
if [ $st -ne 0 ] && [ -n "$missing" ]; then
	skip 'small.mk runs from data/ to generated text' "a program is not built yet: $missing"
else
	ok $st 'small.mk runs from data/ to generated text'
	[ $st -eq 0 ] || diag "$(tail -n 30 err)"
	like out '^== evaluation' 'small.mk: ends with the evaluation'
	like out "^$S  step 12/12  loss [0-9.]+  val [0-9.]+ \(step 12\)" 'small.mk: the last step summed up'
	like out 'loss \(\*\) and validation loss \(o\)' 'small.mk: the loss curve in text'
	like out '^validation loss [0-9.]+ \(perplexity [0-9.]+\) at step 12' \
	    'small.mk: the validation loss at the last step'
	like out "training curves: $S/plots/training.png" 'small.mk: says where the loss plot is'
	[ -s "$S/sample.txt" ]; ok $? 'small.mk: generated text'
	run 0 vshard verify "$S/shards"
	run 0 vckpt verify "$S/ckpt/latest"
	[ "$(jq -s 'map(.step) | max' "$S/metrics.jsonl")" = 12 ]
	ok $? 'small.mk: the metrics reach the last step'
	[ -s "$S/plots/training.png" ]; ok $? 'small.mk: the loss plot'

	# Again: everything is up to date, nothing is redone.
	small > out 2> err
	ok $? 'small.mk: a second run succeeds'
	unlike out 'vtokenize|vshard|vtrain|vquant|vgen' 'small.mk: a second run redoes nothing'

	# Another prompt (with an apostrophe): new text, no training.
	small PROMPT="[Intervenant 1:] Je voudrais de l'eau" > out 2> err
	ok $? 'small.mk: another prompt'
	like out "^\[Intervenant 1:\] Je voudrais de l'eau" 'small.mk: the new prompt, quoted safely'
	like out 'vgen ' 'small.mk: another prompt generates again'
	unlike out 'vtrain|vquant' 'small.mk: another prompt does not train again'

	# An interrupted training (no train.done, checkpoints there) resumes.
	rm "$S/train.done"
	small > out 2> err
	ok $? 'small.mk: an interrupted training resumes'
	like out "--resume $S/ckpt/latest" 'small.mk: from ckpt/latest'

	# Other options: the demo starts afresh.
	small STEPS=10 > out 2> err
	ok $? 'small.mk: new options train again'
	like out 'starting afresh' 'small.mk: other options start afresh'
	unlike out '--resume' 'small.mk: without resuming'
	[ "$(jq -s 'map(.step) | max' "$S/metrics.jsonl")" = 10 ]
	ok $? 'small.mk: the new run has its own metrics'
fi
done_testing
