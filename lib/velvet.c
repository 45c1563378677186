/* velvet.c: AdamW as torch computes it, plus Velvet's optional features. */
#include <math.h>
#include <stdlib.h>

#include "velvet.h"
#include "verr.h"

void
velvet_defaults(struct velvet_hparams *h)
{
	*h = (struct velvet_hparams){
		.beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f,
		.entropy_lr_k = 1.0f, .ppl_momentum_k = 0.1f,
	};
}

static double
clamp(double x, double lo, double hi)
{
	return x < lo ? lo : x > hi ? hi : x;
}

double
velvet_lr_scale(const struct velvet_hparams *h, int vocab)
{
	if (!h->entropy_lr || vocab < 2)
		return 1;
	/* Normalised entropy: 0 certain, 1 uniform over the vocabulary. */
	double e = h->batch_entropy / log((double)vocab);
	return clamp(1 + h->entropy_lr_k * (e - 0.5), 0.5, 2.0);
}

double
velvet_beta1(const struct velvet_hparams *h)
{
	if (!h->ppl_momentum)
		return h->beta1;
	/* ln(ppl / ppl_ema): a surprising batch leans on the history more. */
	double r = (double)h->batch_loss - h->loss_ema;
	return clamp(h->beta1 + h->ppl_momentum_k * r, 0.5, 0.99);
}

int
velvet_prepare(const struct velvet_hparams *h, int vocab, float lr, long t,
    float grad_mul, struct velvet_step *s)
{
	if (!(h->beta1 >= 0 && h->beta1 < 1) || !(h->beta2 >= 0 && h->beta2 < 1))
		return v_error(V_ERR_ARG, "Velvet: betas must lie in [0, 1)");
	if (!(h->eps > 0) || !(h->weight_decay >= 0) || !isfinite(h->weight_decay))
		return v_error(V_ERR_ARG, "Velvet: eps must be positive and weight "
		    "decay non-negative");
	if (!(lr >= 0) || !isfinite(lr) || t < 1 || !isfinite(grad_mul))
		return v_error(V_ERR_ARG, "Velvet: bad learning rate %g or step %ld",
		    (double)lr, t);
	double l = lr * velvet_lr_scale(h, vocab);
	double b1 = velvet_beta1(h), b2 = h->beta2;
	/* Bias corrections with the nominal beta1, as AdamW's are. */
	double bc1 = 1 - pow(h->beta1, (double)t);
	double bc2 = 1 - pow(b2, (double)t);

	s->lr = (float)l;
	s->one_minus_b1 = (float)(1 - b1);
	s->b2 = (float)b2;
	s->one_minus_b2 = (float)(1 - b2);
	s->step_size = (float)(l / bc1);
	s->bc2_sqrt = (float)sqrt(bc2);
	s->eps = h->eps;
	s->grad_mul = grad_mul;
	s->sparse = h->sparse;
	return V_OK;
}

void
velvet_update(const struct velvet_step *s, float wd, float *p, const float *g,
    float *m, float *v, size_t n)
{
	float decay = (float)(1 - (double)s->lr * wd);
	float neg_step = -s->step_size;

#pragma omp parallel for schedule(static) if (n >= 16384)
	for (size_t i = 0; i < n; i++) {
		float gi = g[i] * s->grad_mul;
		/* Sparse-aware: an element with no gradient this step (a row of
		 * an unseen token, an unselected FlyLoRA rank) keeps its value
		 * and its moments, instead of decaying toward zero. */
		if (s->sparse && g[i] == 0)
			continue;
		float pi = p[i] * decay;
		float mi = m[i] + s->one_minus_b1 * (gi - m[i]);
		float vi = s->b2 * v[i] + s->one_minus_b2 * gi * gi;
		float denom = sqrtf(vi) / s->bc2_sqrt + s->eps;
		p[i] = pi + neg_step * (mi / denom);
		m[i] = mi;
		v[i] = vi;
	}
}

double
velvet_norm(const float *x, size_t n)
{
	enum { CHUNKS = 64 };
	double part[CHUNKS];
	size_t per = (n + CHUNKS - 1) / CHUNKS;

	/* Fixed chunks summed in order: the same bits whatever the threads. */
#pragma omp parallel for schedule(static) if (n >= 65536)
	for (int c = 0; c < CHUNKS; c++) {
		size_t lo = (size_t)c * per, hi = lo + per < n ? lo + per : n;
		double s = 0;
		for (size_t i = lo; i < hi; i++)
			s += (double)x[i] * x[i];
		part[c] = s;
	}
	double s = 0;
	for (int c = 0; c < CHUNKS; c++)
		s += part[c];
	return sqrt(s);
}

float
velvet_clip_factor(float norm, float clip)
{
	if (!(clip > 0))
		return 1;
	float f = clip / (norm + 1e-6f);
	return f < 1 ? f : 1;
}
