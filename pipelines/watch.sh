#!/bin/sh
# watch.sh: a live view of a training run in the terminal, from vtrain's
# metrics log: the last step's numbers, the ETA and the loss trend as a text
# plot, redrawn every few seconds.  Run beside the training, e.g.
#   make -f pipelines/small.mk watch
#
# usage: watch.sh [-1] [-n seconds] [-s total-steps] [-t title] metrics.jsonl
#   -1  draw one frame and exit (for tests and scripts)
set -u
here=$(dirname "$0")
once=0 every=5 steps=0 title=
usage() {
	echo "usage: watch.sh [-1] [-n seconds] [-s total-steps] [-t title] metrics.jsonl" >&2
	exit 2
}
while getopts 1n:s:t: opt; do
	case $opt in
	1) once=1 ;;
	n) every=$OPTARG ;;
	s) steps=$OPTARG ;;
	t) title=$OPTARG ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[ $# -eq 1 ] || usage
metrics=$1
case $every in '' | *[!0-9]*) usage ;; esac
case $steps in '' | *[!0-9]*) usage ;; esac
[ -n "$title" ] || title=$metrics

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vesper-watch.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

frame() {
	if [ ! -s "$metrics" ]; then
		echo "watch: waiting for $metrics"
		return 0
	fi
	# A line being written when we read is cut short: keep whole lines only
	# (vtrain writes and flushes one whole line at a time).
	sed '$!b; /}$/!d' "$metrics" > "$tmp/m.jsonl"
	jq -r '[.step, .tokens, .loss, .ppl, .lr, .grad_norm, .tokens_per_s,
	    .elapsed] | map(. // "NaN") | @tsv' "$tmp/m.jsonl" > "$tmp/t.tsv" ||
		{ echo "watch: $metrics: not vtrain metrics" >&2; return 1; }
	jq -r 'select(.val_loss != null) | [.step, .tokens, .val_loss,
	    .val_ppl] | @tsv' "$tmp/m.jsonl" > "$tmp/v.tsv" || return 1
	# The summary line: step, loss, the latest validation loss, speed, ETA.
	awk -F '\t' -v steps="$steps" -v title="$title" -v vfile="$tmp/v.tsv" '
	    FILENAME == vfile { vstep = $1; vloss = $3; next }
	    { step = $1; loss = $3; tps = $7; el = $8; n++ }
	    END {
		if (n == 0) { print "watch: no metrics yet"; exit }
		line = sprintf("%s  step %d", title, step)
		if (steps > 0) line = line sprintf("/%d", steps)
		line = line sprintf("  loss %.4f", loss)
		if (vloss != "") line = line sprintf("  val %.4f (step %d)", vloss, vstep)
		line = line sprintf("  %.0f tok/s  %.0fs", tps, el)
		if (steps > 0 && step > 0 && step < steps) {
			eta = el / step * (steps - step)
			line = line sprintf("  ETA %dm%02ds", eta / 60, eta % 60)
		}
		print line
	    }' "$tmp/v.tsv" "$tmp/t.tsv"
	v=
	[ -s "$tmp/v.tsv" ] && v=$tmp/v.tsv
	if [ "$(wc -l < "$tmp/t.tsv")" -ge 2 ]; then
		# Through a file: gnuplot reopening /dev/stdout would write over
		# the summary when stdout is a file.
		gnuplot -e "train='$tmp/t.tsv'; val='$v'; out='$tmp/plot.txt'; term='dumb'; color=$color; name='$title'" \
		    "$here/metrics.gp" 2>/dev/null && cat "$tmp/plot.txt"
	fi
}

color=0
[ -t 1 ] && color=1
if [ "$once" -eq 1 ]; then
	frame
	exit $?
fi
while :; do
	out=$(frame)
	# Clear and redraw only on a terminal; a log gets one frame a period.
	[ -t 1 ] && printf '\033[H\033[2J'
	printf '%s\n' "$out"
	sleep "$every"
done
