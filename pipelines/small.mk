# small.mk: the demo.  From the French dialogues in data/: train a
# tokenizer, encode, shard, train the `tiny` model (on the GPU when there is
# one, else the CPU), evaluate, quantise to INT8, generate French text, plot
# the training curves.  `make demo` runs it: about two and a half minutes on
# two idle cores, and it writes French that reads like French.
#
#   make -f pipelines/small.mk              the whole run (work files in run/small)
#   make -f pipelines/small.mk -n           the plan, without running it
#   make -f pipelines/small.mk STEPS=2000   any variable below can be set
#   make -f pipelines/small.mk plot         the plots again
#   make -f pipelines/small.mk watch        a live view, from another terminal
#   make -f pipelines/small.mk clean        remove run/small
#
# Each step is a file target, so a re-run does only what is missing or out
# of date; an interrupted training run resumes from its last checkpoint, and
# one with other options starts afresh.

# The checkout this file is in: its data/ and, unless told, its build/bin.
VESPER_TOP := $(patsubst %/,%,$(dir $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))))

RUN     ?= run/small
CORPUS  ?= $(VESPER_TOP)/data/handwritten.txt $(VESPER_TOP)/data/generated.txt

# Tokenizer: a small vocabulary suits 370 KB of text and a tiny model.
VOCAB   ?= 1024
# Shards: 5% of the dialogues held out for validation.
VAL_FRACTION ?= 0.05
SHARD_TOKENS ?= 64k
SEED    ?= 1

# Model and training: `tiny` is 4 layers of width 128, a million
# parameters; 250 small steps see the corpus about twice (256k tokens).
PRESET  ?= tiny
DEVICE  ?= auto
STEPS   ?= 250
SEQ     ?= 128
BATCH_TOKENS ?= 1024
LR      ?= 4e-3
WARMUP  ?= 20
EVAL_EVERY ?= 50
CKPT_EVERY ?= 100
LOG_EVERY ?= 5
KEEP    ?= 2
# Anything else for vtrain, e.g. TRAIN_FLAGS='--act era'.
TRAIN_FLAGS ?=
RESTART ?= yes

# Quantisation and generation.
BITS    ?= 8
PROMPT  ?= [Intervenant 1:] Bonjour, je voudrais
GEN_TOKENS ?= 120
TEMPERATURE ?= 0.8
TOP_K   ?= 40
GEN_FLAGS ?=

include $(VESPER_TOP)/pipelines/chain.mk
