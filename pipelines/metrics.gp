# metrics.gp: draw vtrain's metrics as four panels: loss, perplexity,
# learning rate and throughput against the step.
#
#   gnuplot -e "train='t.tsv'; val='v.tsv'; out='training.png'; \
#       term='png'; name='run/small'" pipelines/metrics.gp
#
# train: step tokens loss ppl lr grad_norm tokens_per_s elapsed (tab-separated)
# val:   step tokens val_loss val_ppl (may be empty: no evaluation yet)
# term:  png, svg or dumb (a text view for a terminal)
# metrics.mk makes both files from metrics.jsonl with jq.

if (!exists("train") || !exists("out")) {
	print "metrics.gp: set train, val, out and term with -e"
	exit status 2
}
if (!exists("val")) val = ''
if (!exists("term")) term = 'png'
if (!exists("name")) name = ''

set datafile separator "\t"
set datafile missing "NaN"

# stats leaves STATS_records undefined when a file has no data at all.
stats train using 1 nooutput
if (!exists("STATS_records") || STATS_records < 1) {
	print sprintf("metrics.gp: %s: no metrics to plot", train)
	exit status 1
}
has_val = 0
if (val ne '') {
	undefine STATS_*
	stats val using 1 nooutput
	has_val = exists("STATS_records") ? (STATS_records > 0) : 0
}

if (term eq 'dumb') {
	# The live view: one panel, the loss trend, sized for a terminal.
	if (exists("color") && color) {
		set terminal dumb size 100,28 ansi
	} else {
		set terminal dumb size 100,28 mono
	}
	set output out
	set title sprintf("%s  loss (*) and validation loss (o)", name)
	set xlabel "step"
	set key off
	if (has_val) {
		plot train using 1:3 with lines lt 1, val using 1:3 with points pt 'o' lt 2
	} else {
		plot train using 1:3 with lines lt 1
	}
	unset output
	exit
}

if (term eq 'svg') {
	set terminal svg size 1200,800 dynamic enhanced font "sans,11"
} else {
	set terminal pngcairo size 1200,800 enhanced font "sans,10"
}
set output out
set grid lc rgb "#dddddd"
set key top right
set format y "%g"
set multiplot layout 2,2 title sprintf("Vesper training: %s", name) font ",13"

# Loss: training (every logged step) and validation (at evaluations).
set title "Cross-entropy loss (nats per token)"
set xlabel "step"
set ylabel "loss"
if (has_val) {
	plot train using 1:3 with lines lw 1.5 lc rgb "#1f77b4" title "training", \
	     val using 1:3 with linespoints lw 2 pt 7 ps 0.7 lc rgb "#d62728" title "validation"
} else {
	plot train using 1:3 with lines lw 1.5 lc rgb "#1f77b4" title "training"
}

# Perplexity spans orders of magnitude early on: a log scale keeps the end
# of training readable.
set title "Perplexity"
set ylabel "perplexity (log scale)"
set logscale y
if (has_val) {
	plot train using 1:4 with lines lw 1.5 lc rgb "#1f77b4" title "training", \
	     val using 1:4 with linespoints lw 2 pt 7 ps 0.7 lc rgb "#d62728" title "validation"
} else {
	plot train using 1:4 with lines lw 1.5 lc rgb "#1f77b4" title "training"
}
unset logscale y

set title "Learning rate"
set ylabel "learning rate"
set format y "%.1e"
plot train using 1:5 with lines lw 1.5 lc rgb "#2ca02c" notitle
set format y "%g"

set title "Throughput"
set ylabel "tokens per second"
# From zero, so that noise between steps does not look like a collapse.
set yrange [0:*]
plot train using 1:7 with lines lw 1.5 lc rgb "#9467bd" notitle
set yrange [*:*]

unset multiplot
unset output
