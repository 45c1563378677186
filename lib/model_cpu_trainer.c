/* model_cpu_trainer.c: the whole VesperLM model on the CPU, as the
 * vlm_cpu_trainer table of lib/trainer.h: parameters, gradients, AdamW
 * moments and the activations that the backward pass needs. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model_cpu.h"
#include "trainer.h"
#include "velvet.h"
#include "verr.h"

/* Pointers into the flat parameter (or gradient) array for one layer. */
struct cpu_layer {
	float *ln1;	/* (C) */
	float *wq;	/* (H*hd, C) */
	float *wk;	/* (KV*hd, C) */
	float *wv;	/* (KV*hd, C) */
	float *wo;	/* (C, H*hd) */
	float *ln2;	/* (C) */
	float *wg;	/* (F, C) */
	float *wu;	/* (F, C) */
	float *wd;	/* (C, F) */
};

struct cpu_weights {
	float *emb;		/* (V, C) */
	struct cpu_layer *l;	/* L of them */
	float *norm;		/* (C) */
	float *head;		/* (V, C): emb when tied */
};

/* What the forward pass keeps for the backward pass, per layer. */
struct cpu_acts {
	float *x;	/* (L+1, N, C) residual stream entering layer l; x[L] last */
	float *h1;	/* (L, N, C) input_layernorm output */
	float *r1;	/* (L, N) its 1/rms */
	float *q;	/* (L, N, H*hd) after rotary */
	float *k;	/* (L, N, KV*hd) after rotary */
	float *v;	/* (L, N, KV*hd) */
	float *att;	/* (L, B, H, T, T) probabilities */
	float *y;	/* (L, N, H*hd) attention output */
	float *xm;	/* (L, N, C) residual after attention */
	float *h2;	/* (L, N, C) post_attention_layernorm output */
	float *r2;	/* (L, N) */
	float *g;	/* (L, N, F) gate projection, before the activation */
	float *u;	/* (L, N, F) up projection */
	float *a;	/* (L, N, F) act(g) * u */
	float *hf;	/* (N, C) final norm output */
	float *rf;	/* (N) */
	float *logits;	/* (N, V) */
};

/* Gradients of activations, one layer at a time. */
struct cpu_grads {
	float *dx;	/* (N, C) of the residual stream */
	float *dh;	/* (N, C) of a norm's output */
	float *dq;	/* (N, H*hd) */
	float *dk;	/* (N, KV*hd) */
	float *dv;	/* (N, KV*hd) */
	float *dy;	/* (N, H*hd) */
	float *dg;	/* (N, F) */
	float *du;	/* (N, F) */
	float *da;	/* (N, F) */
	float *dlogits;	/* (XENT_ROWS, V) */
};

/* Rows of logits turned into gradients at a time, so that the (N, V)
 * gradient never exists whole beside the logits. */
#define XENT_ROWS 256

struct cpu_trainer {
	struct vlm_config c;
	int B, T, N, hd, qw, kw;
	size_t P;			/* parameters */
	int ntens;
	struct vlm_tensor *tens;
	float *params, *grads, *m, *v;	/* (P) each */
	struct cpu_weights w, dw;
	struct cpu_acts act;
	struct cpu_grads d;
	float *cosv, *sinv;		/* (T, hd/2) */
	float *work;			/* attention's scratch */
	int32_t *inp, *tgt;		/* (N) */
	int have_logits;
};

static void
carve(struct cpu_weights *w, float *base, const struct cpu_trainer *s)
{
	const struct vlm_tensor *t = s->tens;
	int i = 0;

	w->emb = base + t[i++].offset;
	for (int l = 0; l < s->c.layers; l++) {
		struct cpu_layer *y = &w->l[l];
		y->ln1 = base + t[i++].offset;
		y->wq = base + t[i++].offset;
		y->wk = base + t[i++].offset;
		y->wv = base + t[i++].offset;
		y->wo = base + t[i++].offset;
		y->ln2 = base + t[i++].offset;
		y->wg = base + t[i++].offset;
		y->wu = base + t[i++].offset;
		y->wd = base + t[i++].offset;
	}
	w->norm = base + t[i++].offset;
	w->head = s->c.tie ? w->emb : base + t[i++].offset;
}

static void cpu_destroy(void *st);

static float *
fbuf(size_t n, int *fail)
{
	float *p = calloc(n ? n : 1, sizeof *p);
	if (p == NULL)
		*fail = 1;
	return p;
}

static int
cpu_create(const struct vlm_config *c, int B, int T, void **out)
{
	int err = vlm_config_check(c), fail = 0;

	*out = NULL;
	if (err)
		return err;
	if (B <= 0 || T <= 0 || T > c->ctx)
		return v_error(V_ERR_ARG, "micro-batch %d x %d does not fit a context "
		    "of %d", B, T, c->ctx);
	struct cpu_trainer *s = calloc(1, sizeof *s);
	if (s == NULL)
		return v_error(V_ERR_NOMEM, "out of memory for the model");
	s->c = *c;
	s->B = B;
	s->T = T;
	s->N = B * T;
	s->hd = c->dim / c->heads;
	s->qw = c->heads * s->hd;
	s->kw = c->kv_heads * s->hd;
	s->ntens = vlm_layout(c, NULL);
	s->tens = calloc((size_t)s->ntens, sizeof *s->tens);
	s->w.l = calloc((size_t)c->layers, sizeof *s->w.l);
	s->dw.l = calloc((size_t)c->layers, sizeof *s->dw.l);
	if (s->tens == NULL || s->w.l == NULL || s->dw.l == NULL) {
		cpu_destroy(s);
		return v_error(V_ERR_NOMEM, "out of memory for the model");
	}
	vlm_layout(c, s->tens);
	s->P = vlm_param_count(c);

	size_t N = (size_t)s->N, L = (size_t)c->layers, C = (size_t)c->dim;
	size_t F = (size_t)c->hidden, V = (size_t)c->vocab;
	size_t qw = (size_t)s->qw, kw = (size_t)s->kw;
	s->params = fbuf(s->P, &fail);
	s->grads = fbuf(s->P, &fail);
	s->m = fbuf(s->P, &fail);
	s->v = fbuf(s->P, &fail);
	struct cpu_acts *a = &s->act;
	a->x = fbuf((L + 1) * N * C, &fail);
	a->h1 = fbuf(L * N * C, &fail);
	a->r1 = fbuf(L * N, &fail);
	a->q = fbuf(L * N * qw, &fail);
	a->k = fbuf(L * N * kw, &fail);
	a->v = fbuf(L * N * kw, &fail);
	a->att = fbuf(L * (size_t)B * (size_t)c->heads * (size_t)T * (size_t)T,
	    &fail);
	a->y = fbuf(L * N * qw, &fail);
	a->xm = fbuf(L * N * C, &fail);
	a->h2 = fbuf(L * N * C, &fail);
	a->r2 = fbuf(L * N, &fail);
	a->g = fbuf(L * N * F, &fail);
	a->u = fbuf(L * N * F, &fail);
	a->a = fbuf(L * N * F, &fail);
	a->hf = fbuf(N * C, &fail);
	a->rf = fbuf(N, &fail);
	a->logits = fbuf(N * V, &fail);
	struct cpu_grads *d = &s->d;
	d->dx = fbuf(N * C, &fail);
	d->dh = fbuf(N * C, &fail);
	d->dq = fbuf(N * qw, &fail);
	d->dk = fbuf(N * kw, &fail);
	d->dv = fbuf(N * kw, &fail);
	d->dy = fbuf(N * qw, &fail);
	d->dg = fbuf(N * F, &fail);
	d->du = fbuf(N * F, &fail);
	d->da = fbuf(N * F, &fail);
	d->dlogits = fbuf((size_t)XENT_ROWS * V, &fail);
	s->cosv = fbuf((size_t)T * (size_t)(s->hd / 2), &fail);
	s->sinv = fbuf((size_t)T * (size_t)(s->hd / 2), &fail);
	s->work = fbuf(vlm_attention_work(B, T, c->heads, s->hd), &fail);
	s->inp = calloc(N, sizeof *s->inp);
	s->tgt = calloc(N, sizeof *s->tgt);
	if (fail || s->inp == NULL || s->tgt == NULL) {
		cpu_destroy(s);
		return v_error(V_ERR_NOMEM, "out of memory for a model of %llu "
		    "parameters with micro-batch %d x %d",
		    (unsigned long long)vlm_param_count(c), B, T);
	}
	carve(&s->w, s->params, s);
	carve(&s->dw, s->grads, s);
	vlm_rope_tables(s->cosv, s->sinv, T, s->hd, c->rope_theta);
	*out = s;
	return V_OK;
}

static void
cpu_destroy(void *st)
{
	struct cpu_trainer *s = st;

	if (s == NULL)
		return;
	float **bufs[] = {
		&s->params, &s->grads, &s->m, &s->v, &s->act.x, &s->act.h1,
		&s->act.r1, &s->act.q, &s->act.k, &s->act.v, &s->act.att,
		&s->act.y, &s->act.xm, &s->act.h2, &s->act.r2, &s->act.g,
		&s->act.u, &s->act.a, &s->act.hf, &s->act.rf, &s->act.logits,
		&s->d.dx, &s->d.dh, &s->d.dq, &s->d.dk, &s->d.dv, &s->d.dy,
		&s->d.dg, &s->d.du, &s->d.da, &s->d.dlogits, &s->cosv, &s->sinv,
		&s->work,
	};
	for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
		free(*bufs[i]);
	free(s->inp);
	free(s->tgt);
	free(s->tens);
	free(s->w.l);
	free(s->dw.l);
	free(s);
}

static int
cpu_set_params(void *st, const float *p)
{
	struct cpu_trainer *s = st;
	memcpy(s->params, p, s->P * sizeof *p);
	return V_OK;
}

static int
cpu_get_params(void *st, float *p)
{
	struct cpu_trainer *s = st;
	memcpy(p, s->params, s->P * sizeof *p);
	return V_OK;
}

static int
cpu_set_moments(void *st, const float *m, const float *v)
{
	struct cpu_trainer *s = st;
	memcpy(s->m, m, s->P * sizeof *m);
	memcpy(s->v, v, s->P * sizeof *v);
	return V_OK;
}

static int
cpu_get_moments(void *st, float *m, float *v)
{
	struct cpu_trainer *s = st;
	memcpy(m, s->m, s->P * sizeof *m);
	memcpy(v, s->v, s->P * sizeof *v);
	return V_OK;
}

static int
cpu_get_grads(void *st, float *g)
{
	struct cpu_trainer *s = st;
	memcpy(g, s->grads, s->P * sizeof *g);
	return V_OK;
}

static int
cpu_set_grads(void *st, const float *g)
{
	struct cpu_trainer *s = st;
	memcpy(s->grads, g, s->P * sizeof *g);
	return V_OK;
}

static int
cpu_zero_grad(void *st)
{
	struct cpu_trainer *s = st;
	memset(s->grads, 0, s->P * sizeof *s->grads);
	return V_OK;
}

static int
split_tokens(struct cpu_trainer *s, const int32_t *tokens)
{
	for (int b = 0; b < s->B; b++)
		for (int t = 0; t <= s->T; t++) {
			int32_t id = tokens[(size_t)b * (s->T + 1) + t];
			if (id < 0 || id >= s->c.vocab)
				return v_error(V_ERR_RANGE, "token %ld outside the "
				    "model's vocabulary of %d", (long)id, s->c.vocab);
			if (t < s->T)
				s->inp[b * s->T + t] = id;
			if (t > 0)
				s->tgt[b * s->T + t - 1] = id;
		}
	return V_OK;
}

static void
forward_pass(struct cpu_trainer *s)
{
	const struct vlm_config *c = &s->c;
	struct cpu_acts *a = &s->act;
	size_t N = (size_t)s->N, C = (size_t)c->dim, F = (size_t)c->hidden;
	size_t qw = (size_t)s->qw, kw = (size_t)s->kw;
	int B = s->B, T = s->T, H = c->heads, KV = c->kv_heads, hd = s->hd;

	for (size_t n = 0; n < N; n++)
		memcpy(a->x + n * C, s->w.emb + (size_t)s->inp[n] * C,
		    C * sizeof(float));
	for (int l = 0; l < c->layers; l++) {
		const struct cpu_layer *w = &s->w.l[l];
		float *x = a->x + l * N * C, *xn = a->x + (l + 1) * N * C;
		float *h1 = a->h1 + l * N * C, *h2 = a->h2 + l * N * C;
		float *q = a->q + l * N * qw, *k = a->k + l * N * kw;
		float *v = a->v + l * N * kw, *y = a->y + l * N * qw;
		float *xm = a->xm + l * N * C;
		float *g = a->g + l * N * F, *u = a->u + l * N * F;
		float *ga = a->a + l * N * F;
		float *att = a->att + (size_t)l * B * H * T * T;

		vlm_rmsnorm_forward(h1, a->r1 + l * N, x, w->ln1, (int)N, (int)C,
		    c->norm_eps);
		vlm_matmul_forward(q, h1, w->wq, (int)N, (int)C, (int)qw);
		vlm_matmul_forward(k, h1, w->wk, (int)N, (int)C, (int)kw);
		vlm_matmul_forward(v, h1, w->wv, (int)N, (int)C, (int)kw);
		vlm_rope_forward(q, s->cosv, s->sinv, B, T, H, hd);
		vlm_rope_forward(k, s->cosv, s->sinv, B, T, KV, hd);
		vlm_attention_forward_ws(y, att, q, k, v, B, T, H, KV, hd, s->work);
		/* xm = x + y Wo^T */
		vlm_matmul_forward(xm, y, w->wo, (int)N, (int)qw, (int)C);
		#pragma omp simd
		for (size_t i = 0; i < N * C; i++)
			xm[i] += x[i];
		vlm_rmsnorm_forward(h2, a->r2 + l * N, xm, w->ln2, (int)N, (int)C,
		    c->norm_eps);
		vlm_matmul_forward(g, h2, w->wg, (int)N, (int)C, (int)F);
		vlm_matmul_forward(u, h2, w->wu, (int)N, (int)C, (int)F);
		vlm_glu_forward(ga, g, u, N * F, c->act, c->era_gamma, c->era_temp);
		vlm_matmul_forward(xn, ga, w->wd, (int)N, (int)F, (int)C);
		#pragma omp simd
		for (size_t i = 0; i < N * C; i++)
			xn[i] += xm[i];
	}
	vlm_rmsnorm_forward(a->hf, a->rf, a->x + (size_t)c->layers * N * C,
	    s->w.norm, (int)N, (int)C, c->norm_eps);
	vlm_matmul_forward(a->logits, a->hf, s->w.head, (int)N, (int)C,
	    c->vocab);
	s->have_logits = 1;
}

static void
backward_layers(struct cpu_trainer *s)
{
	const struct vlm_config *c = &s->c;
	struct cpu_acts *a = &s->act;
	struct cpu_grads *d = &s->d;
	size_t N = (size_t)s->N, C = (size_t)c->dim, F = (size_t)c->hidden;
	size_t qw = (size_t)s->qw, kw = (size_t)s->kw;
	int B = s->B, T = s->T, H = c->heads, KV = c->kv_heads, hd = s->hd;

	/* d->dx holds the gradient of the last layer's output. */
	for (int l = c->layers - 1; l >= 0; l--) {
		const struct cpu_layer *w = &s->w.l[l];
		struct cpu_layer *gw = &s->dw.l[l];
		float *x = a->x + l * N * C;
		float *h1 = a->h1 + l * N * C, *h2 = a->h2 + l * N * C;
		float *q = a->q + l * N * qw, *k = a->k + l * N * kw;
		float *v = a->v + l * N * kw, *y = a->y + l * N * qw;
		float *xm = a->xm + l * N * C;
		float *g = a->g + l * N * F, *u = a->u + l * N * F;
		float *ga = a->a + l * N * F;
		float *att = a->att + (size_t)l * B * H * T * T;

		/* MLP: the residual passes dx through unchanged. */
		vlm_matmul_backward(d->da, gw->wd, d->dx, ga, w->wd, (int)N, (int)F,
		    (int)C, 0);
		vlm_glu_backward(d->dg, d->du, d->da, g, u, N * F, c->act,
		    c->era_gamma, c->era_temp);
		vlm_matmul_backward(d->dh, gw->wg, d->dg, h2, w->wg, (int)N, (int)C,
		    (int)F, 0);
		vlm_matmul_backward(d->dh, gw->wu, d->du, h2, w->wu, (int)N, (int)C,
		    (int)F, 1);
		vlm_rmsnorm_backward(d->dx, gw->ln2, d->dh, xm, w->ln2,
		    a->r2 + l * N, (int)N, (int)C);
		/* Attention. */
		vlm_matmul_backward(d->dy, gw->wo, d->dx, y, w->wo, (int)N, (int)qw,
		    (int)C, 0);
		vlm_attention_backward_ws(d->dq, d->dk, d->dv, d->dy, att, q, k, v, B, T,
		    H, KV, hd, s->work);
		vlm_rope_backward(d->dq, s->cosv, s->sinv, B, T, H, hd);
		vlm_rope_backward(d->dk, s->cosv, s->sinv, B, T, KV, hd);
		vlm_matmul_backward(d->dh, gw->wq, d->dq, h1, w->wq, (int)N, (int)C,
		    (int)qw, 0);
		vlm_matmul_backward(d->dh, gw->wk, d->dk, h1, w->wk, (int)N, (int)C,
		    (int)kw, 1);
		vlm_matmul_backward(d->dh, gw->wv, d->dv, h1, w->wv, (int)N, (int)C,
		    (int)kw, 1);
		vlm_rmsnorm_backward(d->dx, gw->ln1, d->dh, x, w->ln1, a->r1 + l * N,
		    (int)N, (int)C);
	}
	/* Embedding rows: serial, since a token may repeat in the batch. */
	for (size_t n = 0; n < N; n++) {
		float *e = s->dw.emb + (size_t)s->inp[n] * C;
		const float *g = d->dx + n * C;
		#pragma omp simd
		for (size_t i = 0; i < C; i++)
			e[i] += g[i];
	}
}

static int
cpu_forward_backward(void *st, const int32_t *tokens, float grad_scale,
    float *loss, float *entropy)
{
	struct cpu_trainer *s = st;
	const struct vlm_config *c = &s->c;
	int err = split_tokens(s, tokens), N = s->N, V = c->vocab, C = c->dim;
	double lsum = 0, esum = 0;

	if (err)
		return err;
	forward_pass(s);
	/* The head, a slice of rows at a time: logits to gradients, then the
	 * head's weight gradient and the final norm's input gradient. */
	for (int r0 = 0; r0 < N; r0 += XENT_ROWS) {
		int rows = N - r0 < XENT_ROWS ? N - r0 : XENT_ROWS;
		double l, e;
		err = vlm_xent(s->d.dlogits, &l, &e, s->act.logits + (size_t)r0 * V,
		    s->tgt + r0, rows, V, grad_scale * rows / N);
		if (err)
			return err;
		lsum += l * rows;
		esum += e * rows;
		vlm_matmul_backward(s->d.dh + (size_t)r0 * C, s->dw.head,
		    s->d.dlogits, s->act.hf + (size_t)r0 * C, s->w.head, rows, C, V,
		    0);
	}
	memset(s->d.dx, 0, sizeof(float) * (size_t)N * C);
	vlm_rmsnorm_backward(s->d.dx, s->dw.norm, s->d.dh,
	    s->act.x + (size_t)c->layers * N * C, s->w.norm, s->act.rf, N, C);
	backward_layers(s);
	*loss = (float)(lsum / N);
	if (entropy != NULL)
		*entropy = (float)(esum / N);
	return V_OK;
}

static int
cpu_forward(void *st, const int32_t *tokens, float *loss)
{
	struct cpu_trainer *s = st;
	double l;
	int err = split_tokens(s, tokens);

	if (err)
		return err;
	forward_pass(s);
	err = vlm_xent(NULL, &l, NULL, s->act.logits, s->tgt, s->N, s->c.vocab,
	    1.0f);
	if (err)
		return err;
	*loss = (float)l;
	return V_OK;
}

static int
cpu_grad_norm(void *st, float *norm)
{
	struct cpu_trainer *s = st;
	*norm = (float)velvet_norm(s->grads, s->P);
	return V_OK;
}

static int
cpu_step(void *st, const struct velvet_hparams *h, float lr, long t,
    float grad_mul)
{
	struct cpu_trainer *s = st;
	struct velvet_step vs;
	int err = velvet_prepare(h, s->c.vocab_used, lr, t, grad_mul, &vs);

	if (err)
		return err;
	for (int i = 0; i < s->ntens; i++) {
		const struct vlm_tensor *x = &s->tens[i];
		size_t n = (size_t)x->rows * (size_t)x->cols;
		float wd = x->is_matrix || h->decay_vectors ? h->weight_decay : 0;
		velvet_update(&vs, wd, s->params + x->offset, s->grads + x->offset,
		    s->m + x->offset, s->v + x->offset, n);
	}
	return V_OK;
}

static int
cpu_get_logits(void *st, float *out)
{
	struct cpu_trainer *s = st;
	if (!s->have_logits)
		return v_error(V_ERR_ARG, "no forward pass has run yet");
	memcpy(out, s->act.logits, sizeof(float) * (size_t)s->N * s->c.vocab);
	return V_OK;
}

const struct vlm_trainer_ops vlm_cpu_trainer = {
	.name = "cpu",
	.create = cpu_create,
	.destroy = cpu_destroy,
	.set_params = cpu_set_params,
	.get_params = cpu_get_params,
	.set_moments = cpu_set_moments,
	.get_moments = cpu_get_moments,
	.get_grads = cpu_get_grads,
	.zero_grad = cpu_zero_grad,
	.forward_backward = cpu_forward_backward,
	.forward = cpu_forward,
	.grad_norm = cpu_grad_norm,
	.step = cpu_step,
	.get_logits = cpu_get_logits,
	.set_grads = cpu_set_grads,
};
