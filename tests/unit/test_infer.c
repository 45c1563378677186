/* test_infer.c: the CPU inference step against a plain full-sequence
 * forward written here in double precision, the key/value cache against
 * recomputation, batched steps against single ones, the bf16/INT8/INT4
 * kernels against their dequantised fp32 matrices, and checkpoint loading
 * (good and hostile files). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../lib/bf16.h"
#include "../../lib/infer.h"
#include "../../lib/safetensors.h"
#include "../../lib/trainer.h"
#include "../../lib/verr.h"
#include "tap.h"

static uint64_t rng_state = 88172645463325252ULL;

static double
urand(void)	/* uniform in [-1, 1) */
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (double)(rng_state >> 11) / 4503599627370496.0 - 1.0;
}

static void
test_config(struct vlm_config *c, int act, int tie)
{
	memset(c, 0, sizeof *c);
	c->vocab = 256;
	c->vocab_used = 200;
	c->dim = 64;
	c->layers = 2;
	c->heads = 4;
	c->kv_heads = 2;	/* grouped-query attention, to test the mapping */
	c->hidden = 96;
	c->ctx = 24;
	c->act = act;
	c->era_gamma = 0.7f;
	c->era_temp = 1.5f;
	c->tie = tie;
	c->norm_eps = 1e-5f;
	c->rope_theta = 10000.0f;
}

static float *
random_params(const struct vlm_config *c)
{
	int nt = vlm_layout(c, NULL);
	struct vlm_tensor *t = malloc((size_t)nt * sizeof *t);
	vlm_layout(c, t);
	size_t total = t[nt - 1].offset + (size_t)t[nt - 1].rows * t[nt - 1].cols;
	float *p = malloc(total * sizeof *p);
	for (int i = 0; i < nt; i++) {
		size_t e = (size_t)t[i].rows * t[i].cols;
		/* Weights of about 1/sqrt(in) keep activations near 1, so
		 * that the comparison is not of tiny numbers. */
		double sc = t[i].is_matrix ? 2.0 / sqrt(t[i].cols) : 0.3;
		for (size_t j = 0; j < e; j++)
			p[t[i].offset + j] = (float)(t[i].is_matrix ? sc * urand() :
			    1.0 + sc * urand());
	}
	free(t);
	return p;
}

/* ---- the reference: every position recomputed, in double ---- */

static const float *
ref_tensor(const struct vlm_config *c, const float *p, int layer,
    const char *name)
{
	int nt = vlm_layout(c, NULL);
	struct vlm_tensor *t = malloc((size_t)nt * sizeof *t);
	char full[96];
	const float *r = NULL;
	vlm_layout(c, t);
	if (layer >= 0)
		snprintf(full, sizeof full, "model.layers.%d.%s", layer, name);
	else
		snprintf(full, sizeof full, "%s", name);
	for (int i = 0; i < nt; i++)
		if (strcmp(t[i].name, full) == 0)
			r = p + t[i].offset;
	free(t);
	return r;
}

static void
ref_matvec(const float *w, const double *x, double *y, int rows, int cols)
{
	for (int r = 0; r < rows; r++) {
		double s = 0;
		for (int k = 0; k < cols; k++)
			s += (double)w[(size_t)r * cols + k] * x[k];
		y[r] = s;
	}
}

static void
ref_rmsnorm(const double *x, const float *w, double *out, int n, double eps)
{
	double ss = 0;
	for (int i = 0; i < n; i++)
		ss += x[i] * x[i];
	double k = 1 / sqrt(ss / n + eps);
	for (int i = 0; i < n; i++)
		out[i] = x[i] * k * w[i];
}

static double
ref_act(const struct vlm_config *c, double x)
{
	if (c->act == VLM_ACT_GELU)
		return x * 0.5 * (1 + erf(x / sqrt(2.0)));
	double s = 1 / (1 + exp(-x / (c->act == VLM_ACT_ERA ? c->era_temp : 1)));
	if (c->act != VLM_ACT_ERA)
		return x * s;
	double h = (s <= 0 || s >= 1) ? 0 :
	    -(s * log(s) + (1 - s) * log(1 - s)) / log(2.0);
	return x * s * (1 + c->era_gamma * h);
}

static void
ref_rope(double *v, int hd, int pos, double theta)
{
	for (int i = 0; i < hd / 2; i++) {
		double a = pos * pow(theta, -2.0 * i / hd);
		double x0 = v[i], x1 = v[i + hd / 2];
		v[i] = x0 * cos(a) - x1 * sin(a);
		v[i + hd / 2] = x1 * cos(a) + x0 * sin(a);
	}
}

/* logits (T, vocab_used) for tokens[0..T). */
static void
ref_forward(const struct vlm_config *c, const float *p, const int *tok,
    int T, double *logits)
{
	int C = c->dim, H = c->heads, KV = c->kv_heads, hd = C / H, F = c->hidden;
	int kvd = KV * hd;
	double *x = calloc((size_t)T * C, sizeof *x);
	double *q = calloc((size_t)T * C, sizeof *q);
	double *k = calloc((size_t)T * kvd, sizeof *k);
	double *v = calloc((size_t)T * kvd, sizeof *v);
	double *xb = calloc((size_t)C, sizeof *xb), *o = calloc((size_t)C, sizeof *o);
	double *y = calloc((size_t)C, sizeof *y);
	double *g = calloc((size_t)F, sizeof *g), *u = calloc((size_t)F, sizeof *u);
	double *sc = calloc((size_t)T, sizeof *sc);
	const float *emb = ref_tensor(c, p, -1, "model.embed_tokens.weight");

	for (int t = 0; t < T; t++)
		for (int i = 0; i < C; i++)
			x[(size_t)t * C + i] = emb[(size_t)tok[t] * C + i];
	for (int l = 0; l < c->layers; l++) {
		for (int t = 0; t < T; t++) {
			ref_rmsnorm(x + (size_t)t * C, ref_tensor(c, p, l,
			    "input_layernorm.weight"), xb, C, c->norm_eps);
			ref_matvec(ref_tensor(c, p, l, "self_attn.q_proj.weight"),
			    xb, q + (size_t)t * C, C, C);
			ref_matvec(ref_tensor(c, p, l, "self_attn.k_proj.weight"),
			    xb, k + (size_t)t * kvd, kvd, C);
			ref_matvec(ref_tensor(c, p, l, "self_attn.v_proj.weight"),
			    xb, v + (size_t)t * kvd, kvd, C);
			for (int h = 0; h < H; h++)
				ref_rope(q + (size_t)t * C + h * hd, hd, t, c->rope_theta);
			for (int h = 0; h < KV; h++)
				ref_rope(k + (size_t)t * kvd + h * hd, hd, t,
				    c->rope_theta);
		}
		for (int t = 0; t < T; t++) {
			for (int h = 0; h < H; h++) {
				int kh = h / (H / KV);
				double mx = -INFINITY, sum = 0;
				for (int s = 0; s <= t; s++) {
					double d = 0;
					for (int i = 0; i < hd; i++)
						d += q[(size_t)t * C + h * hd + i] *
						    k[(size_t)s * kvd + kh * hd + i];
					sc[s] = d / sqrt(hd);
					mx = fmax(mx, sc[s]);
				}
				for (int s = 0; s <= t; s++)
					sum += sc[s] = exp(sc[s] - mx);
				for (int i = 0; i < hd; i++) {
					double a = 0;
					for (int s = 0; s <= t; s++)
						a += sc[s] / sum *
						    v[(size_t)s * kvd + kh * hd + i];
					o[h * hd + i] = a;
				}
			}
			ref_matvec(ref_tensor(c, p, l, "self_attn.o_proj.weight"),
			    o, y, C, C);
			for (int i = 0; i < C; i++)
				x[(size_t)t * C + i] += y[i];
			ref_rmsnorm(x + (size_t)t * C, ref_tensor(c, p, l,
			    "post_attention_layernorm.weight"), xb, C, c->norm_eps);
			ref_matvec(ref_tensor(c, p, l, "mlp.gate_proj.weight"), xb,
			    g, F, C);
			ref_matvec(ref_tensor(c, p, l, "mlp.up_proj.weight"), xb,
			    u, F, C);
			for (int i = 0; i < F; i++)
				g[i] = ref_act(c, g[i]) * u[i];
			ref_matvec(ref_tensor(c, p, l, "mlp.down_proj.weight"), g,
			    y, C, F);
			for (int i = 0; i < C; i++)
				x[(size_t)t * C + i] += y[i];
		}
	}
	const float *head = c->tie ? emb : ref_tensor(c, p, -1, "lm_head.weight");
	for (int t = 0; t < T; t++) {
		ref_rmsnorm(x + (size_t)t * C, ref_tensor(c, p, -1,
		    "model.norm.weight"), xb, C, c->norm_eps);
		ref_matvec(head, xb, logits + (size_t)t * c->vocab_used,
		    c->vocab_used, C);
	}
	free(x); free(q); free(k); free(v); free(xb); free(o); free(y);
	free(g); free(u); free(sc);
}

/* The largest |a - b| over n, relative to the largest |b| (at least 1). */
static double
max_rel(const float *a, const double *b, int n)
{
	double d = 0, s = 1;
	for (int i = 0; i < n; i++) {
		d = fmax(d, fabs(a[i] - b[i]));
		s = fmax(s, fabs(b[i]));
	}
	return d / s;
}

/* Decode token by token; logits of every position into out (T, Vu). */
static int
decode_all(const struct infer_model *m, const int *tok, int T, float *out)
{
	struct infer_state st;
	struct infer_work w;
	int err = infer_state_init(&st, m, T);
	if (err == V_OK)
		err = infer_work_init(&w, m, 1);
	for (int t = 0; t < T && err == V_OK; t++) {
		struct infer_slot s = { &st, tok[t], t,
		    out + (size_t)t * m->c.vocab_used };
		err = infer_step(m, &w, &s, 1);
	}
	infer_work_free(&w);
	infer_state_free(&st);
	return err;
}

static void
test_forward(int act, int tie)
{
	struct vlm_config c;
	struct infer_model m;
	test_config(&c, act, tie);
	float *p = random_params(&c);
	int T = c.ctx, Vu = c.vocab_used;
	int tok[64];
	for (int t = 0; t < T; t++)
		tok[t] = (int)((urand() + 1) / 2 * Vu) % Vu;
	double *ref = malloc((size_t)T * Vu * sizeof *ref);
	float *got = malloc((size_t)T * Vu * sizeof *got);
	ref_forward(&c, p, tok, T, ref);

	int err = infer_model_from_flat(&m, &c, p, INFER_F32);
	is_int(err, V_OK, "%s%s: model from the flat array",
	    vlm_act_name(act), tie ? " tied" : "");
	err = decode_all(&m, tok, T, got);
	is_int(err, V_OK, "decode %d tokens", T);
	double e = max_rel(got, ref, T * Vu);
	ok(e < 2e-5, "%s%s: cached decode == full recompute at every "
	    "position (worst relative error %.2g)", vlm_act_name(act),
	    tie ? " tied" : "", e);

	/* The whole prompt in one step (the prefill path, with BLAS). */
	struct infer_state st;
	struct infer_work w;
	struct infer_slot sl[64];
	infer_state_init(&st, &m, T);
	infer_work_init(&w, &m, T);
	for (int t = 0; t < T; t++)
		sl[t] = (struct infer_slot){ &st, tok[t], t,
		    got + (size_t)t * Vu };
	memset(got, 0, (size_t)T * Vu * sizeof *got);
	err = infer_step(&m, &w, sl, T);
	e = max_rel(got, ref, T * Vu);
	ok(err == V_OK && e < 2e-5, "one step of %d slots == reference "
	    "(worst relative error %.2g)", T, e);

	/* Half the prompt as a chunk, the rest token by token, only the
	 * last position asking for logits. */
	infer_step(&m, &w, sl, T / 2);
	for (int t = T / 2; t < T; t++) {
		struct infer_slot one = { &st, tok[t], t,
		    t == T - 1 ? got : NULL };
		infer_step(&m, &w, &one, 1);
	}
	e = max_rel(got, ref + (size_t)(T - 1) * Vu, Vu);
	ok(e < 2e-5, "chunk then single steps: last logits == reference "
	    "(%.2g)", e);
	/* Bad slots are refused before anything is computed (once). */
	if (act == VLM_ACT_SILU) {
		struct infer_slot bad = { &st, c.vocab, 0, got };
		ok(infer_step(&m, &w, &bad, 1) == V_ERR_RANGE,
		    "a token beyond the vocabulary is refused");
		bad = (struct infer_slot){ &st, 1, T, got };
		ok(infer_step(&m, &w, &bad, 1) == V_ERR_RANGE,
		    "a position beyond the cache is refused");
		ok(infer_step(&m, &w, sl, T + 1) == V_ERR_RANGE,
		    "more slots than the work space holds are refused");
		struct infer_state big;
		ok(infer_state_init(&big, &m, c.ctx + 1) == V_ERR_RANGE,
		    "a cache longer than the context is refused");
	}
	infer_work_free(&w);
	infer_state_free(&st);
	infer_model_free(&m);
	free(ref);
	free(got);
	free(p);
}

/* Three sequences in one batched step each time equal each alone. */
static void
test_batch(void)
{
	struct vlm_config c;
	struct infer_model m;
	test_config(&c, VLM_ACT_SILU, 0);
	float *p = random_params(&c);
	int T = 10, Vu = c.vocab_used, B = 3;
	int tok[3][10];
	for (int b = 0; b < B; b++)
		for (int t = 0; t < T; t++)
			tok[b][t] = (b * 37 + t * 11) % Vu;
	for (int as = INFER_F32; as <= INFER_BF16; as++) {
		infer_model_from_flat(&m, &c, p, as);
		float *alone = malloc((size_t)B * T * Vu * sizeof *alone);
		float *bat = malloc((size_t)B * T * Vu * sizeof *bat);
		for (int b = 0; b < B; b++)
			decode_all(&m, tok[b], T, alone + (size_t)b * T * Vu);
		struct infer_state st[3];
		struct infer_work w;
		infer_work_init(&w, &m, B);
		for (int b = 0; b < B; b++)
			infer_state_init(&st[b], &m, T);
		int err = V_OK;
		for (int t = 0; t < T && err == V_OK; t++) {
			struct infer_slot sl[3];
			for (int b = 0; b < B; b++)
				sl[b] = (struct infer_slot){ &st[b], tok[b][t], t,
				    bat + ((size_t)b * T + t) * Vu };
			err = infer_step(&m, &w, sl, B);
		}
		double d = 0;
		for (size_t i = 0; i < (size_t)B * T * Vu; i++)
			d = fmax(d, fabs(alone[i] - bat[i]));
		ok(err == V_OK && d < 1e-4, "%s: a batch of %d sequences == "
		    "each alone (worst difference %.2g)", m.dtype_name, B, d);
		for (int b = 0; b < B; b++)
			infer_state_free(&st[b]);
		infer_work_free(&w);
		infer_model_free(&m);
		free(alone);
		free(bat);
	}
	free(p);
}

/* ---- the kernels of each weight type ---- */

struct qmat {
	struct infer_mat m;
	void *w;
	float *scale;
	float *deq;	/* the matrix the kernel should behave as */
};

static void
make_qmat(struct qmat *q, int type, int rows, int cols, int group)
{
	size_t e = (size_t)rows * cols;
	memset(q, 0, sizeof *q);
	q->deq = malloc(e * sizeof *q->deq);
	q->m = (struct infer_mat){ type, rows, cols, group, NULL, NULL };
	if (type == INFER_F32) {
		float *f = malloc(e * sizeof *f);
		for (size_t i = 0; i < e; i++)
			q->deq[i] = f[i] = (float)urand();
		q->w = f;
	} else if (type == INFER_BF16) {
		uint16_t *h = malloc(e * sizeof *h);
		for (size_t i = 0; i < e; i++) {
			h[i] = v_f32_to_bf16((float)urand());
			q->deq[i] = v_bf16_to_f32(h[i]);
		}
		q->w = h;
	} else if (type == INFER_Q8) {
		int8_t *w = malloc(e);
		q->scale = malloc((size_t)rows * sizeof(float));
		for (int r = 0; r < rows; r++) {
			q->scale[r] = (float)(0.01 * (1.5 + urand()));
			for (int c = 0; c < cols; c++) {
				size_t i = (size_t)r * cols + c;
				w[i] = (int8_t)lrint(127 * urand());
				q->deq[i] = w[i] * q->scale[r];
			}
		}
		q->w = w;
	} else {
		uint8_t *w = malloc(e / 2);
		int ng = cols / group;
		q->scale = malloc((size_t)rows * ng * sizeof(float));
		for (size_t i = 0; i < (size_t)rows * ng; i++)
			q->scale[i] = (float)(0.05 * urand());	/* signs too */
		for (int r = 0; r < rows; r++)
			for (int c = 0; c < cols; c += 2) {
				int lo = (int)((urand() + 1) * 8) & 15;
				int hi = (int)((urand() + 1) * 8) & 15;
				size_t i = (size_t)r * cols + c;
				w[i / 2] = (uint8_t)(lo | hi << 4);
				float s = q->scale[(size_t)r * ng + c / group];
				q->deq[i] = (float)(lo - 8) * s;
				q->deq[i + 1] = (float)(hi - 8) * s;
			}
		q->w = w;
	}
	q->m.w = q->w;
	q->m.scale = q->scale;
}

static void
free_qmat(struct qmat *q)
{
	free(q->w);
	free(q->scale);
	free(q->deq);
}

static void
test_kernels(void)
{
	static const struct { int type, group; const char *name; } k[] = {
		{ INFER_F32, 0, "f32" }, { INFER_BF16, 0, "bf16" },
		{ INFER_Q8, 0, "int8" },
		{ INFER_Q4, 32, "int4 g32" }, { INFER_Q4, 64, "int4 g64" },
		{ INFER_Q4, 128, "int4 g128" },
	};
	/* n above the 16 inputs of the small-batch loops: the BLAS tiles. */
	int rows = 300, cols = 384, n = 20;
	float *x = malloc((size_t)n * cols * sizeof *x);
	float *y = malloc((size_t)n * rows * sizeof *y);
	double *ref = malloc((size_t)n * rows * sizeof *ref);
	float *row = malloc((size_t)cols * sizeof *row);
	for (int i = 0; i < n * cols; i++)
		x[i] = (float)urand();
	/* INT8 and INT4 twice: the hand-written AVX2 kernels where the CPU has
	 * them, then the portable ones. */
	int passes = infer_simd(1) ? 2 : 1;
	for (int pass = 0; pass < passes; pass++)
	for (size_t i = 0; i < sizeof k / sizeof k[0]; i++) {
		int simd = infer_simd(pass == 0);
		int hand = k[i].type == INFER_Q8 || k[i].type == INFER_Q4;
		if (pass == 1 && !hand)
			continue;	/* the switch concerns INT8/INT4 only */
		simd &= hand;
		struct qmat q;
		make_qmat(&q, k[i].type, rows, cols, k[i].group);
		for (int b = 0; b < n; b++) {
			double dx[384];
			for (int j = 0; j < cols; j++)
				dx[j] = x[(size_t)b * cols + j];
			ref_matvec(q.deq, dx, ref + (size_t)b * rows, rows, cols);
		}
		/* One input (the decode kernel) and several (the expanded
		 * rows of the batched path). */
		infer_matmul(&q.m, x, y, 1);
		double e1 = max_rel(y, ref, rows);
		infer_matmul(&q.m, x, y, 5);
		double e5 = max_rel(y, ref, 5 * rows);
		infer_matmul(&q.m, x, y, n);
		double en = max_rel(y, ref, n * rows);
		ok(e1 < 1e-5 && e5 < 1e-5 && en < 1e-5, "%s matvec%s == the "
		    "dequantised fp32 product (relative error %.2g for 1 input, "
		    "%.2g for 5, %.2g for %d)", k[i].name, simd ? " (AVX2)" : "",
		    e1, e5, en, n);
		int same = 1;
		for (int r = 0; r < rows; r += 37) {
			infer_mat_row(&q.m, r, row);
			same &= memcmp(row, q.deq + (size_t)r * cols,
			    (size_t)cols * sizeof *row) == 0;
		}
		ok(same, "%s: a row expands to exactly its dequantised values",
		    k[i].name);
		free_qmat(&q);
	}
	infer_simd(1);
	free(x);
	free(y);
	free(ref);
	free(row);
}

/* A whole model with INT8 and INT4 matrices gives the logits of the fp32
 * model holding their dequantised values. */
static void
test_quantised_model(void)
{
	struct vlm_config c;
	test_config(&c, VLM_ACT_SILU, 0);
	float *p = random_params(&c);
	int nt = vlm_layout(&c, NULL);
	struct vlm_tensor *t = malloc((size_t)nt * sizeof *t);
	vlm_layout(&c, t);
	for (int type = INFER_Q8; type <= INFER_Q4; type++) {
		struct infer_model mq, mf;
		struct qmat *qm = calloc((size_t)nt, sizeof *qm);
		float *pd = malloc((t[nt - 1].offset + (size_t)t[nt - 1].rows *
		    t[nt - 1].cols) * sizeof *pd);
		memcpy(pd, p, (t[nt - 1].offset + (size_t)t[nt - 1].rows *
		    t[nt - 1].cols) * sizeof *pd);
		/* Replace every matrix but the embedding with a random
		 * quantised one, and the fp32 copy with its dequantisation. */
		for (int i = 1; i < nt; i++) {
			if (!t[i].is_matrix)
				continue;
			make_qmat(&qm[i], type, t[i].rows, t[i].cols, 32);
			memcpy(pd + t[i].offset, qm[i].deq, (size_t)t[i].rows *
			    t[i].cols * sizeof *pd);
		}
		infer_model_from_flat(&mf, &c, pd, INFER_F32);
		infer_model_from_flat(&mq, &c, pd, INFER_F32);
		for (int i = 1; i < nt; i++) {
			if (!t[i].is_matrix)
				continue;
			struct infer_mat *d = t[i].layer < 0 ? &mq.head : NULL;
			if (d == NULL) {
				struct infer_layer *y = &mq.layer[t[i].layer];
				struct infer_mat *all[] = { &y->wq, &y->wk, &y->wv,
				    &y->wo, &y->gate, &y->up, &y->down };
				for (int j = 0; j < 7; j++)
					if (all[j]->w == pd + t[i].offset)
						d = all[j];
			}
			int rows = d->rows;
			*d = qm[i].m;
			d->rows = rows;
		}
		int T = 12, tok[12];
		for (int j = 0; j < T; j++)
			tok[j] = (j * 29 + 3) % c.vocab_used;
		float *a = malloc((size_t)T * c.vocab_used * sizeof *a);
		float *b = malloc((size_t)T * c.vocab_used * sizeof *b);
		decode_all(&mf, tok, T, a);
		decode_all(&mq, tok, T, b);
		double d = 0, s = 1;
		for (int j = 0; j < T * c.vocab_used; j++) {
			d = fmax(d, fabs(a[j] - b[j]));
			s = fmax(s, fabs(a[j]));
		}
		ok(d / s < 1e-4, "%s model == fp32 model of its dequantised "
		    "weights over %d positions (relative %.2g)",
		    type == INFER_Q8 ? "INT8" : "INT4", T, d / s);
		infer_model_free(&mq);
		infer_model_free(&mf);
		for (int i = 0; i < nt; i++)
			if (qm[i].deq != NULL)
				free_qmat(&qm[i]);
		free(qm);
		free(pd);
		free(a);
		free(b);
	}
	free(t);
	free(p);
}

static void
test_act(void)
{
	struct vlm_config c;
	test_config(&c, VLM_ACT_ERA, 0);
	c.era_gamma = 0;
	c.era_temp = 1;
	struct vlm_config s = c;
	s.act = VLM_ACT_SILU;
	double d = 0;
	for (double x = -8; x <= 8; x += 0.125)
		d = fmax(d, fabs(infer_act(&c, (float)x) - infer_act(&s, (float)x)));
	ok(d < 1e-6, "ERA with gamma 0, T 1 is SiLU (worst %.2g)", d);
	c.era_gamma = 0.5f;
	c.era_temp = 2;
	/* At x = 0: s = 1/2, H = 1 bit, so a(0) = 0 whatever gamma is, and
	 * the slope there is s(1 + gamma) = 0.75. */
	float sl = (infer_act(&c, 1e-3f) - infer_act(&c, -1e-3f)) / 2e-3f;
	is_near(sl, 0.75, 1e-3, "ERA slope at 0 is (1 + gamma)/2");
	ok(isfinite(infer_act(&c, 200)) && isfinite(infer_act(&c, -200)),
	    "ERA is finite far from 0 (0 log 0 handled)");
}

/* ---- checkpoints through safetensors ---- */

/* Write p as a checkpoint.  quant 8 or 4 quantises the block matrices and
 * the untied head as vesper-checkpoint(5) says (INT4 in groups of 32), and
 * leaves in deq the fp32 values they stand for.  hostile: 1 drops the
 * first scale tensor, 2 gives it the wrong shape, 3 stores the first norm
 * vector as I32. */
static int
write_ckpt(const char *path, const struct vlm_config *c, const float *p,
    int dtype, const char *cfg_override, int quant, float *deq, int hostile)
{
	int nt = vlm_layout(c, NULL);
	struct vlm_tensor *t = malloc((size_t)nt * sizeof *t);
	struct st_wtensor *w = calloc(2 * (size_t)nt, sizeof *w);
	void **bufs = calloc(2 * (size_t)nt, sizeof *bufs);
	char (*names)[80] = calloc((size_t)nt, sizeof *names);
	size_t n = 0, nb = 0;
	int first = 1;
	vlm_layout(c, t);
	for (int i = 0; i < nt; i++) {
		struct st_wtensor *x = &w[n++];
		size_t e = (size_t)t[i].rows * t[i].cols;
		x->name = t[i].name;
		x->dtype = dtype;
		x->ndim = t[i].is_matrix ? 2 : 1;
		x->shape[0] = t[i].is_matrix ? t[i].rows : t[i].cols;
		x->shape[1] = t[i].cols;
		x->f32 = p + t[i].offset;
		if (deq != NULL)
			memcpy(deq + t[i].offset, p + t[i].offset, e * sizeof *deq);
		if (hostile == 3 && !t[i].is_matrix && first) {
			int32_t *v = calloc(e, sizeof *v);
			bufs[nb++] = v;
			x->dtype = ST_I32;
			x->f32 = NULL;
			x->data = v;
			first = 0;
		}
		if (quant == 0 || !t[i].is_matrix || i == 0)
			continue;
		int R = t[i].rows, K = t[i].cols, G = quant == 8 ? K : 32;
		int ng = K / G;
		uint16_t *sc = calloc((size_t)R * ng, sizeof *sc);
		void *q = malloc(quant == 8 ? e : e / 2);
		bufs[nb++] = sc;
		bufs[nb++] = q;
		for (int r = 0; r < R; r++)
			for (int g = 0; g < ng; g++) {
				const float *src = p + t[i].offset + (size_t)r * K + g * G;
				float *dq = deq + t[i].offset + (size_t)r * K + g * G;
				float big = 0, amax = 0;
				for (int j = 0; j < G; j++)
					if (fabsf(src[j]) > amax) {
						amax = fabsf(src[j]);
						big = src[j];
					}
				float s = v_bf16_to_f32(v_f32_to_bf16(quant == 8 ?
				    amax / 127 : big / -8));
				sc[(size_t)r * ng + g] = v_f32_to_bf16(s);
				for (int j = 0; j < G; j++) {
					int v;
					if (quant == 8) {
						v = s == 0 ? 0 : (int)lrintf(src[j] / s);
						v = v > 127 ? 127 : v < -127 ? -127 : v;
						((int8_t *)q)[(size_t)r * K + g * G + j] =
						    (int8_t)v;
						dq[j] = (float)v * s;
					} else {
						v = s == 0 ? 8 :
						    (int)floorf(src[j] / s + 8.5f);
						v = v > 15 ? 15 : v < 0 ? 0 : v;
						uint8_t *b = (uint8_t *)q +
						    ((size_t)r * K + g * G + j) / 2;
						if (j % 2 == 0)
							*b = (uint8_t)v;
						else
							*b |= (uint8_t)(v << 4);
						dq[j] = (float)(v - 8) * s;
					}
				}
			}
		x->dtype = quant == 8 ? ST_I8 : ST_U8;
		x->f32 = NULL;
		x->data = q;
		if (quant == 4)
			x->shape[1] = K / 2;
		struct st_wtensor *y = &w[n++];
		snprintf(names[i], sizeof names[i], "%s_scale", t[i].name);
		y->name = names[i];
		y->dtype = ST_BF16;
		y->ndim = quant == 8 ? 1 : 2;
		y->shape[0] = R;
		y->shape[1] = hostile == 2 && first ? ng + 1 : ng;
		y->data = sc;
		if (hostile == 2 && first) {
			uint16_t *big = calloc((size_t)R * (ng + 1), sizeof *big);
			bufs[nb++] = big;
			y->data = big;
		}
		if (hostile == 1 && first)
			n--;
		first = 0;
	}
	char *cj = vlm_config_json(c);
	struct st_kv meta[3] = { { "format", "vesper" },
	    { "vesper.config", cfg_override ? cfg_override : cj },
	    { "vesper.quant", quant == 8 ? "int8" : "int4" } };
	int err = st_write(path, w, n, meta, quant ? 3 : 2);
	if (err)
		diag("st_write: %s", v_errmsg(err));
	free(cj);
	for (size_t i = 0; i < nb; i++)
		free(bufs[i]);
	free(bufs);
	free(names);
	free(w);
	free(t);
	return err;
}

static void
test_checkpoint(void)
{
	struct vlm_config c;
	test_config(&c, VLM_ACT_GELU, 0);
	float *p = random_params(&c);
	char dir[] = "/tmp/test_infer.XXXXXX", path[128];
	int T = 8, Vu = c.vocab_used, tok[8] = { 5, 9, 100, 7, 7, 42, 199, 0 };
	float *a = malloc((size_t)T * Vu * sizeof *a);
	float *b = malloc((size_t)T * Vu * sizeof *b);
	struct infer_model mf, m;
	float *deq = malloc(sizeof(float) * (size_t)vlm_param_count(&c) * 2);

	if (mkdtemp(dir) == NULL) {
		ok(0, "mkdtemp");
		return;
	}
	snprintf(path, sizeof path, "%s/model.safetensors", dir);
	infer_model_from_flat(&mf, &c, p, INFER_F32);
	decode_all(&mf, tok, T, a);

	write_ckpt(path, &c, p, ST_F32, NULL, 0, NULL, 0);
	int err = infer_model_open(&m, dir);
	is_int(err, V_OK, "an F32 checkpoint directory opens");
	if (err == V_OK) {
		decode_all(&m, tok, T, b);
		ok(memcmp(a, b, (size_t)T * Vu * sizeof *a) == 0,
		    "F32 checkpoint: the logits of the in-memory model");
		is_str(m.dtype_name, "f32", "dtype reported as f32");
		infer_model_free(&m);
	}
	write_ckpt(path, &c, p, ST_BF16, NULL, 0, NULL, 0);
	err = infer_model_open(&m, path);
	is_int(err, V_OK, "a BF16 checkpoint file opens");
	if (err == V_OK) {
		decode_all(&m, tok, T, b);
		double d = 0, s = 1;
		for (int i = 0; i < T * Vu; i++) {
			d = fmax(d, fabs(a[i] - b[i]));
			s = fmax(s, fabs(a[i]));
		}
		ok(d / s < 0.05, "BF16 checkpoint: logits within bf16 rounding "
		    "of fp32 (relative %.3g)", d / s);
		is_str(m.dtype_name, "bf16", "dtype reported as bf16");
		ok(infer_model_bytes(&m) * 2 == infer_model_bytes(&mf),
		    "bf16 weights are read where they lie: half the bytes");
		infer_model_free(&m);
	}

	/* Quantised checkpoints: the logits of the fp32 model of the values
	 * they stand for. */
	for (int quant = 8; quant >= 4; quant -= 4) {
		struct infer_model md;
		write_ckpt(path, &c, p, ST_F32, NULL, quant, deq, 0);
		err = infer_model_open(&m, path);
		is_int(err, V_OK, "an INT%d checkpoint opens", quant);
		if (err)
			continue;
		is_str(m.dtype_name, quant == 8 ? "int8" : "int4-g32",
		    "its dtype is %s", m.dtype_name);
		infer_model_from_flat(&md, &c, deq, INFER_F32);
		decode_all(&m, tok, T, b);
		decode_all(&md, tok, T, a);
		double d = 0, s = 1;
		for (int i = 0; i < T * Vu; i++) {
			d = fmax(d, fabs(a[i] - b[i]));
			s = fmax(s, fabs(a[i]));
		}
		ok(d / s < 1e-5, "INT%d checkpoint == fp32 model of its "
		    "dequantised weights (relative %.2g)", quant, d / s);
		infer_model_free(&md);
		infer_model_free(&m);
	}
	decode_all(&mf, tok, T, a);

	/* Hostile or mismatched files: an error naming the file, no crash. */
	write_ckpt(path, &c, p, ST_F32, "{\"vocab\": 1}", 0, NULL, 0);
	err = infer_model_open(&m, path);
	ok(err != V_OK && strstr(v_errmsg(err), path) != NULL,
	    "a bad vesper.config is refused, naming the file: %s",
	    v_errmsg(err));
	struct vlm_config c2 = c;
	c2.hidden = 128;
	char *cj = vlm_config_json(&c2);
	write_ckpt(path, &c, p, ST_F32, cj, 0, NULL, 0);
	free(cj);
	err = infer_model_open(&m, path);
	ok(err == V_ERR_MISMATCH, "shapes that disagree with the "
	    "configuration are refused: %s", v_errmsg(err));
	write_ckpt(path, &c, p, ST_F32, NULL, 0, NULL, 3);
	err = infer_model_open(&m, path);
	ok(err == V_ERR_UNSUPPORTED, "an I32 norm vector is refused: %s",
	    v_errmsg(err));
	write_ckpt(path, &c, p, ST_F32, NULL, 8, deq, 1);
	err = infer_model_open(&m, path);
	ok(err == V_ERR_FORMAT && strstr(v_errmsg(err), "_scale"),
	    "INT8 matrix without its scale is refused: %s", v_errmsg(err));
	write_ckpt(path, &c, p, ST_F32, NULL, 4, deq, 2);
	err = infer_model_open(&m, path);
	ok(err == V_ERR_MISMATCH, "INT4 scale of the wrong shape is refused: "
	    "%s", v_errmsg(err));
	FILE *fp = fopen(path, "wb");
	/* A header of 16 bytes announced, 5 present. */
	fwrite("\x10\0\0\0\0\0\0\0{\"a\":", 1, 13, fp);
	fclose(fp);
	err = infer_model_open(&m, path);
	ok(err != V_OK, "a truncated file is refused: %s", v_errmsg(err));
	err = infer_model_open(&m, "/nonexistent/model");
	ok(err != V_OK && strstr(v_errmsg(err), "/nonexistent") != NULL,
	    "a missing path is refused: %s", v_errmsg(err));
	unlink(path);
	rmdir(dir);
	infer_model_free(&mf);
	free(deq);
	free(a);
	free(b);
	free(p);
}

/* The training model (lib/model_cpu, the backend vtrain runs) and the
 * inference step give the same logits at every position. */
static void
test_vs_trainer(int act, int tie)
{
	struct vlm_config c;
	struct infer_model m;
	void *st;
	test_config(&c, act, tie);
	float *p = random_params(&c);
	int T = 16, Vu = c.vocab_used, V = c.vocab;
	int32_t tok[17];
	int itok[17];
	for (int t = 0; t <= T; t++)
		itok[t] = tok[t] = (t * 53 + act * 7) % Vu;
	float *tl = malloc((size_t)T * V * sizeof *tl);
	float *il = malloc((size_t)T * Vu * sizeof *il);
	float loss;
	int err = vlm_cpu_trainer.create(&c, 1, T, &st);
	if (err == V_OK)
		err = vlm_cpu_trainer.set_params(st, p);
	if (err == V_OK)
		err = vlm_cpu_trainer.forward(st, tok, &loss);
	if (err == V_OK)
		err = vlm_cpu_trainer.get_logits(st, tl);
	is_int(err, V_OK, "the training model's forward pass");
	infer_model_from_flat(&m, &c, p, INFER_F32);
	decode_all(&m, itok, T, il);
	double d = 0, sc = 1;
	for (int t = 0; t < T; t++)
		for (int i = 0; i < Vu; i++) {
			double a = tl[(size_t)t * V + i], b = il[(size_t)t * Vu + i];
			d = fmax(d, fabs(a - b));
			sc = fmax(sc, fabs(a));
		}
	ok(err == V_OK && d / sc < 1e-4, "%s%s: decode with the cache == "
	    "lib/model_cpu's forward at all %d positions (relative %.2g)",
	    vlm_act_name(act), tie ? " tied" : "", T, d / sc);
	if (err == V_OK)
		vlm_cpu_trainer.destroy(st);
	infer_model_free(&m);
	free(tl);
	free(il);
	free(p);
}

int
main(void)
{
	test_vs_trainer(VLM_ACT_SILU, 0);
	test_vs_trainer(VLM_ACT_ERA, 1);
	for (int act = VLM_ACT_SILU; act <= VLM_ACT_ERA; act++)
		test_forward(act, act == VLM_ACT_GELU);
	test_batch();
	test_kernels();
	test_quantised_model();
	test_act();
	test_checkpoint();
	return done_testing();
}
