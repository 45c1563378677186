# large.mk: the full Claire-Dialogue-French workflow.  Fetch the corpus
# (OpenLLM-France, through vfetch's verified, resumable download), train a
# 32,000-token tokenizer, shard, train the `large` preset (24 layers, width
# 1024, context 2048: 374 M parameters) on the GPU, checkpoint as it goes,
# evaluate, quantise, generate, plot.
#
#   make -f pipelines/large.mk -n            the plan
#   make -f pipelines/large.mk               run it (work files in run/large)
#   make -f pipelines/large.mk PRESET=medium STEPS=5000 RUN=run/medium
#   make -f pipelines/large.mk watch         a live view from another terminal
#   make -f pipelines/large.mk export        a Hugging Face directory of the model
#   make -f pipelines/large.mk LAUNCH='mpirun -np 8'   on the eight GPUs of one machine
#
# Claire-Dialogue-French-0.1 is published under CC BY-NC-SA 4.0: a model
# trained on it inherits those terms (non-commercial, share alike).
#
# Incremental: every step is a file target, and training checkpoints every
# CKPT_EVERY steps, so running the same command again after an interruption
# (Ctrl-C, a lost machine) picks up where it stopped: vfetch resumes its
# download from the cache, vtrain resumes from ckpt/latest.

VESPER_TOP := $(patsubst %/,%,$(dir $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))))

RUN     ?= run/large
# The corpus: every subset of the training split unless SUBSET names one
# (vfetch --list shows them).
SUBSET  ?=
SPLIT   ?= train
FETCH_FLAGS ?=
CORPUS   = $(RUN)/claire.jsonl
FETCH_ARGS = $(if $(SUBSET),--subset $(SUBSET) )--split $(SPLIT) $(FETCH_FLAGS)

VOCAB   ?= 32000
VAL_FRACTION ?= 0.005
SHARD_TOKENS ?= 16Mi
SEED    ?= 1

# Model and training.  BATCH_TOKENS is the optimizer's batch; vtrain
# accumulates gradients over micro-batches of MICRO_BATCH sequences.
# The corpus is small for the model: its dataset card counts 37,015
# conversations and about 150 M words, some 200 M tokens, against the
# 7.5 B tokens (20 a parameter) a 374 M model could use.  2,000 steps of
# 512 Ki tokens, about 1 B tokens, are some five passes over it; watch the
# validation loss (make watch) for the point where more passes stop helping.
PRESET  ?= large
DEVICE  ?= cuda
STEPS   ?= 2000
SEQ     ?= 2048
BATCH_TOKENS ?= 524288
MICRO_BATCH ?= 16
LR      ?= 3e-4
WARMUP  ?= 200
EVAL_EVERY ?= 100
CKPT_EVERY ?= 200
KEEP    ?= 3
TRAIN_FLAGS ?=
RESTART ?= no

BITS    ?= 8
PROMPT  ?= [Intervenant 1:] Bonjour, je voudrais
GEN_TOKENS ?= 200
TEMPERATURE ?= 0.8
TOP_K   ?= 40
GEN_FLAGS ?=

$(CORPUS):
	@mkdir -p $(@D)
	$(VESPER_BIN)/vfetch $(FETCH_ARGS) claire > $@.tmp
	@mv $@.tmp $@

include $(VESPER_TOP)/pipelines/chain.mk

# A Hugging Face directory (model.safetensors, config.json, tokenizer.json)
# that transformers loads as LlamaForCausalLM; silu models only.
.PHONY: export
VESPER_EXTRA_TARGETS = export
export: $(RUN)/hf/config.json
$(RUN)/tokenizer.json: $(RUN)/tokenizer.bpe
	$(V)vtokenize export -t $< -o $@
$(RUN)/hf/config.json: $(RUN)/train.done $(RUN)/tokenizer.json
	$(V)vckpt export -t $(RUN)/tokenizer.json --hf $(RUN)/hf $(CKPT)/latest
