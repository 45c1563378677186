/* sample.c: repetition penalty, temperature, top-k, top-p and the draw. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sample.h"
#include "verr.h"

void
sample_defaults(struct sample_params *p)
{
	p->temperature = 0.8f;
	p->top_k = 40;
	p->top_p = 0.95f;
	p->repeat_penalty = 1.1f;
	p->repeat_window = 64;
}

int
sampler_init(struct sampler *s, const struct sample_params *p, int n,
    uint64_t seed)
{
	memset(s, 0, sizeof *s);
	if (n <= 0)
		return v_error(V_ERR_ARG, "sampler: %d candidates", n);
	if (!(p->temperature >= 0) || p->top_k < 0 || !(p->top_p > 0) ||
	    p->top_p > 1 || !(p->repeat_penalty > 0) || p->repeat_window < 0)
		return v_error(V_ERR_ARG, "sampler: parameters out of range");
	s->p = *p;
	s->n = n;
	s->prob = malloc((size_t)n * sizeof *s->prob);
	s->idx = malloc((size_t)n * sizeof *s->idx);
	s->seen = calloc((size_t)n, 1);
	if (s->prob == NULL || s->idx == NULL || s->seen == NULL) {
		sampler_free(s);
		return v_error(V_ERR_NOMEM, "sampler: out of memory");
	}
	v_rng_seed(&s->rng, seed);
	return V_OK;
}

void
sampler_free(struct sampler *s)
{
	free(s->prob);
	free(s->idx);
	free(s->seen);
	s->prob = NULL;
	s->idx = NULL;
	s->seen = NULL;
}

/* Candidates in decreasing score, ties broken by the smaller id, so that
 * the order (and so the draw) never depends on qsort's whims.  C11's qsort
 * passes no context, hence the scores through a file-level pointer (one
 * per thread, so samplers on different threads do not meet). */
static _Thread_local const float *cmp_score;

static int
cmp_desc(const void *a, const void *b)
{
	int i = *(const int *)a, j = *(const int *)b;
	float x = cmp_score[i], y = cmp_score[j];
	if (x > y)
		return -1;
	if (x < y)
		return 1;
	return (i > j) - (i < j);
}

static int
beats(const float *sc, int i, int j)
{
	return sc[i] > sc[j] || (sc[i] == sc[j] && i < j);
}

/* The k best of idx[0..m) into idx[0..k), best first: a min-heap of k
 * holds the best so far, which costs m log k instead of a full sort. */
static void
select_top_k(const float *sc, int *idx, int m, int k)
{
	for (int i = 0; i < m; i++) {
		int c = idx[i];
		if (i < k) {
			int j = i;
			idx[j] = c;
			while (j > 0 && beats(sc, idx[(j - 1) / 2], idx[j])) {
				int p = (j - 1) / 2, t = idx[p];
				idx[p] = idx[j];
				idx[j] = t;
				j = p;
			}
			continue;
		}
		if (!beats(sc, c, idx[0]))
			continue;
		idx[0] = c;
		for (int j = 0;;) {
			int l = 2 * j + 1, r = l + 1, w = j;
			if (l < k && beats(sc, idx[w], idx[l]))
				w = l;
			if (r < k && beats(sc, idx[w], idx[r]))
				w = r;
			if (w == j)
				break;
			int t = idx[w];
			idx[w] = idx[j];
			idx[j] = t;
			j = w;
		}
	}
	cmp_score = sc;
	qsort(idx, (size_t)k, sizeof *idx, cmp_desc);
}

int
sampler_pick(struct sampler *s, const float *logits, const int *recent,
    int n_recent)
{
	const struct sample_params *p = &s->p;
	float *sc = s->prob;
	int *idx = s->idx;
	int n = s->n;

	memcpy(sc, logits, (size_t)n * sizeof *sc);
	if (p->repeat_penalty != 1.0f && n_recent > 0) {
		/* The CTRL form (Keskar et al. 2019), as transformers applies
		 * it: each distinct recent token once, dividing a positive
		 * logit and multiplying a negative one. */
		int from = n_recent > p->repeat_window ?
		    n_recent - p->repeat_window : 0;
		for (int i = from; i < n_recent; i++) {
			int t = recent[i];
			if (t < 0 || t >= n || s->seen[t])
				continue;
			s->seen[t] = 1;
			sc[t] = sc[t] > 0 ? sc[t] / p->repeat_penalty :
			    sc[t] * p->repeat_penalty;
		}
		for (int i = from; i < n_recent; i++)
			if (recent[i] >= 0 && recent[i] < n)
				s->seen[recent[i]] = 0;
	}

	if (p->temperature <= 0) {
		int best = 0;
		for (int i = 1; i < n; i++)
			if (sc[i] > sc[best])
				best = i;
		return best;
	}

	float inv_t = 1.0f / p->temperature;
	int m = n, sorted = 0;
	for (int i = 0; i < n; i++) {
		sc[i] *= inv_t;
		idx[i] = i;
	}
	if (p->top_k > 0 && p->top_k < n) {
		select_top_k(sc, idx, n, p->top_k);
		m = p->top_k;
		sorted = 1;
	}
	float mx = -INFINITY;
	for (int i = 0; i < m; i++)
		if (sc[idx[i]] > mx)
			mx = sc[idx[i]];
	double sum = 0;
	for (int i = 0; i < m; i++) {
		float e = expf(sc[idx[i]] - mx);
		sc[idx[i]] = e;
		sum += e;
	}

	double mass = sum;
	if (p->top_p < 1.0f && m > 1) {
		if (!sorted) {
			/* Tokens below (1 - top_p) / (m - 1) cannot enter the
			 * nucleus: together they weigh less than 1 - top_p, so
			 * the rest already reaches top_p.  Dropping them first
			 * leaves a short list to sort. */
			float cut = (float)((1.0 - p->top_p) / (m - 1) * sum);
			int k = 0;
			for (int i = 0; i < m; i++)
				if (sc[idx[i]] >= cut)
					idx[k++] = idx[i];
			m = k;
			cmp_score = sc;
			qsort(idx, (size_t)m, sizeof *idx, cmp_desc);
		}
		double want = p->top_p * sum, acc = 0;
		int k = 0;
		while (k < m) {
			acc += sc[idx[k++]];
			if (acc >= want)
				break;
		}
		m = k;
		mass = acc;
	}

	double r = (double)v_rng_float(&s->rng) * mass, acc = 0;
	for (int i = 0; i < m; i++) {
		acc += sc[idx[i]];
		if (r < acc)
			return idx[i];
	}
	return idx[m - 1];	/* rounding left r at the very top */
}

void
sample_confidence(const float *logits, int n, int token, float *p,
    float *entropy_bits)
{
	float mx = -INFINITY;
	for (int i = 0; i < n; i++)
		if (logits[i] > mx)
			mx = logits[i];
	/* H = log Z - sum e_i (l_i - mx) / Z, with e_i = exp(l_i - mx). */
	double z = 0, wl = 0;
	for (int i = 0; i < n; i++) {
		double d = (double)logits[i] - mx;
		double e = exp(d);
		z += e;
		wl += e * d;
	}
	double h = log(z) - wl / z;
	*p = (float)(exp((double)logits[token] - mx) / z);
	*entropy_bits = (float)(h > 0 ? h / log(2.0) : 0.0);
}
