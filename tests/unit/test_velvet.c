/* test_velvet.c: Velvet against 100 steps of torch.optim.AdamW (with
 * clip_grad_norm_ and a warmup + cosine schedule, tests/golden/adamw.bin),
 * its features, the schedules and the gradient norm. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/model_cpu.h"
#include "../../lib/train.h"
#include "../../lib/trainer.h"
#include "../../lib/velvet.h"
#include "../../lib/verr.h"
#include "../../lib/vio.h"
#include "../../lib/vjson.h"
#include "tap.h"

static const float *
section(const json_t *m, const char *buf, size_t len, const char *key,
    size_t count)
{
	json_t *s = json_object_get(json_object_get(m, "sections"), key);
	size_t off = (size_t)json_integer_value(json_array_get(s, 0));
	size_t n = (size_t)json_integer_value(json_array_get(s, 1));
	if (n != count || off + n * 4 > len)
		return NULL;
	return (const float *)(const void *)(buf + off);
}

static double
num(const json_t *o, const char *k)
{
	return json_number_value(json_object_get(o, k));
}

static void
test_torch_adamw(void)
{
	const char *src = getenv("VESPER_SRC");
	char path[1100], *txt, *bin;
	size_t len, blen;
	json_t *doc;

	snprintf(path, sizeof path, "%s/tests/golden/golden.json", src ? src : ".");
	if (!ok(v_slurp(path, 0, &txt, &len) == V_OK &&
	    v_json_parse(txt, len, path, 0, &doc) == V_OK, "read %s", path))
		return;
	free(txt);
	json_t *a = json_object_get(doc, "adamw");
	snprintf(path, sizeof path, "%s/tests/golden/adamw.bin", src ? src : ".");
	if (!ok(v_slurp(path, 0, &bin, &blen) == V_OK, "read %s", path)) {
		json_decref(doc);
		return;
	}
	int steps = (int)num(a, "steps"), rows = (int)num(a, "rows");
	int cols = (int)num(a, "cols"), nm = rows * cols, n = nm + cols;
	const float *p0 = section(a, bin, blen, "params0", n);
	const float *gs = section(a, bin, blen, "grads", (size_t)steps * n);
	const float *pw = section(a, bin, blen, "params", n);
	const float *mw = section(a, bin, blen, "m", n);
	const float *vw = section(a, bin, blen, "v", n);
	if (!ok(p0 && gs && pw && mw && vw, "adamw.bin sections fit")) {
		free(bin);
		json_decref(doc);
		return;
	}
	struct velvet_hparams h;
	velvet_defaults(&h);
	h.beta1 = (float)num(a, "beta1");
	h.beta2 = (float)num(a, "beta2");
	h.eps = (float)num(a, "eps");
	h.weight_decay = (float)num(a, "weight_decay");
	float *p = malloc(n * 4), *m = calloc(n, 4), *v = calloc(n, 4);
	float *g = malloc(n * 4);
	memcpy(p, p0, n * 4);
	double worst_lr = 0, worst_norm = 0;
	json_t *lrs = json_object_get(a, "lrs"), *norms = json_object_get(a, "grad_norms");
	for (int t = 1; t <= steps; t++) {
		memcpy(g, gs + (size_t)(t - 1) * n, n * 4);
		double lr = train_lr(TRAIN_COSINE, num(a, "lr"), num(a, "min_lr"),
		    (long)num(a, "warmup"), steps, t);
		double want_lr = json_real_value(json_array_get(lrs, t - 1));
		if (fabs(lr - want_lr) > worst_lr)
			worst_lr = fabs(lr - want_lr);
		float norm = (float)velvet_norm(g, n);
		double want_norm = json_real_value(json_array_get(norms, t - 1));
		if (fabs(norm - want_norm) / want_norm > worst_norm)
			worst_norm = fabs(norm - want_norm) / want_norm;
		struct velvet_step s;
		velvet_prepare(&h, 100, (float)lr, t,
		    velvet_clip_factor(norm, (float)num(a, "clip")), &s);
		velvet_update(&s, h.weight_decay, p, g, m, v, nm);
		velvet_update(&s, 0, p + nm, g + nm, m + nm, v + nm, cols);
	}
	ok(worst_lr < 1e-12, "warmup + cosine schedule equals the script's "
	    "(worst %.2g)", worst_lr);
	ok(worst_norm < 1e-6, "global gradient norm equals clip_grad_norm_'s "
	    "(worst relative %.2g)", worst_norm);
	double ep = 0, em = 0, ev = 0;
	for (int i = 0; i < n; i++) {
		ep = fmax(ep, fabs(p[i] - pw[i]) / fmax(fabs(pw[i]), 1e-3));
		em = fmax(em, fabs(m[i] - mw[i]) / fmax(fabs(mw[i]), 1e-6));
		ev = fmax(ev, fabs(v[i] - vw[i]) / fmax(fabs(vw[i]), 1e-9));
	}
	diag("100 AdamW steps vs torch %s: worst relative difference params "
	    "%.3g, m %.3g, v %.3g",
	    json_string_value(json_object_get(doc, "torch")), ep, em, ev);
	ok(ep < 1e-5, "parameters after 100 steps equal torch.optim.AdamW's "
	    "to float rounding (worst %.2g)", ep);
	ok(em < 1e-4 && ev < 1e-4, "and so do both moments (worst %.2g, %.2g)", em, ev);
	/* The vector group was not decayed: run again decaying it too, and
	 * the result must move away from torch's. */
	memcpy(p, p0, n * 4);
	memset(m, 0, n * 4);
	memset(v, 0, n * 4);
	for (int t = 1; t <= steps; t++) {
		struct velvet_step s;
		velvet_prepare(&h, 100, 1e-2f, t, 1, &s);
		velvet_update(&s, h.weight_decay, p + nm, gs + (size_t)(t - 1) * n + nm,
		    m + nm, v + nm, cols);
	}
	ok(fabs(p[nm] - pw[nm]) > 1e-4, "decaying the vectors gives other values "
	    "(so the test above sees weight decay)");
	free(p); free(m); free(v); free(g); free(bin);
	json_decref(doc);
}

static void
test_features(void)
{
	struct velvet_hparams h;
	struct velvet_step s;
	float p[4] = { 1, 1, 1, 1 }, g[4] = { 0.5f, 0, -0.5f, 0 };
	float m[4] = { 0.1f, 0.1f, -0.1f, 0.1f }, v[4] = { 0.01f, 0.01f, 0.01f, 0.01f };

	velvet_defaults(&h);
	ok(h.beta1 == 0.9f && h.beta2 == 0.95f && h.eps == 1e-8f &&
	    !h.entropy_lr && !h.ppl_momentum && !h.sparse,
	    "defaults: AdamW (0.9, 0.95, 1e-8), every feature off");
	is_near(velvet_lr_scale(&h, 1000), 1, 0, "entropy lr off: factor 1");
	h.entropy_lr = 1;
	h.entropy_lr_k = 1;
	h.batch_entropy = (float)log(1000.0);
	is_near(velvet_lr_scale(&h, 1000), 1.5, 1e-6,
	    "entropy lr: uniform predictions, 1 + k (1 - 0.5)");
	h.batch_entropy = 0;
	is_near(velvet_lr_scale(&h, 1000), 0.5, 1e-6, "certain predictions: 1 - k/2");
	h.entropy_lr_k = 10;
	is_near(velvet_lr_scale(&h, 1000), 0.5, 0, "clamped to [0.5, 2]");
	h.entropy_lr = 0;
	h.ppl_momentum = 1;
	h.ppl_momentum_k = 0.1f;
	h.loss_ema = 3;
	h.batch_loss = 3.5f;
	is_near(velvet_beta1(&h), 0.95, 1e-6, "ppl momentum: b1 + k (loss - ema)");
	h.batch_loss = 0;
	is_near(velvet_beta1(&h), 0.6, 1e-6, "lower when the batch is easy");
	h.ppl_momentum = 0;
	h.sparse = 1;
	is_int(velvet_prepare(&h, 100, 0.1f, 1, 1, &s), V_OK, "prepare");
	velvet_update(&s, 0.1f, p, g, m, v, 4);
	ok(p[1] == 1 && m[1] == 0.1f && v[1] == 0.01f && p[3] == 1,
	    "sparse: elements with no gradient keep value and moments");
	ok(p[0] < 1 && p[2] > 1, "sparse: the others step against the gradient");
	h.sparse = 0;
	velvet_prepare(&h, 100, 0.1f, 1, 1, &s);
	velvet_update(&s, 0.1f, p, g, m, v, 4);
	ok(p[1] != 1 && m[1] != 0.1f, "dense: the moments decay everywhere");
	h.beta1 = 1;
	is_int(velvet_prepare(&h, 100, 0.1f, 1, 1, &s), V_ERR_ARG, "beta1 = 1 refused");
	h.beta1 = 0.9f;
	is_int(velvet_prepare(&h, 100, NAN, 1, 1, &s), V_ERR_ARG, "NaN lr refused");
	is_int(velvet_prepare(&h, 100, 0.1f, 0, 1, &s), V_ERR_ARG, "step 0 refused");
}

static void
test_schedules(void)
{
	int sc;
	is_int(train_schedule_parse("linear", &sc), V_OK, "parse linear");
	is_int(sc, TRAIN_LINEAR, "linear");
	is_int(train_schedule_parse("step", &sc), V_ERR_ARG, "unknown schedule refused");
	is_near(train_lr(TRAIN_COSINE, 1, 0.1, 10, 110, 5), 0.5, 1e-12, "warmup is linear");
	is_near(train_lr(TRAIN_COSINE, 1, 0.1, 10, 110, 10), 1, 1e-12, "warmup ends at lr");
	is_near(train_lr(TRAIN_COSINE, 1, 0.1, 10, 110, 60), 0.55, 1e-12,
	    "cosine: halfway is the mean of lr and lr_min");
	is_near(train_lr(TRAIN_COSINE, 1, 0.1, 10, 110, 110), 0.1, 1e-12, "cosine ends at lr_min");
	is_near(train_lr(TRAIN_LINEAR, 1, 0.1, 10, 110, 35), 0.775, 1e-12, "linear decay");
	is_near(train_lr(TRAIN_CONSTANT, 1, 0.1, 0, 110, 100), 1, 0, "constant");
	is_near(train_lr(TRAIN_COSINE, 1, 0.1, 10, 110, 500), 0.1, 1e-12,
	    "past the last step: lr_min");
	is_near(velvet_clip_factor(4, 1), 1 / (4 + 1e-6), 1e-7, "clip factor");
	is_near(velvet_clip_factor(0.5f, 1), 1, 0, "no clipping under the limit");
	is_near(velvet_clip_factor(4, 0), 1, 0, "clip 0: off");
	float x[1000];
	for (int i = 0; i < 1000; i++)
		x[i] = (float)i;
	is_near(velvet_norm(x, 1000), sqrt(332833500.0), 1e-12,
	    "norm (sum of squares 0..999)");
	is_near(velvet_norm(x, 3), sqrt(5.0), 1e-12, "norm of fewer elements than chunks");

	struct v_rng a, b;
	v_rng_seed(&a, 42);
	v_rng_seed(&b, 42);
	uint64_t x1 = v_rng_next(&a);
	ok(x1 == v_rng_next(&b), "rng: same seed, same stream");
	v_rng_seed(&b, 43);
	ok(x1 != v_rng_next(&b), "rng: another seed, another stream");
	double s = 0, s2 = 0;
	for (int i = 0; i < 20000; i++) {
		double z = v_rng_normal(&a);
		s += z;
		s2 += z * z;
	}
	ok(fabs(s / 20000) < 0.03 && fabs(s2 / 20000 - 1) < 0.05,
	    "normal deviates: mean 0, variance 1 (%.3f, %.3f)", s / 20000, s2 / 20000);
}

static void
test_metrics(void)
{
	FILE *fp = tmpfile();
	char line[512] = "";
	struct train_metrics m = { .step = 7, .tokens = 1ull << 40, .loss = NAN,
	    .val_loss = -1, .lr = 1e-3, .grad_norm = INFINITY,
	    .tokens_per_s = 12.5, .elapsed = 3, .mfu = -1 };

	is_int(train_metrics_write(fp, "tmp", &m), V_OK, "metrics line written");
	m.loss = 2;
	m.val_loss = 0;
	m.mfu = 0.25;
	train_metrics_write(fp, "tmp", &m);
	rewind(fp);
	if (fgets(line, sizeof line, fp) == NULL)
		line[0] = '\0';
	is_str(line, "{\"step\":7,\"tokens\":1099511627776,\"loss\":null,"
	    "\"ppl\":null,\"val_loss\":null,\"val_ppl\":null,\"lr\":0.001,"
	    "\"grad_norm\":null,\"tokens_per_s\":12.5,\"elapsed\":3}\n",
	    "NaN, infinity and no evaluation are null (JSON has no NaN); no mfu "
	    "on the CPU");
	if (fgets(line, sizeof line, fp) == NULL)
		line[0] = '\0';
	ok(strstr(line, "\"ppl\":7.3890561") && strstr(line, "\"val_loss\":0,") &&
	    strstr(line, "\"val_ppl\":1,") && strstr(line, "\"mfu\":0.25}"),
	    "ppl = exp(loss), a validation loss of 0 is a number, mfu when given");
	fclose(fp);
}

int
main(void)
{
	test_torch_adamw();
	test_features();
	test_schedules();
	test_metrics();
	return done_testing();
}
