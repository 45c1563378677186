/* dp_zero.h: ZeRO-1 on the host: the Velvet state (AdamW's two moments)
 * cut in slices, one per rank, instead of a whole copy on every rank.
 *
 * Per step: the gradients are summed into slices (lib/dp.h's dp_sum_add,
 * ended by dp_sum_own: a reduce-scatter, no all-gather); each rank clips
 * and steps its own slice of the parameters with its own slice of the
 * moments; the parameters are all-gathered.  Same traffic as the plain
 * all-reduce, and the moments take 2P/N floats per rank instead of 2P.
 *
 * The result is the plain run's, bit for bit: Velvet is elementwise, and the
 * gradient norm is summed in the fixed chunks of velvet_norm (lib/velvet.c:
 * 64 chunks, each summed in order in double, then the chunks in order),
 * whose boundaries the slices are cut on, so each chunk is one rank's. */
#ifndef VESPER_DP_ZERO_H
#define VESPER_DP_ZERO_H

#include <stddef.h>

#include "dp.h"
#include "trainer.h"
#include "vlm_config.h"

struct dp_zero {
	size_t n;		/* parameters */
	size_t unit;		/* elements per rank's slice (whole norm chunks) */
	size_t lo, hi;		/* this rank's slice */
	float *m, *v;		/* (hi - lo) this rank's moments */
	struct vlm_tensor *tens;
	int ntens, vocab;
	const float *g;		/* the summed slice, from dp_zero_norm */
};

/* This rank's part of the model c; sets d's slices (d->sum_chunk). */
int dp_zero_init(struct dp_zero *z, struct dp *d, const struct vlm_config *c);
void dp_zero_free(struct dp_zero *z);
/* Take this rank's slice of whole moments (a checkpoint's, or zeros). */
void dp_zero_load(struct dp_zero *z, const float *m, const float *v);
/* The whole moments on every rank (for a checkpoint); m, v are (n). */
int dp_zero_gather(struct dp *d, const struct dp_zero *z, float *m, float *v);
/* After dp_sum_add's rounds: the global L2 norm of the summed gradients,
 * equal to velvet_norm of the whole array. */
int dp_zero_norm(struct dp *d, struct dp_zero *z, float *norm);
/* One Velvet step of this rank's slice of params (the whole (n) array,
 * the same on every rank) with the gradients that dp_zero_norm found
 * summed, then the other ranks' slices into params. */
int dp_zero_step(struct dp *d, struct dp_zero *z,
    const struct velvet_hparams *h, float lr, long t, float grad_mul,
    float *params);

#endif
