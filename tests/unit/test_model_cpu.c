/* test_model_cpu.c: every layer of the CPU model against finite
 * differences, the whole model against finite differences of its loss, and
 * against PyTorch's logits, loss and gradients (tests/golden/). */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/model_cpu.h"
#include "../../lib/trainer.h"
#include "../../lib/velvet.h"
#include "../../lib/verr.h"
#include "../../lib/vio.h"
#include "../../lib/vjson.h"
#include "tap.h"

/* A small reproducible generator, uniform in [-1, 1). */
static uint64_t rng = 88172645463325252ull;
static float
urand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2 - 1;
}

static float *
randv(size_t n, float scale)
{
	float *p = malloc(n * sizeof *p);
	for (size_t i = 0; i < n; i++)
		p[i] = urand() * scale;
	return p;
}

/* A layer seen as out = f(inputs): the test perturbs one input array. */
struct fd_case {
	void (*fwd)(struct fd_case *);
	float *out;
	size_t nout;
	const float *r;		/* the objective is sum(r * out), in double */
	void *ctx;
};

static double
objective(struct fd_case *fc)
{
	double s = 0;
	fc->fwd(fc);
	for (size_t i = 0; i < fc->nout; i++)
		s += (double)fc->r[i] * fc->out[i];
	return s;
}

/* Central differences over every element of x (n of them) against the
 * analytic gradient ga; returns the worst error relative to the largest
 * gradient. */
static double
fd_check(struct fd_case *fc, float *x, size_t n, const float *ga, float h)
{
	double worst = 0, big = 1e-3;
	for (size_t i = 0; i < n; i++)
		if (fabs(ga[i]) > big)
			big = fabs(ga[i]);
	for (size_t i = 0; i < n; i++) {
		float x0 = x[i];
		x[i] = x0 + h;
		double up = objective(fc);
		x[i] = x0 - h;
		double dn = objective(fc);
		x[i] = x0;
		double num = (up - dn) / (2.0 * h);
		double e = fabs(num - ga[i]) / big;
		if (e > worst)
			worst = e;
	}
	return worst;
}

/* --- RMSNorm --------------------------------------------------------- */
struct norm_ctx { float *x, *w, *rstd; int N, C; };
static void
norm_fwd(struct fd_case *fc)
{
	struct norm_ctx *c = fc->ctx;
	vlm_rmsnorm_forward(fc->out, c->rstd, c->x, c->w, c->N, c->C, 1e-5f);
}

static void
test_rmsnorm(void)
{
	int N = 5, C = 12;
	struct norm_ctx c = { randv(N * C, 2), randv(C, 1), calloc(N, 4), N, C };
	float *out = calloc(N * C, 4), *r = randv(N * C, 1);
	float *dx = calloc(N * C, 4), *dw = calloc(C, 4);
	struct fd_case fc = { norm_fwd, out, (size_t)N * C, r, &c };

	norm_fwd(&fc);
	vlm_rmsnorm_backward(dx, dw, r, c.x, c.w, c.rstd, N, C);
	double ex = fd_check(&fc, c.x, N * C, dx, 1e-2f);
	double ew = fd_check(&fc, c.w, C, dw, 1e-2f);
	ok(ex < 2e-3, "rmsnorm: input gradient matches finite differences "
	    "(worst %.2g)", ex);
	ok(ew < 2e-3, "rmsnorm: weight gradient matches finite differences "
	    "(worst %.2g)", ew);
	/* dx accumulates: a second backward doubles it. */
	float keep = dx[3];
	vlm_rmsnorm_backward(dx, dw, r, c.x, c.w, c.rstd, N, C);
	is_near(dx[3], 2 * keep, 1e-6, "rmsnorm: backward adds into dx");
	free(c.x); free(c.w); free(c.rstd); free(out); free(r); free(dx); free(dw);
}

/* --- rotary ----------------------------------------------------------- */
struct rope_ctx { float *x, *cs, *sn; int B, T, nh, hd; };
static void
rope_fwd(struct fd_case *fc)
{
	struct rope_ctx *c = fc->ctx;
	memcpy(fc->out, c->x, fc->nout * 4);
	vlm_rope_forward(fc->out, c->cs, c->sn, c->B, c->T, c->nh, c->hd);
}

static void
test_rope(void)
{
	int B = 2, T = 5, nh = 3, hd = 8, n = B * T * nh * hd;
	struct rope_ctx c = { randv(n, 1), malloc(T * hd / 2 * 4),
	    malloc(T * hd / 2 * 4), B, T, nh, hd };
	float *out = calloc(n, 4), *r = randv(n, 1), *d = malloc(n * 4);
	struct fd_case fc = { rope_fwd, out, (size_t)n, r, &c };

	vlm_rope_tables(c.cs, c.sn, T, hd, 10000.0f);
	is_near(c.cs[0], 1.0, 0, "rope: position 0 is no rotation");
	/* position 3, frequency 1 of hd 8: angle 3 * 10000^(-2/8) */
	is_near(c.sn[3 * 4 + 1], sin(3 * pow(10000.0, -0.25)), 1e-6,
	    "rope: angle t * theta^(-2i/hd)");
	memcpy(d, r, n * 4);
	vlm_rope_backward(d, c.cs, c.sn, B, T, nh, hd);
	double e = fd_check(&fc, c.x, n, d, 1e-2f);
	ok(e < 1e-3, "rope: gradient matches finite differences (worst %.2g)", e);
	/* A rotation keeps each pair's length. */
	rope_fwd(&fc);
	size_t at = (size_t)(1 * T + 4) * nh * hd + hd + 2;
	double n0 = hypot(c.x[at], c.x[at + hd / 2]), n1 = hypot(out[at], out[at + hd / 2]);
	is_near(n1, n0, 1e-5, "rope: pairs (i, i+hd/2) rotate with their length kept");
	free(c.x); free(c.cs); free(c.sn); free(out); free(r); free(d);
}

/* --- attention -------------------------------------------------------- */
struct att_ctx { float *q, *k, *v, *att, *work; int B, T, H, KV, hd; };
static void
att_fwd(struct fd_case *fc)
{
	struct att_ctx *c = fc->ctx;
	vlm_attention_forward_ws(fc->out, c->att, c->q, c->k, c->v, c->B, c->T,
	    c->H, c->KV, c->hd, c->work);
}

static void
test_attention(int H, int KV)
{
	int B = 2, T = 6, hd = 4, nq = B * T * H * hd, nk = B * T * KV * hd;
	struct att_ctx c = { randv(nq, 1), randv(nk, 1), randv(nk, 1),
	    calloc((size_t)B * H * T * T, 4),
	    malloc(vlm_attention_work(B, T, H, hd) * 4), B, T, H, KV, hd };
	float *out = calloc(nq, 4), *r = randv(nq, 1);
	float *dq = malloc(nq * 4), *dk = malloc(nk * 4), *dv = malloc(nk * 4);
	struct fd_case fc = { att_fwd, out, (size_t)nq, r, &c };

	att_fwd(&fc);
	vlm_attention_backward_ws(dq, dk, dv, r, c.att, c.q, c.k, c.v, B, T, H, KV,
	    hd, c.work);
	/* The allocating forms give the same bits. */
	float *y2 = malloc(nq * 4), *att2 = calloc((size_t)B * H * T * T, 4);
	att_fwd(&fc);
	is_int(vlm_attention_forward(y2, att2, c.q, c.k, c.v, B, T, H, KV, hd), V_OK,
	    "attention forward, allocating its scratch");
	ok(memcmp(y2, out, nq * 4) == 0, "gives the same output");
	free(y2); free(att2);
	float *dq2 = malloc(nq * 4), *dk2 = malloc(nk * 4), *dv2 = malloc(nk * 4);
	is_int(vlm_attention_backward(dq2, dk2, dv2, r, c.att, c.q, c.k, c.v, B, T,
	    H, KV, hd), V_OK, "attention backward, allocating its scratch");
	ok(memcmp(dq, dq2, nq * 4) == 0 && memcmp(dk, dk2, nk * 4) == 0 &&
	    memcmp(dv, dv2, nk * 4) == 0, "gives the same gradients");
	free(dq2); free(dk2); free(dv2);
	double eq = fd_check(&fc, c.q, nq, dq, 1e-2f);
	double ek = fd_check(&fc, c.k, nk, dk, 1e-2f);
	double ev = fd_check(&fc, c.v, nk, dv, 1e-2f);
	ok(eq < 2e-3 && ek < 2e-3 && ev < 2e-3, "attention H=%d KV=%d: q, k, v "
	    "gradients match finite differences (worst %.2g %.2g %.2g)", H, KV,
	    eq, ek, ev);
	/* Causality: the first position sees only itself, so its output is
	 * its own value row. */
	ok(fabsf(out[0] - c.v[0]) < 1e-6f, "attention: position 0 attends to itself only");
	free(c.q); free(c.k); free(c.v); free(c.att); free(c.work); free(out); free(r);
	free(dq); free(dk); free(dv);
}

/* --- gated activations -------------------------------------------------- */
struct glu_ctx { float *g, *u; int act; float gamma, temp; size_t n; };
static void
glu_fwd(struct fd_case *fc)
{
	struct glu_ctx *c = fc->ctx;
	vlm_glu_forward(fc->out, c->g, c->u, c->n, c->act, c->gamma, c->temp);
}

static void
test_glu(int act, float gamma, float temp)
{
	size_t n = 64;
	struct glu_ctx c = { randv(n, 4), randv(n, 1), act, gamma, temp, n };
	float *out = malloc(n * 4), *r = randv(n, 1);
	float *dg = malloc(n * 4), *du = malloc(n * 4);
	struct fd_case fc = { glu_fwd, out, n, r, &c };

	vlm_glu_backward(dg, du, r, c.g, c.u, n, act, gamma, temp);
	double eg = fd_check(&fc, c.g, n, dg, 1e-2f);
	double eu = fd_check(&fc, c.u, n, du, 1e-2f);
	ok(eg < 1e-3 && eu < 1e-3, "gated %s (gamma %g, T %g): gradients match "
	    "finite differences (worst %.2g %.2g)", vlm_act_name(act),
	    (double)gamma, (double)temp, eg, eu);
	free(c.g); free(c.u); free(out); free(r); free(dg); free(du);
}

static void
test_activations(void)
{
	int same = 1;
	double worst = 0;
	for (int i = -400; i <= 400; i++) {
		float x = i * 0.05f;
		if (vlm_act(VLM_ACT_ERA, x, 0, 1) != vlm_act(VLM_ACT_SILU, x, 0, 1))
			same = 0;
		double d = fabs(vlm_act_grad(VLM_ACT_ERA, x, 0, 1) -
		    vlm_act_grad(VLM_ACT_SILU, x, 0, 1));
		if (d > worst)
			worst = d;
	}
	ok(same, "ERA with gamma 0, T 1 is SiLU bit for bit on [-20, 20]");
	ok(worst < 1e-6, "and so is its derivative (worst %.2g)", worst);
	/* ERA at 0: s = 1/2, H = 1 bit, f = 0; f'(0) = s (1 + gamma). */
	is_near(vlm_act_grad(VLM_ACT_ERA, 0, 0.5f, 2), 0.75, 1e-6,
	    "ERA'(0) = (1 + gamma) / 2");
	ok(isfinite(vlm_act(VLM_ACT_ERA, 1e4f, 0.5f, 1)) &&
	    isfinite(vlm_act_grad(VLM_ACT_ERA, -1e4f, 0.5f, 1)),
	    "ERA stays finite where the sigmoid saturates");
	is_near(vlm_act(VLM_ACT_GELU, 1, 0, 1), 0.841344746, 1e-6,
	    "gelu(1) = Phi(1), the exact (erf) form");
	test_glu(VLM_ACT_SILU, 0, 1);
	test_glu(VLM_ACT_GELU, 0, 1);
	test_glu(VLM_ACT_ERA, 0.5f, 1);
	test_glu(VLM_ACT_ERA, 1.3f, 0.7f);
}

/* --- cross-entropy and matmul ----------------------------------------- */
struct xent_ctx { float *z; int32_t *y; int N, V; double loss; };
static void
xent_fwd(struct fd_case *fc)
{
	struct xent_ctx *c = fc->ctx;
	vlm_xent(NULL, &c->loss, NULL, c->z, c->y, c->N, c->V, 1);
	fc->out[0] = (float)c->loss;
}

static void
test_xent(void)
{
	int N = 4, V = 9;
	int32_t y[4] = { 0, 8, 3, 3 };
	struct xent_ctx c = { randv(N * V, 3), y, N, V, 0 };
	float out, one = 1, *d = malloc(N * V * 4);
	struct fd_case fc = { xent_fwd, &out, 1, &one, &c };
	double loss, ent;

	is_int(vlm_xent(d, &loss, &ent, c.z, y, N, V, 1), V_OK, "xent runs");
	double e = fd_check(&fc, c.z, N * V, d, 1e-2f);
	ok(e < 1e-3, "xent: gradient matches finite differences (worst %.2g)", e);
	float flat[9] = { 0 };
	int32_t t0 = 2;
	vlm_xent(NULL, &loss, &ent, flat, &t0, 1, 9, 1);
	is_near(loss, log(9.0), 1e-9, "xent of uniform logits is ln V");
	is_near(ent, log(9.0), 1e-9, "and so is its entropy");
	int32_t bad = 9;
	is_int(vlm_xent(NULL, &loss, NULL, flat, &bad, 1, 9, 1), V_ERR_RANGE,
	    "a target outside the vocabulary is an error");
	free(c.z); free(d);
}

struct mm_ctx { float *x, *w; int N, in, out; };
static void
mm_fwd(struct fd_case *fc)
{
	struct mm_ctx *c = fc->ctx;
	vlm_matmul_forward(fc->out, c->x, c->w, c->N, c->in, c->out);
}

static void
test_matmul(void)
{
	int N = 3, in = 5, out = 4;
	struct mm_ctx c = { randv(N * in, 1), randv(out * in, 1), N, in, out };
	float *y = malloc(N * out * 4), *r = randv(N * out, 1);
	float *dx = malloc(N * in * 4), *dw = calloc(out * in, 4);
	struct fd_case fc = { mm_fwd, y, (size_t)N * out, r, &c };

	mm_fwd(&fc);
	double want = 0;
	for (int i = 0; i < in; i++)
		want += c.x[1 * in + i] * c.w[2 * in + i];
	is_near(y[1 * out + 2], want, 1e-6, "matmul: y = x W^T with W (out, in)");
	vlm_matmul_backward(dx, dw, r, c.x, c.w, N, in, out, 0);
	double ex = fd_check(&fc, c.x, N * in, dx, 1e-2f);
	double ew = fd_check(&fc, c.w, out * in, dw, 1e-2f);
	ok(ex < 1e-4 && ew < 1e-4, "matmul: gradients match finite differences "
	    "(worst %.2g %.2g)", ex, ew);
	free(c.x); free(c.w); free(y); free(r); free(dx); free(dw);
}

/* --- the whole model: PyTorch's values -------------------------------- */
static double
worst_rel(const float *got, const float *want, size_t n, size_t *at)
{
	double big = 0, worst = 0;
	for (size_t i = 0; i < n; i++)
		if (fabs(want[i]) > big)
			big = fabs(want[i]);
	for (size_t i = 0; i < n; i++) {
		double e = fabs((double)got[i] - want[i]) / (big > 0 ? big : 1);
		if (e > worst) {
			worst = e;
			*at = i;
		}
	}
	return worst;
}

static const void *
section(const json_t *m, const char *buf, size_t len, const char *key,
    size_t count)
{
	json_t *s = json_object_get(json_object_get(m, "sections"), key);
	size_t off = (size_t)json_integer_value(json_array_get(s, 0));
	size_t n = (size_t)json_integer_value(json_array_get(s, 1));
	if (n != count || off + n * 4 > len)
		return NULL;
	return buf + off;
}

static void
test_golden_model(const char *dir, const json_t *m)
{
	const char *name = json_string_value(json_object_get(m, "name"));
	char path[2100], *cfg_json, *bin;
	size_t len;
	struct vlm_config c;
	int B = (int)json_integer_value(json_object_get(m, "B"));
	int T = (int)json_integer_value(json_object_get(m, "T"));
	void *st;

	cfg_json = json_dumps(json_object_get(m, "config"), JSON_COMPACT);
	is_int(vlm_config_from_json(cfg_json, &c), V_OK, "golden %s: configuration", name);
	free(cfg_json);
	snprintf(path, sizeof path, "%s/%s", dir,
	    json_string_value(json_object_get(m, "file")));
	if (v_slurp(path, 0, &bin, &len) != V_OK) {
		ok(0, "golden %s: read %s", name, path);
		return;
	}
	size_t P = vlm_param_count(&c), NV = (size_t)B * T * c.vocab;
	const int32_t *tok = section(m, bin, len, "tokens", (size_t)B * (T + 1));
	const float *p = section(m, bin, len, "params", P);
	const float *lg = section(m, bin, len, "logits", NV);
	const float *gr = section(m, bin, len, "grads", P);
	if (!ok(tok && p && lg && gr, "golden %s: sections of %s fit", name, path)) {
		free(bin);
		return;
	}
	float *g = malloc(P * 4), *logits = malloc(NV * 4), loss, ent, eloss;
	is_int(vlm_cpu_trainer.create(&c, B, T, &st), V_OK, "golden %s: create", name);
	vlm_cpu_trainer.set_params(st, p);
	vlm_cpu_trainer.zero_grad(st);
	is_int(vlm_cpu_trainer.forward_backward(st, tok, 1, &loss, &ent), V_OK,
	    "golden %s: forward_backward", name);
	vlm_cpu_trainer.get_grads(st, g);
	vlm_cpu_trainer.get_logits(st, logits);
	double want_loss = json_real_value(json_object_get(m, "loss"));
	double want_ent = json_real_value(json_object_get(m, "entropy"));
	is_near(loss, want_loss, 1e-5, "golden %s: loss %.7f (torch %.7f)", name,
	    (double)loss, want_loss);
	is_near(ent, want_ent, 1e-5, "golden %s: mean entropy", name);
	size_t at = 0;
	double el = worst_rel(logits, lg, NV, &at);
	ok(el < 1e-5, "golden %s: logits within 1e-5 of the largest (worst %.2g "
	    "at %zu)", name, el, at);
	double eg = worst_rel(g, gr, P, &at);
	ok(eg < 1e-5, "golden %s: every gradient within 1e-5 of the largest "
	    "(worst %.2g at %zu)", name, eg, at);
	/* Per tensor too, so that a small tensor's error is not hidden by a
	 * large one's scale. */
	int nt = vlm_layout(&c, NULL);
	struct vlm_tensor *tt = calloc(nt, sizeof *tt);
	vlm_layout(&c, tt);
	double worst_t = 0;
	const char *worst_name = "";
	for (int i = 0; i < nt; i++) {
		size_t n = (size_t)tt[i].rows * tt[i].cols;
		double e = worst_rel(g + tt[i].offset, gr + tt[i].offset, n, &at);
		if (e > worst_t) {
			worst_t = e;
			worst_name = tt[i].name;
		}
	}
	ok(worst_t < 1e-4, "golden %s: each tensor's gradient within 1e-4 of its "
	    "largest (worst %.2g in %s)", name, worst_t, worst_name);
	/* forward alone gives the same loss and keeps the gradients. */
	is_int(vlm_cpu_trainer.forward(st, tok, &eloss), V_OK, "golden %s: forward", name);
	ok(eloss == loss, "golden %s: forward gives forward_backward's loss", name);
	float *g2 = malloc(P * 4);
	vlm_cpu_trainer.get_grads(st, g2);
	ok(memcmp(g, g2, P * 4) == 0, "golden %s: forward leaves gradients alone", name);
	/* Accumulation: a second pass at scale 0.5 adds half again. */
	vlm_cpu_trainer.forward_backward(st, tok, 0.5f, &loss, NULL);
	vlm_cpu_trainer.get_grads(st, g2);
	size_t k = tt[1].offset + 3;
	is_near(g2[k], 1.5 * g[k], 1e-5, "golden %s: gradients accumulate with "
	    "grad_scale", name);
	vlm_cpu_trainer.destroy(st);
	free(tt); free(g); free(g2); free(logits); free(bin);
}

/* Whole training steps: accumulation, clipping, AdamW with decay on the
 * matrices, through vlm_cpu_trainer's step, against torch in float64. */
static void
test_golden_train(const char *dir, const json_t *m)
{
	const char *name = json_string_value(json_object_get(m, "name"));
	char path[2100], *cfg_json, *bin;
	size_t len;
	struct vlm_config c;
	int B = (int)json_integer_value(json_object_get(m, "B"));
	int T = (int)json_integer_value(json_object_get(m, "T"));
	int steps = (int)json_integer_value(json_object_get(m, "steps"));
	int accum = (int)json_integer_value(json_object_get(m, "accum"));
	json_t *losses = json_object_get(m, "losses");
	struct velvet_hparams h;
	void *st;

	cfg_json = json_dumps(json_object_get(m, "config"), JSON_COMPACT);
	vlm_config_from_json(cfg_json, &c);
	free(cfg_json);
	snprintf(path, sizeof path, "%s/%s", dir,
	    json_string_value(json_object_get(m, "file")));
	if (!ok(v_slurp(path, 0, &bin, &len) == V_OK, "read %s", path))
		return;
	size_t P = vlm_param_count(&c), per = (size_t)B * (T + 1);
	const float *p0 = section(m, bin, len, "params0", P);
	const int32_t *tok = section(m, bin, len, "tokens", per * steps * accum);
	const float *p1 = section(m, bin, len, "params", P);
	if (!ok(p0 && tok && p1, "train %s: sections fit", name)) {
		free(bin);
		return;
	}
	velvet_defaults(&h);
	h.beta1 = (float)json_number_value(json_object_get(m, "beta1"));
	h.beta2 = (float)json_number_value(json_object_get(m, "beta2"));
	h.eps = (float)json_number_value(json_object_get(m, "eps"));
	h.weight_decay = (float)json_number_value(json_object_get(m, "weight_decay"));
	float lr = (float)json_number_value(json_object_get(m, "lr"));
	float clip = (float)json_number_value(json_object_get(m, "clip"));
	double worst_loss = 0;
	vlm_cpu_trainer.create(&c, B, T, &st);
	vlm_cpu_trainer.set_params(st, p0);
	for (int t = 0; t < steps; t++) {
		double lsum = 0;
		float l, norm;
		vlm_cpu_trainer.zero_grad(st);
		for (int a = 0; a < accum; a++) {
			vlm_cpu_trainer.forward_backward(st, tok + per * (size_t)(t * accum + a),
			    1.0f / accum, &l, NULL);
			lsum += l;
		}
		double want = json_real_value(json_array_get(losses, t));
		worst_loss = fmax(worst_loss, fabs(lsum / accum - want) / want);
		vlm_cpu_trainer.grad_norm(st, &norm);
		vlm_cpu_trainer.step(st, &h, lr, t + 1, velvet_clip_factor(norm, clip));
	}
	float *p = malloc(P * 4);
	vlm_cpu_trainer.get_params(st, p);
	double worst = 0;
	size_t at = 0, off = 0;
	for (size_t i = 0; i < P; i++) {
		double e = fabs(p[i] - p1[i]);
		if (e > worst) {
			worst = e;
			at = i;
		}
		off += e > 1e-5;
	}
	ok(worst_loss < 1e-5, "train %s: the loss of each of %d steps of %d "
	    "micro-batches within 1e-5 of torch's (worst %.2g)", name, steps,
	    accum, worst_loss);
	/* Adam divides each gradient by its own size, so an element whose
	 * gradient is a cancellation (1e-6 of its row's, known in float32 to
	 * a few per cent) moves by lr whatever its accuracy, and its rounding
	 * shows at the 1e-4 level: allow one in a thousand such elements,
	 * within 1% of a step. */
	ok(off <= P / 1000 && worst < 0.01 * lr, "train %s: parameters after %d "
	    "steps of AdamW within 1e-5 of torch's but %zu of %zu (worst %.2g at "
	    "%zu; a step moves them by up to %g)", name, steps, off, P, worst,
	    at, (double)lr);
	vlm_cpu_trainer.destroy(st);
	free(p);
	free(bin);
}

static void
test_golden(void)
{
	const char *src = getenv("VESPER_SRC");
	char dir[1024], path[1200], *txt;
	size_t len;
	json_t *doc;

	snprintf(dir, sizeof dir, "%s/tests/golden", src ? src : ".");
	snprintf(path, sizeof path, "%s/golden.json", dir);
	if (!ok(v_slurp(path, 0, &txt, &len) == V_OK &&
	    v_json_parse(txt, len, path, 0, &doc) == V_OK, "read %s", path))
		return;
	free(txt);
	json_t *models = json_object_get(doc, "models");
	for (size_t i = 0; i < json_array_size(models); i++)
		test_golden_model(dir, json_array_get(models, i));
	json_t *train = json_object_get(doc, "train");
	ok(json_array_size(train) == 2, "golden.json has the training runs");
	for (size_t i = 0; i < json_array_size(train); i++)
		test_golden_train(dir, json_array_get(train, i));
	json_decref(doc);
}

/* --- the whole model: finite differences of the loss -------------------- */
static void
test_model_fd(int act, int tie)
{
	struct vlm_config c = {
		.vocab = 128, .vocab_used = 50, .dim = 8, .layers = 2, .heads = 2,
		.kv_heads = 1, .hidden = 12, .ctx = 8, .act = act, .era_gamma = 0.6f,
		.era_temp = 1.2f, .tie = tie, .norm_eps = 1e-5f, .rope_theta = 100,
	};
	int B = 2, T = 5, nt = vlm_layout(&c, NULL);
	size_t P = vlm_param_count(&c);
	struct vlm_tensor *tt = calloc(nt, sizeof *tt);
	float *p = randv(P, 0.5f), *g = malloc(P * 4), loss, up, dn;
	int32_t tok[12];
	void *st;
	double worst = 0;

	vlm_layout(&c, tt);
	for (int i = 0; i < 12; i++)
		tok[i] = (int32_t)((urand() + 1) * 24.9f);
	vlm_cpu_trainer.create(&c, B, T, &st);
	vlm_cpu_trainer.set_params(st, p);
	vlm_cpu_trainer.zero_grad(st);
	vlm_cpu_trainer.forward_backward(st, tok, 1, &loss, NULL);
	vlm_cpu_trainer.get_grads(st, g);
	/* A few elements of every tensor; the embedding at a token used. */
	for (int i = 0; i < nt; i++)
		for (int j = 0; j < 3; j++) {
			size_t n = (size_t)tt[i].rows * tt[i].cols;
			size_t k = tt[i].offset + (i == 0 ? (size_t)tok[j] * c.dim + j :
			    (size_t)((urand() + 1) / 2 * (n - 1)));
			float x0 = p[k], h = 1e-2f;
			p[k] = x0 + h;
			vlm_cpu_trainer.set_params(st, p);
			vlm_cpu_trainer.forward(st, tok, &up);
			p[k] = x0 - h;
			vlm_cpu_trainer.set_params(st, p);
			vlm_cpu_trainer.forward(st, tok, &dn);
			p[k] = x0;
			double num = ((double)up - dn) / (2 * h);
			double e = fabs(num - g[k]) / (fabs(g[k]) > 0.05 ? fabs(g[k]) : 0.05);
			if (e > worst)
				worst = e;
		}
	ok(worst < 2e-2, "whole model (%s, %s): gradients of every tensor match "
	    "finite differences of the loss (worst relative %.2g)",
	    vlm_act_name(act), tie ? "tied" : "untied", worst);
	vlm_cpu_trainer.destroy(st);
	free(tt); free(p); free(g);
}

/* The same bits on 1 and 2 threads, at sizes where every loop goes
 * parallel: what --resume's "bit for bit" rests on. */
static void
test_threads(void)
{
	struct vlm_config c = {
		.vocab = 256, .vocab_used = 256, .dim = 256, .layers = 1, .heads = 4,
		.kv_heads = 2, .hidden = 256, .ctx = 64, .act = VLM_ACT_ERA,
		.era_gamma = 0.5f, .era_temp = 1, .tie = 0, .norm_eps = 1e-5f,
		.rope_theta = 10000,
	};
	int B = 4, T = 64;
	size_t P = vlm_param_count(&c);
	float *p = randv(P, 0.1f), *g1 = malloc(P * 4), *g2 = malloc(P * 4);
	float *p1 = malloc(P * 4), *p2 = malloc(P * 4), *zero = calloc(P, 4);
	float l1, l2;
	int32_t *tok = malloc(sizeof *tok * B * (T + 1));
	struct velvet_hparams h;
	void *st;

	velvet_defaults(&h);
	for (int i = 0; i < B * (T + 1); i++)
		tok[i] = (int32_t)((urand() + 1) * 127.9f);
	vlm_cpu_trainer.create(&c, B, T, &st);
	for (int run = 0; run < 2; run++) {
		omp_set_num_threads(run + 1);
		vlm_cpu_trainer.set_params(st, p);
		vlm_cpu_trainer.set_moments(st, zero, zero);
		vlm_cpu_trainer.zero_grad(st);
		vlm_cpu_trainer.forward_backward(st, tok, 1, run ? &l2 : &l1, NULL);
		vlm_cpu_trainer.get_grads(st, run ? g2 : g1);
		vlm_cpu_trainer.step(st, &h, 1e-3f, 1, 1);
		vlm_cpu_trainer.get_params(st, run ? p2 : p1);
	}
	omp_set_num_threads(omp_get_num_procs());
	ok(l1 == l2 && memcmp(g1, g2, P * 4) == 0 && memcmp(p1, p2, P * 4) == 0,
	    "1 and 2 threads give the same loss, gradients and step, bit for bit");
	vlm_cpu_trainer.destroy(st);
	free(p); free(g1); free(g2); free(p1); free(p2); free(zero); free(tok);
}

static void
test_errors(void)
{
	struct vlm_config c;
	void *st;
	float loss;

	vlm_preset("tiny", 200, &c);
	is_int(vlm_cpu_trainer.create(&c, 1, c.ctx + 1, &st), V_ERR_ARG,
	    "a micro-batch longer than the context is refused");
	c.ctx = 8;
	is_int(vlm_cpu_trainer.create(&c, 1, 4, &st), V_OK, "create tiny");
	int32_t tok[5] = { 1, 2, 3, 256, 4 };
	is_int(vlm_cpu_trainer.forward(st, tok, &loss), V_ERR_RANGE,
	    "a token beyond the vocabulary is an error, not a wild read");
	float *lg = malloc(4 * 256 * 4);
	tok[3] = 3;
	is_int(vlm_cpu_trainer.forward(st, tok, &loss), V_OK, "zero weights run");
	is_near(loss, log(256.0), 1e-5, "all-zero weights predict uniformly: ln V");
	is_int(vlm_cpu_trainer.get_logits(st, lg), V_OK, "logits");
	free(lg);
	vlm_cpu_trainer.destroy(st);
}

int
main(void)
{
	test_rmsnorm();
	test_rope();
	test_attention(4, 4);
	test_attention(4, 2);
	test_attention(3, 1);
	test_activations();
	test_xent();
	test_matmul();
	test_model_fd(VLM_ACT_SILU, 0);
	test_model_fd(VLM_ACT_ERA, 1);
	test_model_fd(VLM_ACT_GELU, 0);
	test_golden();
	test_threads();
	test_errors();
	return done_testing();
}
