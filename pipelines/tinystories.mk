# tinystories.mk: TinyStories (English short stories written by GPT-4, the
# TinyStoriesV2-GPT4 files), a common first corpus for small models and a
# point of comparison with other trainers.  Fetch, an 8,192-token tokenizer,
# shards, the `small` preset (about 20 M parameters), evaluation, INT8,
# generation, plots.
#
#   make -f pipelines/tinystories.mk -n       the plan
#   make -f pipelines/tinystories.mk          run it (work files in run/tinystories)
#
# Incremental like large.mk: a re-run resumes the download and the training.

VESPER_TOP := $(patsubst %/,%,$(dir $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))))

RUN     ?= run/tinystories
FETCH_FLAGS ?=
CORPUS   = $(RUN)/tinystories.jsonl

VOCAB   ?= 8192
VAL_FRACTION ?= 0.01
SHARD_TOKENS ?= 16Mi
SEED    ?= 1

PRESET  ?= small
DEVICE  ?= auto
STEPS   ?= 5000
SEQ     ?= 512
BATCH_TOKENS ?= 131072
MICRO_BATCH ?= 32
LR      ?= 1e-3
WARMUP  ?= 200
EVAL_EVERY ?= 250
CKPT_EVERY ?= 500
KEEP    ?= 3
TRAIN_FLAGS ?=
RESTART ?= no

BITS    ?= 8
PROMPT  ?= Once upon a time, there was a little
GEN_TOKENS ?= 150
TEMPERATURE ?= 0.8
TOP_K   ?= 40
GEN_FLAGS ?=

$(CORPUS):
	@mkdir -p $(@D)
	$(VESPER_BIN)/vfetch $(FETCH_FLAGS) tinystories > $@.tmp
	@mv $@.tmp $@

include $(VESPER_TOP)/pipelines/chain.mk
