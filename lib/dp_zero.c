/* dp_zero.c: ZeRO-1 on the host (see dp_zero.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dp_zero.h"
#include "velvet.h"
#include "verr.h"

/* velvet_norm's chunk count (lib/velvet.c); tests/cli/dp.t compares the
 * two paths byte for byte, so a change there shows here. */
#define ZERO_NORM_CHUNKS 64

static size_t
norm_per(size_t n)
{
	return (n + ZERO_NORM_CHUNKS - 1) / ZERO_NORM_CHUNKS;
}

int
dp_zero_init(struct dp_zero *z, struct dp *d, const struct vlm_config *c)
{
	size_t per, q;

	memset(z, 0, sizeof *z);
	z->n = (size_t)vlm_param_count(c);
	z->vocab = c->vocab_used;
	per = norm_per(z->n);
	/* Whole norm chunks per rank; the last ranks may hold padding only. */
	q = (ZERO_NORM_CHUNKS + (size_t)d->size - 1) / (size_t)d->size;
	z->unit = q * (per ? per : 1);
	d->sum_chunk = z->unit;
	z->lo = (size_t)d->rank * z->unit < z->n ? (size_t)d->rank * z->unit : z->n;
	z->hi = z->lo + z->unit < z->n ? z->lo + z->unit : z->n;
	z->ntens = vlm_layout(c, NULL);
	z->tens = calloc((size_t)z->ntens, sizeof *z->tens);
	z->m = calloc(z->hi - z->lo + 1, sizeof *z->m);
	z->v = calloc(z->hi - z->lo + 1, sizeof *z->v);
	if (z->tens == NULL || z->m == NULL || z->v == NULL) {
		dp_zero_free(z);
		return v_error(V_ERR_NOMEM, "out of memory for ZeRO-1's slice");
	}
	vlm_layout(c, z->tens);
	return V_OK;
}

void
dp_zero_free(struct dp_zero *z)
{
	free(z->tens);
	free(z->m);
	free(z->v);
	z->tens = NULL;
	z->m = z->v = NULL;
}

void
dp_zero_load(struct dp_zero *z, const float *m, const float *v)
{
	memcpy(z->m, m + z->lo, (z->hi - z->lo) * sizeof *z->m);
	memcpy(z->v, v + z->lo, (z->hi - z->lo) * sizeof *z->v);
}

/* Every rank's slice of part (this rank's at lo) into whole (n). */
static int
gather(struct dp *d, const struct dp_zero *z, const float *part, float *whole)
{
	size_t u = z->unit, all = u * (size_t)d->size;
	float *send, *recv;
	int err;

	if (d->kind != DP_MPI) {
		memmove(whole + z->lo, part, (z->hi - z->lo) * sizeof *whole);
		return V_OK;
	}
	send = calloc(u, sizeof *send);
	recv = malloc(all * sizeof *recv);
	if (send == NULL || recv == NULL) {
		free(send);
		free(recv);
		return v_error(V_ERR_NOMEM, "out of memory for an all-gather");
	}
	memcpy(send, part, (z->hi - z->lo) * sizeof *send);
	err = d->mpi->allgather_f32(send, recv, u);
	if (err == V_OK)
		memcpy(whole, recv, z->n * sizeof *whole);
	else
		err = v_error(err, "rank %d of %d: %s", d->rank, d->size,
		    d->mpi->last_error());
	free(send);
	free(recv);
	return err;
}

int
dp_zero_gather(struct dp *d, const struct dp_zero *z, float *m, float *v)
{
	int err = gather(d, z, z->m, m);
	return err ? err : gather(d, z, z->v, v);
}

int
dp_zero_norm(struct dp *d, struct dp_zero *z, float *norm)
{
	size_t per = norm_per(z->n), lo, hi;
	const float *g = dp_sum_own(d, &lo, &hi);
	double part[ZERO_NORM_CHUNKS] = { 0 }, *all, s = 0;
	int err;

	z->g = NULL;
	if (g == NULL || lo != z->lo || hi != z->hi)
		return v_error(V_ERR_ARG, "ZeRO-1: no gradient sum of this model");
	/* The chunks of this rank's slice, each in velvet_norm's order. */
	for (int c = 0; c < ZERO_NORM_CHUNKS; c++) {
		size_t a = (size_t)c * per, b = a + per < z->n ? a + per : z->n;
		if (a < lo || a >= hi)
			continue;
		double x = 0;
		for (size_t i = a; i < b; i++)
			x += (double)g[i - lo] * g[i - lo];
		part[c] = x;
	}
	all = malloc((size_t)d->size * ZERO_NORM_CHUNKS * sizeof *all);
	if (all == NULL)
		return v_error(V_ERR_NOMEM, "out of memory");
	if ((err = dp_allgather_f64(d, part, all, ZERO_NORM_CHUNKS)) != V_OK) {
		free(all);
		return err;
	}
	/* Chunk c is the rank's that holds its first element (or nobody's:
	 * past the end, zero everywhere). */
	for (int c = 0; c < ZERO_NORM_CHUNKS; c++) {
		size_t a = (size_t)c * per, r = a / z->unit;
		if (a < z->n && r < (size_t)d->size)
			s += all[r * ZERO_NORM_CHUNKS + (size_t)c];
	}
	free(all);
	*norm = (float)sqrt(s);
	z->g = g;
	return V_OK;
}

int
dp_zero_step(struct dp *d, struct dp_zero *z, const struct velvet_hparams *h,
    float lr, long t, float grad_mul, float *params)
{
	struct velvet_step vs;
	size_t lo = z->lo, hi = z->hi;
	const float *g = z->g;
	int err;

	if (g == NULL)
		return v_error(V_ERR_ARG, "ZeRO-1: a step without a summed gradient");
	z->g = NULL;
	if ((err = velvet_prepare(h, z->vocab, lr, t, grad_mul, &vs)) != V_OK)
		return err;
	/* Each tensor's part in the slice, with the tensor's decay (as the
	 * CPU trainer's step does for the whole tensor). */
	for (int i = 0; i < z->ntens && lo < hi; i++) {
		const struct vlm_tensor *x = &z->tens[i];
		size_t a = x->offset, b = a + (size_t)x->rows * (size_t)x->cols;
		if (a < lo)
			a = lo;
		if (b > hi)
			b = hi;
		if (a >= b)
			continue;
		float wd = x->is_matrix || h->decay_vectors ? h->weight_decay : 0;
		velvet_update(&vs, wd, params + a, g + (a - lo), z->m + (a - lo),
		    z->v + (a - lo), b - a);
	}
	return gather(d, z, params + lo, params);
}
