# chain.mk: the steps every pipeline shares, from documents to generated
# text.  A pipeline (small.mk, large.mk, tinystories.mk) sets the variables
# below, says how to get $(CORPUS), then includes this file.
#
#   $(CORPUS)  --vtokenize train-->  tok.bpe
#              --vtokenize encode--> corpus.tok --vshard--> shards/
#   shards/    --vtrain-->           ckpt/ (step-N/, latest), metrics.jsonl
#   ckpt/latest --vquant-->          model-int$(BITS).safetensors
#                                    --vgen--> sample.txt
#   metrics.jsonl --jq, gnuplot-->   plots/training.png, .svg; eval.txt
#
# Each step is a file target written under a temporary name and renamed
# when complete, so an interrupted `make` redoes only what is missing.

VESPER_BIN ?= $(VESPER_TOP)/build/bin
V = $(VESPER_BIN)/

METRICS  = $(RUN)/metrics.jsonl
CKPT     = $(RUN)/ckpt
QUANT    = $(RUN)/model-int$(BITS).safetensors
# A launcher in front of vtrain, e.g. LAUNCH='numactl --cpunodebind=0'.
LAUNCH  ?=

TRAIN_ARGS = --device $(DEVICE) --preset $(PRESET) --steps $(STEPS) \
	--seq $(SEQ) --batch-tokens $(BATCH_TOKENS) --lr $(LR) \
	--warmup $(WARMUP) --eval-every $(EVAL_EVERY) \
	--ckpt-every $(CKPT_EVERY) --keep $(KEEP) --seed $(SEED) $(TRAIN_FLAGS)

.PHONY: all tokenizer shards train quantize eval sample clean FORCE
.DEFAULT_GOAL := all
.DELETE_ON_ERROR:

all: $(RUN)/sample.txt $(RUN)/eval.txt plot
	@echo
	@echo "== $(RUN): INT$(BITS) model, prompt: $(PROMPT)"
	@cat $(RUN)/sample.txt
	@echo
	@echo "== evaluation"
	@cat $(RUN)/eval.txt
	@echo "== training curves: $(PLOTS)/training.png and $(PLOTS)/training.svg"

tokenizer: $(RUN)/tok.bpe
shards: $(RUN)/shards/manifest.json
train: $(RUN)/train.done
quantize: $(QUANT)
eval: $(RUN)/eval.txt
sample: $(RUN)/sample.txt

$(RUN)/tok.bpe: $(CORPUS)
	@mkdir -p $(@D)
	$(V)vtokenize train -v $(VOCAB) -o $@ $(CORPUS)

$(RUN)/corpus.tok: $(RUN)/tok.bpe $(CORPUS)
	$(V)vtokenize encode -t $(RUN)/tok.bpe -o $@ $(CORPUS)

$(RUN)/shards/manifest.json: $(RUN)/corpus.tok
	$(V)vshard --val-fraction $(VAL_FRACTION) --shard-tokens $(SHARD_TOKENS) \
	    --seed $(SEED) -o $(RUN)/shards $<

# The training options, kept in a file that changes only when they do.
$(RUN)/train.args: FORCE
	@mkdir -p $(@D)
	@echo '$(TRAIN_ARGS)' | cmp -s - $@ || echo '$(TRAIN_ARGS)' > $@

# An interrupted run (Ctrl-C, a lost machine) left checkpoints and no
# train.done: the same command resumes from the latest one.  When the
# options changed since, RESTART=yes (the small demo) starts afresh, and
# RESTART=no (the long runs) resumes anyway and lets vtrain refuse what
# cannot continue, such as another model shape.
RESTART ?= no
$(RUN)/train.done: $(RUN)/shards/manifest.json $(RUN)/train.args
	@if [ "$(RESTART)" = yes ] && [ -e $@.args ] && \
	    ! cmp -s $@.args $(RUN)/train.args; then \
	    echo "$(RUN): the training options changed: starting afresh"; \
	    rm -rf $(CKPT) $(METRICS); fi
	@cp $(RUN)/train.args $@.args
	$(LAUNCH) $(V)vtrain $(TRAIN_ARGS) --metrics $(METRICS) \
	    $(if $(wildcard $(CKPT)/latest),--resume) -d $(RUN)/shards -o $(CKPT)
	@touch $@
	@[ ! -e $(METRICS) ] || touch $(METRICS)

$(QUANT): $(RUN)/train.done
	$(V)vquant -b $(BITS) $(CKPT)/latest $@

# The validation loss at the end of training, from the metrics log.
EVAL_JQ = select(.val_loss != null) | "validation loss \(.val_loss) \
	(perplexity \(.val_ppl)) at step \(.step), \(.tokens) tokens seen"
$(RUN)/eval.txt: $(RUN)/train.done
	@$(JQ) -r '$(EVAL_JQ)' $(METRICS) | tail -n 1 > $@.tmp
	@mv $@.tmp $@

$(RUN)/sample.txt: $(QUANT) $(RUN)/tok.bpe
	$(V)vgen -m $(QUANT) -t $(RUN)/tok.bpe -n $(GEN_TOKENS) \
	    --temperature $(TEMPERATURE) --top-k $(TOP_K) --seed $(SEED) \
	    $(GEN_FLAGS) -p '$(PROMPT)' > $@.tmp
	@mv $@.tmp $@

clean:
	rm -rf $(RUN)

FORCE:

include $(VESPER_TOP)/pipelines/metrics.mk

# The plots follow the metrics that training writes.
$(METRICS): $(RUN)/train.done
