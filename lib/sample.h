/* sample.h: choosing the next token from a model's logits.
 *
 * The order of operations is the one llama.cpp and Hugging Face's
 * generate use: repetition penalty on the raw logits, then temperature,
 * then top-k, then top-p (nucleus), then one draw.  A temperature of 0 is
 * greedy decoding (the arg max after the penalty), which needs no random
 * numbers at all.
 *
 * The random numbers come from our own generator (xoshiro256**, seeded
 * through splitmix64), not from rand(), so that a seed gives the same text
 * on every libc. */
#ifndef VESPER_SAMPLE_H
#define VESPER_SAMPLE_H

#include <stddef.h>
#include <stdint.h>

#include "vrng.h"


struct sample_params {
	float temperature;	/* 0: greedy */
	int top_k;		/* 0: off */
	float top_p;		/* 1: off */
	float repeat_penalty;	/* 1: off; > 1 discourages repeats */
	int repeat_window;	/* how many recent tokens the penalty sees */
};

void sample_defaults(struct sample_params *p);

/* Scratch space for n candidates, reused from token to token. */
struct sampler {
	struct sample_params p;
	struct v_rng rng;
	int n;			/* logits per call (the tokenizer's vocabulary) */
	float *prob;		/* (n) */
	int *idx;		/* (n) candidate ids */
	unsigned char *seen;	/* (n) marks for the repetition penalty */
};

int sampler_init(struct sampler *s, const struct sample_params *p, int n,
    uint64_t seed);
void sampler_free(struct sampler *s);

/* Pick a token from logits[0..n), left as they are.  recent[0..n_recent)
 * are the tokens so far, oldest first; only the last repeat_window of them
 * count for the penalty. */
int sampler_pick(struct sampler *s, const float *logits, const int *recent,
    int n_recent);

/* The model's own view of a token, independent of the sampling settings:
 * the softmax of logits (temperature 1) gives p = P(token) and the
 * entropy H of the distribution in bits. */
void sample_confidence(const float *logits, int n, int token, float *p,
    float *entropy_bits);

#endif
