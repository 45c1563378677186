# metrics.mk: plots and a live view of vtrain's metrics log, included by
# every pipeline after it has set RUN (its work directory) and METRICS.
#
#   make -f pipelines/small.mk plot    $(RUN)/plots/training.png and .svg
#   make -f pipelines/small.mk watch   a live text view while training runs
#
# The metrics are JSON Lines (vtrain(1)); jq turns them into the columns
# gnuplot reads.  Both are Debian packages that `make deps` installs.

JQ      ?= jq
GNUPLOT ?= gnuplot
PLOTS   ?= $(RUN)/plots
# Where this file and metrics.gp live, whatever the current directory.
VESPER_PIPELINES := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))

.PHONY: plot watch

plot: $(PLOTS)/training.png $(PLOTS)/training.svg
	@echo "plots: $(PLOTS)/training.png $(PLOTS)/training.svg"

# Strict about what it reads: every line an object with a numeric step and
# token count, and numbers (or null, which vtrain writes for NaN) where the
# plots look; else the plot is refused with the file and line named.  A line
# cut short at the end (a run killed mid-write) is not a whole record and
# is left out.
VESPER_JQ_CHECK = if type != "object" or (.step | type) != "number" or \
	(.tokens | type) != "number" or \
	([.loss, .lr, .tokens_per_s, .elapsed] | \
	any(type != "number" and type != "null")) \
	then error("not a vtrain metrics record") else . end
VESPER_JQ_TRAIN = $(VESPER_JQ_CHECK) | [.step, .tokens, .loss, .ppl, .lr, \
	.grad_norm, .tokens_per_s, .elapsed] | map(. // "NaN") | @tsv
# A run resumed from a checkpoint logs again the steps after it: keep the
# last record of each step, in step order.
VESPER_LAST_PER_STEP = sort -s -n -k1,1 | awk -F '\t' \
	'NR > 1 && $$1 != prev { print line } { prev = $$1; line = $$0 } \
	END { if (NR) print line }'
VESPER_JQ_VAL = select(.val_loss != null) | [.step, .tokens, .val_loss, \
	.val_ppl] | map(. // "NaN") | @tsv

$(PLOTS)/train.tsv: $(METRICS)
	@mkdir -p $(@D)
	@sed '$$!b; /}$$/!d' $< | \
	$(JQ) -r '$(VESPER_JQ_TRAIN)' 2> $@.err | $(VESPER_LAST_PER_STEP) > $@.tmp; \
	if [ $$? -ne 0 ] || [ -s $@.err ]; then \
	    echo "plot: $<: $$(sed 's/^jq: error (at <stdin>:\([0-9]*\)):/line \1:/' $@.err)" >&2; \
	    rm -f $@.tmp $@.err; exit 1; fi
	@rm -f $@.err
	@mv $@.tmp $@

$(PLOTS)/val.tsv: $(PLOTS)/train.tsv
	@sed '$$!b; /}$$/!d' $(METRICS) | \
	$(JQ) -r '$(VESPER_JQ_VAL)' | $(VESPER_LAST_PER_STEP) > $@.tmp
	@mv $@.tmp $@

# gnuplot writes to a temporary name: an interrupted plot leaves no
# half-drawn image under the final one.
$(PLOTS)/training.png $(PLOTS)/training.svg: $(PLOTS)/training.%: \
    $(PLOTS)/train.tsv $(PLOTS)/val.tsv $(VESPER_PIPELINES)/metrics.gp
	@$(GNUPLOT) -e "train='$(PLOTS)/train.tsv'; \
	    val='$$(test -s $(PLOTS)/val.tsv && echo $(PLOTS)/val.tsv)'; \
	    out='$@.tmp'; term='$*'; name='$(RUN)'" \
	    $(VESPER_PIPELINES)/metrics.gp || { rm -f $@.tmp; exit 1; }
	@mv $@.tmp $@

WATCH_EVERY ?= 5
watch:
	@sh $(VESPER_PIPELINES)/watch.sh -n $(WATCH_EVERY) -s $(STEPS) \
	    -t $(RUN) $(METRICS)
