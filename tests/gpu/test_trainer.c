/* test_trainer.c: the CUDA trainer (libvesper_cuda.so, loaded as vtrain
 * loads it) against the CPU reference trainer, call by call, on small
 * models: the loss, the entropy, the logits, every gradient tensor, the
 * gradient norm, an optimizer step, and the loss curve of a short training
 * run.  Also the error paths: a token outside the vocabulary, a batch too
 * large for the device.  TAP on stdout; skips where there is no GPU.
 *
 *   test_trainer                 the checks
 *   test_trainer curve FILE N    also N steps of the small preset on the
 *                                bytes of FILE (French text), CPU and CUDA
 *                                side by side, printing both curves */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/backend.h"
#include "../../lib/trainer.h"
#include "../../lib/verr.h"
#include "../../lib/vio.h"
#include "../../lib/vlm_config.h"
#include "../unit/tap.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;

static double
urand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (double)(rng >> 11) / 9007199254740992.0;
}

static float
nrand(void)
{
	double u = urand() + 1e-12, v = urand();
	return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

/* GPT-2's initialisation: matrices N(0, 0.02), norms 1. */
static float *
init_params(const struct vlm_config *c, size_t *np)
{
	int nt = vlm_layout(c, NULL);
	struct vlm_tensor *t = calloc((size_t)nt, sizeof *t);
	vlm_layout(c, t);
	size_t P = t[nt - 1].offset + (size_t)t[nt - 1].rows * t[nt - 1].cols;
	float *p = malloc(P * sizeof *p);
	for (int i = 0; i < nt; i++) {
		size_t n = (size_t)t[i].rows * t[i].cols;
		for (size_t j = 0; j < n; j++)
			p[t[i].offset + j] = t[i].is_matrix ? 0.02f * nrand() :
			    1.0f + 0.1f * nrand();
	}
	free(t);
	*np = P;
	return p;
}

static double
relerr(const float *a, const float *b, size_t n)
{
	double num = 0, den = 0;
	for (size_t i = 0; i < n; i++) {
		if (!isfinite(a[i]))
			return INFINITY;
		double d = (double)a[i] - b[i];
		num += d * d;
		den += (double)b[i] * b[i];
	}
	return den > 0 ? sqrt(num / den) : sqrt(num);
}

struct pair {
	const struct vlm_trainer_ops *ops[2];	/* cpu, cuda */
	void *st[2];
};

static int
pair_create(struct pair *p, const struct vlm_trainer_ops *cuda,
    const struct vlm_config *c, int B, int T, const float *params)
{
	p->ops[0] = &vlm_cpu_trainer;
	p->ops[1] = cuda;
	for (int i = 0; i < 2; i++) {
		int err = p->ops[i]->create(c, B, T, &p->st[i]);
		if (err)
			return err;
		if ((err = p->ops[i]->set_params(p->st[i], params)) != 0)
			return err;
	}
	return 0;
}

static void
pair_destroy(struct pair *p)
{
	for (int i = 0; i < 2; i++)
		p->ops[i]->destroy(p->st[i]);
}

static const char *cuda_msg;

#define DO(i, call) do { \
	int e_ = (call); \
	if (e_ != 0) { \
		printf("Bail out! %s: %s\n", #call, \
		    (i) ? cuda_msg : v_errmsg(e_)); \
		exit(1); \
	} \
} while (0)

static const struct v_cuda_api *api;

static void
whole_step(const char *name, const struct vlm_config *c, int B, int T)
{
	size_t P;
	float *params = init_params(c, &P);
	int32_t *tok = malloc(sizeof *tok * (size_t)B * (T + 1));
	for (int i = 0; i < B * (T + 1); i++)
		tok[i] = (int32_t)(urand() * c->vocab_used);
	struct pair p;
	if (pair_create(&p, api->trainer, c, B, T, params) != 0) {
		printf("Bail out! %s: create: %s\n", name, api->last_error());
		exit(1);
	}
	float loss[2], ent[2], norm[2];
	float *g[2], *lg[2], *pp[2];
	size_t nl = (size_t)B * T * c->vocab;
	for (int i = 0; i < 2; i++) {
		g[i] = malloc(P * sizeof(float));
		pp[i] = malloc(P * sizeof(float));
		lg[i] = malloc(nl * sizeof(float));
		cuda_msg = api->last_error();
		DO(i, p.ops[i]->zero_grad(p.st[i]));
		/* Twice at half scale: gradients accumulate. */
		DO(i, p.ops[i]->forward_backward(p.st[i], tok, 0.5f, &loss[i],
		    &ent[i]));
		DO(i, p.ops[i]->forward_backward(p.st[i], tok, 0.5f, &loss[i],
		    &ent[i]));
		DO(i, p.ops[i]->get_grads(p.st[i], g[i]));
		DO(i, p.ops[i]->get_logits(p.st[i], lg[i]));
		DO(i, p.ops[i]->grad_norm(p.st[i], &norm[i]));
	}
	ok(fabsf(loss[1] - loss[0]) < 2e-3f * loss[0],
	    "%s: loss cuda %.5f, cpu %.5f", name, loss[1], loss[0]);
	ok(fabsf(ent[1] - ent[0]) < 2e-3f * ent[0],
	    "%s: entropy cuda %.5f, cpu %.5f", name, ent[1], ent[0]);
	double el = relerr(lg[1], lg[0], nl);
	ok(el < 1e-2, "%s: logits, relative error %.2e", name, el);
	double eg = relerr(g[1], g[0], P);
	ok(eg < 2e-2, "%s: all gradients, relative error %.2e", name, eg);
	/* Every tensor on its own, so that one wrong tensor cannot hide in
	 * the total. */
	int nt = vlm_layout(c, NULL);
	struct vlm_tensor *t = calloc((size_t)nt, sizeof *t);
	vlm_layout(c, t);
	double worst = 0;
	const char *wname = "";
	for (int i = 0; i < nt; i++) {
		size_t n = (size_t)t[i].rows * t[i].cols;
		double e = relerr(g[1] + t[i].offset, g[0] + t[i].offset, n);
		if (!(e <= worst)) {
			worst = e;
			wname = t[i].name;
		}
	}
	ok(worst < 5e-2, "%s: worst tensor gradient %s, relative error %.2e",
	    name, wname, worst);
	ok(fabsf(norm[1] - norm[0]) < 2e-2f * norm[0],
	    "%s: gradient norm cuda %.5f, cpu %.5f", name, norm[1], norm[0]);
	/* Data parallel hands the summed gradients back: the CPU's here, so
	 * that the step below starts from the same gradients on both. */
	DO(1, p.ops[1]->set_grads(p.st[1], g[0]));
	DO(1, p.ops[1]->get_grads(p.st[1], g[1]));
	ok(memcmp(g[0], g[1], P * sizeof(float)) == 0,
	    "%s: set_grads then get_grads gives the same bits", name);

	struct velvet_hparams h;
	velvet_defaults(&h);
	for (int i = 0; i < 2; i++) {
		DO(i, p.ops[i]->step(p.st[i], &h, 1e-3f, 1, 1.0f));
		DO(i, p.ops[i]->get_params(p.st[i], pp[i]));
	}
	/* From the same gradients the two optimizers compute the same update
	 * (to fp32 rounding): AdamW's first step moves a parameter by lr. */
	double eu = 0;
	for (size_t i = 0; i < P; i++) {
		double d = fabs((double)pp[1][i] - pp[0][i]);
		if (d > eu)
			eu = d;
	}
	ok(eu < 1e-6, "%s: first Velvet step, largest difference %.2e "
	    "(the step is 1e-3)", name, eu);
	free(t);
	for (int i = 0; i < 2; i++) {
		free(g[i]);
		free(lg[i]);
		free(pp[i]);
	}
	pair_destroy(&p);
	free(params);
	free(tok);
}

/* Steps of both backends from the same weights on the same batches; the
 * curves must stay together (bf16 against fp32: a few hundredths of a nat). */
static void
curve(const char *name, const struct vlm_config *c, int B, int T, int steps,
    const int32_t *data, size_t ndata, int verbose)
{
	size_t P;
	float *params = init_params(c, &P);
	int32_t *tok = malloc(sizeof *tok * (size_t)B * (T + 1));
	struct pair p;
	if (pair_create(&p, api->trainer, c, B, T, params) != 0) {
		printf("Bail out! %s: create: %s\n", name, api->last_error());
		exit(1);
	}
	struct velvet_hparams h;
	velvet_defaults(&h);
	double maxdiff = 0, first = 0, last[2] = { 0, 0 };
	for (int s = 1; s <= steps; s++) {
		for (int b = 0; b < B; b++) {
			size_t at = (size_t)(urand() * (double)(ndata - T - 1));
			memcpy(tok + (size_t)b * (T + 1), data + at,
			    sizeof *tok * (T + 1));
		}
		float loss[2], norm[2];
		for (int i = 0; i < 2; i++) {
			cuda_msg = api->last_error();
			DO(i, p.ops[i]->zero_grad(p.st[i]));
			DO(i, p.ops[i]->forward_backward(p.st[i], tok, 1.0f,
			    &loss[i], NULL));
			DO(i, p.ops[i]->grad_norm(p.st[i], &norm[i]));
			float mul = norm[i] > 1.0f ? 1.0f / norm[i] : 1.0f;
			DO(i, p.ops[i]->step(p.st[i], &h, 3e-3f, s, mul));
		}
		if (s == 1)
			first = loss[0];
		double d = fabs((double)loss[1] - loss[0]);
		if (d > maxdiff)
			maxdiff = d;
		last[0] = loss[0];
		last[1] = loss[1];
		if (verbose && (s % 10 == 0 || s == 1))
			printf("# step %4d  loss cpu %.4f  cuda %.4f\n", s, loss[0],
			    loss[1]);
	}
	ok(last[1] < first - 0.5, "%s: %d steps lower the loss from %.3f to %.3f",
	    name, steps, first, last[1]);
	ok(maxdiff < 0.05 + 0.02 * first, "%s: CUDA loss curve within %.3f nats "
	    "of the CPU's (final cpu %.4f, cuda %.4f)", name, maxdiff, last[0],
	    last[1]);
	pair_destroy(&p);
	free(params);
	free(tok);
}

static void
bad_input(void)
{
	struct vlm_config c;
	vlm_preset("tiny", 500, &c);
	size_t P;
	float *params = init_params(&c, &P);
	void *st;
	int err = api->trainer->create(&c, 2, 16, &st);
	ok(err == 0, "tiny model created");
	if (err)
		return;
	api->trainer->set_params(st, params);
	int32_t tok[2 * 17];
	for (int i = 0; i < 34; i++)
		tok[i] = i;
	tok[20] = c.vocab + 3;
	float loss;
	err = api->trainer->forward_backward(st, tok, 1.0f, &loss, NULL);
	ok(err == V_ERR_RANGE && strstr(api->last_error(), "vocabulary") != NULL,
	    "a token outside the vocabulary is refused: %s", api->last_error());
	api->trainer->destroy(st);
	free(params);

	/* Far more than any device holds: the message names a batch that fits. */
	vlm_preset("medium", 0, &c);
	err = api->trainer->create(&c, 16384, 1024, &st);
	ok(err == V_ERR_NOMEM && strstr(api->last_error(), "would fit") != NULL,
	    "a batch too large for the device: %s", api->last_error());
	if (err == 0)
		api->trainer->destroy(st);
}

int
main(int argc, char **argv)
{
	struct v_backend be;
	int err = v_backend_open(V_DEVICE_CUDA, &be);
	if (err) {
		printf("1..0 # SKIP %s\n", v_errmsg(err));
		return 0;
	}
	api = be.cuda;
	if (api->trainer == NULL) {
		printf("Bail out! the CUDA backend has no trainer\n");
		return 1;
	}
	diag("device %s", be.name);
	if (argc >= 4 && strcmp(argv[1], "curve") == 0) {
		/* French text as bytes: a 256-token model of the small preset. */
		size_t n;
		char *text;
		if (v_slurp(argv[2], 0, &text, &n) != 0 || n < 4096) {
			printf("Bail out! %s: cannot read enough text\n", argv[2]);
			return 1;
		}
		int32_t *ids = malloc(sizeof *ids * n);
		for (size_t i = 0; i < n; i++)
			ids[i] = (unsigned char)text[i];
		struct vlm_config c;
		vlm_preset("small", 256, &c);
		int steps = atoi(argv[3]);
		curve("small preset, French bytes", &c, 4, 128, steps, ids, n, 1);
		free(ids);
		free(text);
		return done_testing();
	}
	struct vlm_config c;
	vlm_preset("tiny", 500, &c);	/* 4 layers, width 128, 4 heads of 32 */
	c.layers = 2;
	whole_step("tiny silu untied, B=3 T=100", &c, 3, 100);
	c.act = VLM_ACT_ERA;
	c.tie = 1;
	c.kv_heads = 2;
	whole_step("era tied, 2 key/value heads, B=2 T=70", &c, 2, 70);
	c.act = VLM_ACT_GELU;
	c.tie = 0;
	c.dim = 192;
	c.heads = c.kv_heads = 3;	/* heads of 64 */
	c.hidden = 256;
	whole_step("gelu, width 192, heads of 64, B=2 T=130", &c, 2, 130);
	c.act = VLM_ACT_SILU;
	c.dim = 320;	/* the small preset's width: 640-byte bf16 rows */
	c.heads = c.kv_heads = 5;
	c.hidden = 864;
	whole_step("silu, width 320, 5 heads of 64, B=2 T=96", &c, 2, 96);
	/* A repeating text: the loss must fall fast on both backends. */
	static int32_t data[20000];
	for (int i = 0; i < 20000; i++)
		data[i] = (int32_t)((i * 7 + (i / 13) % 5) % 97);
	vlm_preset("tiny", 500, &c);
	c.layers = 2;
	curve("tiny, 40 steps", &c, 4, 64, 40, data, 20000, 0);
	bad_input();
	return done_testing();
}
