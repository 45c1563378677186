/* vckpt.c: inspect, verify, compare, convert, average, export and import
 * checkpoints (vesper-checkpoint(5)). */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "../lib/bf16.h"
#include "../lib/ckpt.h"
#include "../lib/gguf.h"
#include "../lib/quant.h"
#include "../lib/safetensors.h"
#include "../lib/tok.h"
#include "../lib/verr.h"
#include "../lib/vio.h"
#include "../lib/vjson.h"
#include "../lib/vlm_config.h"
#include "cli/cli.h"
#include "../lib/vhash.h"

static void
open_ckpt(struct st_file *f, const char *path)
{
	int err = st_open_checkpoint(f, path);
	if (err)
		cli_fatal(err);
}

static void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (p == NULL)
		cli_die("out of memory (%zu bytes)", n);
	return p;
}

static char *
xstrdup(const char *s)
{
	char *p = strdup(s);
	if (p == NULL)
		cli_die("out of memory");
	return p;
}

/* A quantised matrix: I8 or U8 with a scale tensor beside it (an integer
 * tensor without one is just data). */
static int
is_quantised(const struct st_file *f, const struct st_tensor *t)
{
	char name[512];
	if (t->dtype != ST_I8 && t->dtype != ST_U8)
		return 0;
	snprintf(name, sizeof name, "%s_scale", t->name);
	return st_find(f, name) != NULL;
}

/* The scale tensor of a quantised matrix is part of that matrix. */
static int
is_scale_of_quantised(const struct st_file *f, const struct st_tensor *t)
{
	size_t n = strlen(t->name);
	if (n < 7 || strcmp(t->name + n - 6, "_scale") != 0)
		return 0;
	char *base = xstrdup(t->name);
	base[n - 6] = '\0';
	const struct st_tensor *b = st_find(f, base);
	free(base);
	return b != NULL && is_quantised(f, b);
}

/* A tensor as malloc'ed floats (dequantised if need be). */
static float *
load_f32(const struct st_file *f, const struct st_tensor *t, uint64_t *n)
{
	vq_tensor_numel(f, t, n);
	float *x = xmalloc(*n * sizeof *x);
	int err = vq_tensor_f32(f, t, x);
	if (err)
		cli_fatal(err);
	return x;
}

static int
is_float(int dtype)
{
	return dtype == ST_F32 || dtype == ST_BF16 || dtype == ST_F16 || dtype == ST_F64;
}

static void
human(double bytes, char *buf, size_t n)
{
	if (bytes >= 1e9)
		snprintf(buf, n, "%.2f GB", bytes / 1e9);
	else if (bytes >= 1e6)
		snprintf(buf, n, "%.2f MB", bytes / 1e6);
	else if (bytes >= 1e3)
		snprintf(buf, n, "%.1f kB", bytes / 1e3);
	else
		snprintf(buf, n, "%.0f B", bytes);
}

static void
shape_str(const struct st_tensor *t, char *buf, size_t n)
{
	size_t at = 0;
	at += (size_t)snprintf(buf, n, "[");
	for (int d = 0; d < t->ndim && at < n; d++)
		at += (size_t)snprintf(buf + at, n - at, "%s%lld", d ? ", " : "",
		    (long long)t->shape[d]);
	if (at < n)
		snprintf(buf + at, n - at, "]");
}

/* ---- info ---- */

static int
is_gguf_file(const char *path)
{
	unsigned char m[4];
	FILE *fp = fopen(path, "rb");
	int yes = fp != NULL && fread(m, 1, 4, fp) == 4 && memcmp(m, "GGUF", 4) == 0;
	if (fp != NULL)
		fclose(fp);
	return yes;
}

/* A GGUF file (what export --gguf wrote) through the checking reader. */
static int
info_gguf(const char *path, int list)
{
	struct gguf_file g;
	char b1[32];
	int err = gguf_open(&g, path);
	if (err)
		cli_fatal(err);
	human((double)g.size, b1, sizeof b1);
	printf("file        %s (%s)\n", g.path, b1);
	printf("format      GGUF version %u, alignment %u, %zu keys, %zu tensors\n",
	    g.version, g.align, g.n_kv, g.n_t);
	for (size_t i = 0; i < g.n_kv; i++) {
		const struct gguf_kv *kv = &g.kv[i];
		uint64_t u;
		float fl;
		printf("metadata    %s = ", kv->key);
		if (kv->type == GGUF_STRING)
			printf("%s\n", kv->str);
		else if (kv->type == GGUF_ARRAY)
			printf("[%llu values]\n", (unsigned long long)kv->arr_n);
		else if (kv->type == GGUF_F32)
			printf("%g\n", (memcpy(&fl, kv->val, 4), (double)fl));
		else if (gguf_kv_uint(&g, kv->key, &u) == V_OK)
			printf("%llu\n", (unsigned long long)u);
		else
			printf("(type %u)\n", kv->type);
	}
	uint64_t count[64] = { 0 }, bytes[64] = { 0 };
	for (size_t i = 0; i < g.n_t; i++)
		if (g.t[i].type < 64) {
			count[g.t[i].type]++;
			bytes[g.t[i].type] += g.t[i].nbytes;
		}
	for (int ty = 0; ty < 64; ty++)
		if (count[ty]) {
			human((double)bytes[ty], b1, sizeof b1);
			printf("dtype       %-5s %llu tensors, %s\n", gguf_type_name((uint32_t)ty),
			    (unsigned long long)count[ty], b1);
		}
	if (list)
		for (size_t i = 0; i < g.n_t; i++) {
			const struct gguf_tensor *t = &g.t[i];
			char sh[96];
			size_t at = (size_t)snprintf(sh, sizeof sh, "[");
			for (uint32_t d = 0; d < t->ndim && at < sizeof sh; d++)
				at += (size_t)snprintf(sh + at, sizeof sh - at, "%s%llu",
				    d ? ", " : "", (unsigned long long)t->ne[d]);
			if (at < sizeof sh)
				snprintf(sh + at, sizeof sh - at, "]");
			printf("tensor      %-52s %-5s %-16s %llu\n", t->name,
			    gguf_type_name(t->type), sh, (unsigned long long)t->nbytes);
		}
	gguf_close(&g);
	return 0;
}

static int
cmd_info(int argc, char **argv)
{
	int c, list = 0;
	while ((c = getopt(argc, argv, "+ht")) != -1) {
		switch (c) {
		case 'h': cli_help();
		case 't': list = 1; break;
		default: cli_usage();
		}
	}
	if (argc - optind != 1)
		cli_usage();
	if (is_gguf_file(argv[optind]))
		return info_gguf(argv[optind], list);
	struct st_file f;
	struct vlm_config cfg;
	char b1[32];
	open_ckpt(&f, argv[optind]);

	human((double)f.size, b1, sizeof b1);
	printf("file        %s (%s)\n", f.path, b1);
	int have_cfg = st_vesper_config(&f, &cfg) == V_OK;
	if (have_cfg) {
		int hd = cfg.dim / cfg.heads;
		printf("config      vocab %d (tokenizer %d), dim %d, layers %d, heads %d "
		    "(kv %d, size %d), hidden %d, ctx %d, act %s, %s head\n",
		    cfg.vocab, cfg.vocab_used, cfg.dim, cfg.layers, cfg.heads,
		    cfg.kv_heads, hd, cfg.hidden, cfg.ctx, vlm_act_name(cfg.act),
		    cfg.tie ? "tied" : "untied");
		printf("rope        theta %g; norm eps %g", (double)cfg.rope_theta,
		    (double)cfg.norm_eps);
		if (cfg.act == VLM_ACT_ERA)
			printf("; era gamma %g, temperature %g", (double)cfg.era_gamma,
			    (double)cfg.era_temp);
		printf("\n");
	} else {
		printf("config      none (%s)\n", v_errmsg(V_ERR_NOTFOUND));
	}
	const char *q = st_meta(&f, "vesper.quant");
	if (q != NULL) {
		const char *g = st_meta(&f, "vesper.quant.group");
		printf("quant       %s%s%s\n", q, g ? ", groups of " : "", g ? g : "");
	}
	const char *step = st_meta(&f, "vesper.step");
	printf("step        %s\n", step ? step : "unknown");
	const char *tok = st_meta(&f, "vesper.tokenizer");
	printf("tokenizer   %s\n", tok && *tok ? tok : "unknown");

	uint64_t params = 0, count[ST_DTYPE_COUNT_] = { 0 }, bytes[ST_DTYPE_COUNT_] = { 0 };
	for (size_t i = 0; i < f.n; i++) {
		const struct st_tensor *t = &f.t[i];
		uint64_t n;
		count[t->dtype]++;
		bytes[t->dtype] += t->nbytes;
		if (is_scale_of_quantised(&f, t))
			continue;
		vq_tensor_numel(&f, t, &n);
		params += n;
	}
	printf("parameters  %llu", (unsigned long long)params);
	if (have_cfg)
		printf(" (the configuration makes %llu)",
		    (unsigned long long)vlm_param_count(&cfg));
	printf("\ntensors     %zu\n", f.n);
	for (int d = 0; d < ST_DTYPE_COUNT_; d++)
		if (count[d]) {
			human((double)bytes[d], b1, sizeof b1);
			printf("dtype       %-5s %llu tensors, %s\n", st_dtype_name(d),
			    (unsigned long long)count[d], b1);
		}
	for (size_t i = 0; i < f.n_meta; i++)
		if (strcmp(f.meta[i].key, "vesper.config") != 0)
			printf("metadata    %s = %s\n", f.meta[i].key, f.meta[i].value);
	if (list)
		for (size_t i = 0; i < f.n; i++) {
			char sh[96];
			shape_str(&f.t[i], sh, sizeof sh);
			printf("tensor      %-52s %-5s %-16s %llu\n", f.t[i].name,
			    st_dtype_name(f.t[i].dtype), sh,
			    (unsigned long long)f.t[i].nbytes);
		}
	st_close(&f);
	return 0;
}

static int exists(const char *path);

/* ---- verify ---- */

static int problems;

static void
problem(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void
problem(const char *fmt, ...)
{
	va_list ap;
	printf("FAIL  ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	problems++;
}

/* A GGUF file: the reader's structure checks, then every value of every
 * F32, F16, Q8_0 and Q4_0 tensor (their block scales included) finite. */
static int
verify_gguf(const char *path)
{
	struct gguf_file g;
	uint64_t scanned = 0, nonfinite = 0, skipped = 0;
	int err = gguf_open(&g, path);

	if (err) {
		printf("FAIL  structure: %s\n", v_errmsg(err));
		return 1;
	}
	printf("ok    structure: GGUF version %u, %zu keys, %zu tensors inside %zu bytes\n",
	    g.version, g.n_kv, g.n_t, g.size);
	for (size_t i = 0; i < g.n_t; i++) {
		const struct gguf_tensor *t = &g.t[i];
		uint64_t n = t->ndim ? 1 : 0, bad = 0;
		for (uint32_t d = 0; d < t->ndim; d++)
			n *= t->ne[d];
		if (t->type != GGML_TYPE_F32 && t->type != GGML_TYPE_F16 &&
		    t->type != GGML_TYPE_Q8_0 && t->type != GGML_TYPE_Q4_0) {
			skipped++;
			continue;
		}
		float *x = xmalloc(n * sizeof *x);
		const unsigned char *p = t->data;
		if (t->type == GGML_TYPE_F32)
			memcpy(x, p, n * 4);
		else if (t->type == GGML_TYPE_F16)
			for (uint64_t k = 0; k < n; k++)
				x[k] = v_f16_to_f32(v_get_u16(p + 2 * k));
		else if (t->type == GGML_TYPE_Q8_0)
			vq_q8_0_dequant(p, n, x);
		else
			vq_q4_0_dequant(p, n, x);
		for (uint64_t k = 0; k < n; k++)
			bad += !isfinite(x[k]);
		if (bad)
			problem("values: %s has %llu NaN or infinite values", t->name,
			    (unsigned long long)bad);
		nonfinite += bad;
		scanned += n;
		free(x);
	}
	if (!nonfinite)
		printf("ok    values: %llu values, none NaN or infinite%s\n",
		    (unsigned long long)scanned, skipped ? " (other types not scanned)" : "");
	gguf_close(&g);
	return problems ? 1 : 0;
}

/* A file's SHA-256 in hex, read in blocks rather than whole. */
static int
sha256_file(const char *path, char hex[65])
{
	unsigned char d[32];
	int err = v_sha256_file(path, d);

	if (err == V_OK)
		v_hex_encode(d, 32, hex);
	return err;
}

static int
cmd_verify(int argc, char **argv)
{
	int c;
	const char *tokfile = NULL;
	while ((c = getopt(argc, argv, "+ht:")) != -1) {
		switch (c) {
		case 'h': cli_help();
		case 't': tokfile = optarg; break;
		default: cli_usage();
		}
	}
	if (argc - optind != 1)
		cli_usage();
	if (is_gguf_file(argv[optind]))
		return verify_gguf(argv[optind]);
	struct st_file f;
	struct vlm_config cfg;
	int err = st_open_checkpoint(&f, argv[optind]);
	if (err) {
		printf("FAIL  structure: %s\n", v_errmsg(err));
		return 1;
	}
	printf("ok    structure: %zu tensors, offsets tile %zu bytes\n", f.n, f.size);

	char hex[65];
	const char *want = st_meta(&f, ST_SHA256_KEY);
	st_data_sha256(&f, hex);
	if (want == NULL)
		printf("note  data hash: none recorded; SHA-256 is %s\n", hex);
	else if (strcmp(want, hex) != 0)
		problem("data hash: recorded %s, data has %s", want, hex);
	else
		printf("ok    data hash: SHA-256 %s\n", hex);

	if ((err = st_vesper_config(&f, &cfg)) != V_OK) {
		problem("configuration: %s", v_errmsg(err));
	} else {
		/* Every tensor of the layout, with its shape, and nothing else. */
		int nl = vlm_layout(&cfg, NULL);
		struct vlm_tensor *lt = xmalloc((size_t)nl * sizeof *lt);
		vlm_layout(&cfg, lt);
		int bad = 0;
		for (int i = 0; i < nl; i++) {
			const struct st_tensor *t = st_find(&f, lt[i].name);
			if (t == NULL) {
				problem("layout: %s is missing", lt[i].name);
				bad++;
				continue;
			}
			int64_t rows = t->ndim == 2 ? t->shape[0] : 1;
			int64_t cols = t->ndim >= 1 ? t->shape[t->ndim - 1] : 1;
			if (t->dtype == ST_U8 && is_quantised(&f, t))
				cols *= 2;
			int want_nd = lt[i].rows == 1 && !lt[i].is_matrix ? 1 : 2;
			if (t->ndim != want_nd || rows != lt[i].rows || cols != lt[i].cols) {
				char sh[96];
				shape_str(t, sh, sizeof sh);
				problem("layout: %s is %s %s, the configuration wants (%d, %d)",
				    t->name, st_dtype_name(t->dtype), sh, lt[i].rows, lt[i].cols);
				bad++;
			} else if (!is_float(t->dtype) && !is_quantised(&f, t)) {
				problem("layout: %s has dtype %s", t->name, st_dtype_name(t->dtype));
				bad++;
			}
		}
		for (size_t i = 0; i < f.n; i++) {
			int found = 0;
			for (int j = 0; j < nl && !found; j++)
				found = strcmp(f.t[i].name, lt[j].name) == 0;
			if (!found && !is_scale_of_quantised(&f, &f.t[i])) {
				problem("layout: %s is not part of the model", f.t[i].name);
				bad++;
			}
		}
		if (!bad)
			printf("ok    layout: %d tensors as the configuration says (%llu parameters)\n",
			    nl, (unsigned long long)vlm_param_count(&cfg));
		free(lt);
	}

	/* NaN and infinity, in floats and in the scales of quantised tensors. */
	uint64_t nonfinite = 0, scanned = 0;
	for (size_t i = 0; i < f.n; i++) {
		const struct st_tensor *t = &f.t[i];
		if (!is_float(t->dtype) && !is_quantised(&f, t))
			continue;
		if (!is_float(t->dtype)) {
			/* Dequantising checks the scale tensor's shape. */
			uint64_t n;
			vq_tensor_numel(&f, t, &n);
			float *x = xmalloc(n * sizeof *x);
			if ((err = vq_tensor_f32(&f, t, x)) != V_OK) {
				problem("quantised %s: %s", t->name, v_errmsg(err));
				free(x);
				continue;
			}
			free(x);
			continue;	/* its scale tensor is scanned as a float */
		}
		float *x = xmalloc(t->numel * sizeof *x);
		st_tensor_f32(t, x);
		uint64_t bad = 0, first = 0;
		for (uint64_t k = 0; k < t->numel; k++)
			if (!isfinite(x[k]) && bad++ == 0)
				first = k;
		if (bad) {
			problem("values: %s has %llu NaN or infinite values (first at %llu)",
			    t->name, (unsigned long long)bad, (unsigned long long)first);
			nonfinite += bad;
		}
		scanned += t->numel;
		free(x);
	}
	if (!nonfinite)
		printf("ok    values: %llu floats, none NaN or infinite\n",
		    (unsigned long long)scanned);

	/* A training checkpoint's optimizer moments and cursor, as vtrain
	 * would read them to resume. */
	char opt[4096];
	size_t dl = strlen(f.path) - strlen("model.safetensors");
	if (strlen(f.path) >= strlen("model.safetensors") &&
	    strcmp(f.path + dl, "model.safetensors") == 0 && dl < sizeof opt - 16) {
		snprintf(opt, sizeof opt, "%.*soptimizer.bin", (int)dl, f.path);
		if (exists(opt)) {
			struct ckpt ck;
			opt[dl] = '\0';
			if ((err = ckpt_load(opt, &ck)) != V_OK) {
				problem("training state: %s", v_errmsg(err));
			} else {
				printf("ok    training state: step %ld, optimizer moments for %zu "
				    "parameters (checksum good), cursor.json\n", ck.step, ck.nparams);
				ckpt_free(&ck);
			}
		}
	}

	if (tokfile != NULL) {
		const char *tok = st_meta(&f, "vesper.tokenizer");
		if ((err = sha256_file(tokfile, hex)) != V_OK)
			problem("tokenizer: %s", v_errmsg(err));
		else if (tok == NULL || *tok == '\0')
			problem("tokenizer: the checkpoint records none; %s is %s", tokfile, hex);
		else if (strcmp(tok, hex) != 0)
			problem("tokenizer: the checkpoint was trained with %s, %s is %s",
			    tok, tokfile, hex);
		else
			printf("ok    tokenizer: %s matches\n", tokfile);
	}
	st_close(&f);
	if (problems)
		printf("%s: %d problem%s\n", argv[optind], problems, problems > 1 ? "s" : "");
	return problems ? 1 : 0;
}

/* ---- diff ---- */

static int
cmd_diff(int argc, char **argv)
{
	int c;
	double tol = -1;
	while ((c = getopt(argc, argv, "+he:")) != -1) {
		switch (c) {
		case 'h': cli_help();
		case 'e': tol = cli_real("-e", optarg, 0, INFINITY); break;
		default: cli_usage();
		}
	}
	if (argc - optind != 2)
		cli_usage();
	struct st_file a, b;
	open_ckpt(&a, argv[optind]);
	open_ckpt(&b, argv[optind + 1]);
	int differ = 0;
	double worst = 0;
	const char *worst_name = "";

	printf("%-52s %12s %12s %12s\n", "tensor", "max_abs", "max_rel", "rel_rms");
	for (size_t i = 0; i < a.n; i++) {
		const struct st_tensor *ta = &a.t[i];
		if (is_scale_of_quantised(&a, ta))
			continue;
		const struct st_tensor *tb = st_find(&b, ta->name);
		if (tb == NULL) {
			printf("%-52s only in %s\n", ta->name, argv[optind]);
			differ = 1;
			continue;
		}
		int fa = is_float(ta->dtype) || is_quantised(&a, ta);
		int fb = is_float(tb->dtype) || is_quantised(&b, tb);
		uint64_t na, nb;
		vq_tensor_numel(&a, ta, &na);
		vq_tensor_numel(&b, tb, &nb);
		if (!fa || !fb) {
			int same = ta->nbytes == tb->nbytes &&
			    memcmp(ta->data, tb->data, ta->nbytes) == 0;
			printf("%-52s %s\n", ta->name, same ? "identical" : "differs (not floats)");
			differ |= !same;
			continue;
		}
		if (na != nb) {
			printf("%-52s shapes differ: %llu and %llu values\n", ta->name,
			    (unsigned long long)na, (unsigned long long)nb);
			differ = 1;
			continue;
		}
		float *x = load_f32(&a, ta, &na), *y = load_f32(&b, tb, &nb);
		double max_abs = 0, max_a = 0;
		for (uint64_t k = 0; k < na; k++) {
			double d = fabs((double)x[k] - y[k]);
			if (d > max_abs || isnan(d))
				max_abs = isnan(d) ? INFINITY : d;
			if (fabs(x[k]) > max_a)
				max_a = fabs(x[k]);
		}
		double rel = max_a > 0 ? max_abs / max_a : (max_abs > 0 ? INFINITY : 0);
		printf("%-52s %12.4g %12.4g %12.4g\n", ta->name, max_abs, rel,
		    vq_rel_rms(x, y, na));
		if (max_abs > worst) {
			worst = max_abs;
			worst_name = ta->name;
		}
		if (tol >= 0 && max_abs > tol)
			differ = 1;
		free(x);
		free(y);
	}
	for (size_t i = 0; i < b.n; i++)
		if (!is_scale_of_quantised(&b, &b.t[i]) && st_find(&a, b.t[i].name) == NULL) {
			printf("%-52s only in %s\n", b.t[i].name, argv[optind + 1]);
			differ = 1;
		}
	printf("largest difference %.6g%s%s\n", worst, *worst_name ? " in " : "", worst_name);
	st_close(&a);
	st_close(&b);
	return differ;
}

/* ---- writing whole checkpoints ---- */

/* Tensors being assembled for st_write, with the buffers they own. */
struct outset {
	struct st_wtensor *w;
	void **own;
	size_t n, cap;
};

static struct st_wtensor *
out_add(struct outset *o, void *own)
{
	if (o->n == o->cap) {
		o->cap = o->cap ? 2 * o->cap : 64;
		o->w = realloc(o->w, o->cap * sizeof *o->w);
		o->own = realloc(o->own, o->cap * sizeof *o->own);
		if (o->w == NULL || o->own == NULL)
			cli_die("out of memory");
	}
	memset(&o->w[o->n], 0, sizeof o->w[o->n]);
	o->own[o->n] = own;
	return &o->w[o->n++];
}

static void
out_free(struct outset *o)
{
	for (size_t i = 0; i < o->n; i++)
		free(o->own[i]);
	free(o->w);
	free(o->own);
}

static int
parse_dtype(const char *s)
{
	if (strcmp(s, "f32") == 0) return ST_F32;
	if (strcmp(s, "bf16") == 0) return ST_BF16;
	if (strcmp(s, "f16") == 0) return ST_F16;
	cli_bad_usage("-d: f32, bf16 or f16, not %s", s);
}

/* Metadata of f, less the quantisation keys when dequantising. */
static struct st_kv *
copy_meta(const struct st_file *f, size_t extra, size_t *n, int drop_quant)
{
	struct st_kv *m = xmalloc((f->n_meta + extra) * sizeof *m);
	*n = 0;
	for (size_t i = 0; i < f->n_meta; i++)
		if (!drop_quant || strncmp(f->meta[i].key, "vesper.quant", 12) != 0)
			m[(*n)++] = f->meta[i];
	return m;
}

static void
write_ckpt(const char *output, struct outset *o, const struct st_kv *meta,
    size_t n_meta)
{
	char *path;
	int err = st_checkpoint_output(output, &path);
	if (err)
		cli_fatal(err);
	if ((err = st_write(path, o->w, o->n, meta, n_meta)) != V_OK)
		cli_fatal(err);
	free(path);
}

/* ---- convert ---- */

static int
cmd_convert(int argc, char **argv)
{
	int c, dtype = ST_BF16;
	while ((c = getopt(argc, argv, "+hd:")) != -1) {
		switch (c) {
		case 'h': cli_help();
		case 'd': dtype = parse_dtype(optarg); break;
		default: cli_usage();
		}
	}
	if (argc - optind != 2)
		cli_usage();
	struct st_file f;
	struct outset o = { 0 };
	open_ckpt(&f, argv[optind]);
	int dequant = st_meta(&f, "vesper.quant") != NULL;
	for (size_t i = 0; i < f.n; i++) {
		const struct st_tensor *t = &f.t[i];
		if (is_scale_of_quantised(&f, t))
			continue;
		if (!is_float(t->dtype) && !is_quantised(&f, t)) {
			struct st_wtensor *w = out_add(&o, NULL);
			w->name = t->name;
			w->dtype = t->dtype;
			w->ndim = t->ndim;
			memcpy(w->shape, t->shape, sizeof t->shape);
			w->data = t->data;
			continue;
		}
		uint64_t n;
		float *x = load_f32(&f, t, &n);
		struct st_wtensor *w = out_add(&o, x);
		w->name = t->name;
		w->dtype = dtype;
		w->ndim = t->ndim;
		memcpy(w->shape, t->shape, sizeof t->shape);
		if (t->dtype == ST_U8)
			w->shape[1] *= 2;
		w->f32 = x;
		if (t->dtype == ST_F64 && dtype == ST_F32)
			w->dtype = ST_F32;
	}
	size_t nm;
	struct st_kv *meta = copy_meta(&f, 0, &nm, dequant);
	write_ckpt(argv[optind + 1], &o, meta, nm);
	free(meta);
	out_free(&o);
	st_close(&f);
	return 0;
}

/* ---- average ---- */

static int
cmd_average(int argc, char **argv)
{
	int c;
	const char *output = NULL;
	while ((c = getopt(argc, argv, "+ho:")) != -1) {
		switch (c) {
		case 'h': cli_help();
		case 'o': output = optarg; break;
		default: cli_usage();
		}
	}
	int k = argc - optind;
	if (output == NULL || k < 1)
		cli_usage();
	struct st_file *f = xmalloc((size_t)k * sizeof *f);
	for (int i = 0; i < k; i++) {
		open_ckpt(&f[i], argv[optind + i]);
		if (st_meta(&f[i], "vesper.quant") != NULL)
			cli_die("%s: a quantised checkpoint cannot be averaged", f[i].path);
	}
	/* Same model: same configuration and the same tensors. */
	struct vlm_config c0, ci;
	int have0 = st_vesper_config(&f[0], &c0) == V_OK;
	for (int i = 1; i < k; i++) {
		int havei = st_vesper_config(&f[i], &ci) == V_OK;
		char *j0 = have0 ? vlm_config_json(&c0) : NULL;
		char *ji = havei ? vlm_config_json(&ci) : NULL;
		int same = have0 == havei && (!have0 || (j0 && ji && strcmp(j0, ji) == 0));
		free(j0);
		free(ji);
		if (!same)
			cli_die("%s and %s: the model configurations differ", f[0].path, f[i].path);
		if (f[i].n != f[0].n)
			cli_die("%s and %s: %zu and %zu tensors", f[0].path, f[i].path,
			    f[0].n, f[i].n);
	}
	struct outset o = { 0 };
	for (size_t t = 0; t < f[0].n; t++) {
		const struct st_tensor *t0 = &f[0].t[t];
		struct st_wtensor *w = out_add(&o, NULL);
		w->name = t0->name;
		w->dtype = t0->dtype;
		w->ndim = t0->ndim;
		memcpy(w->shape, t0->shape, sizeof t0->shape);
		w->data = t0->data;
		for (int i = 1; i < k; i++) {
			const struct st_tensor *ti = st_find(&f[i], t0->name);
			if (ti == NULL || ti->ndim != t0->ndim ||
			    memcmp(ti->shape, t0->shape, sizeof t0->shape) != 0)
				cli_die("%s: tensor %s is missing or has another shape",
				    f[i].path, t0->name);
			if (is_float(ti->dtype) != is_float(t0->dtype))
				cli_die("%s: tensor %s is %s, %s has %s", f[i].path, t0->name,
				    st_dtype_name(ti->dtype), f[0].path, st_dtype_name(t0->dtype));
		}
		if (!is_float(t0->dtype))
			continue;	/* integers are copied from the first */
		float *acc = xmalloc(t0->numel * sizeof *acc);
		float *x = xmalloc(t0->numel * sizeof *x);
		st_tensor_f32(t0, acc);
		for (int i = 1; i < k; i++) {
			st_tensor_f32(st_find(&f[i], t0->name), x);
			for (uint64_t e = 0; e < t0->numel; e++)
				acc[e] += x[e];
		}
		for (uint64_t e = 0; e < t0->numel; e++)
			acc[e] /= (float)k;
		free(x);
		o.own[o.n - 1] = acc;	/* w, the last added, now owns acc */
		w->data = NULL;
		w->f32 = acc;
		if (w->dtype == ST_F64)
			w->dtype = ST_F32;
	}
	size_t nm;
	struct st_kv *meta = copy_meta(&f[0], 1, &nm, 0);
	char kbuf[32];
	snprintf(kbuf, sizeof kbuf, "%d", k);
	meta[nm].key = "vesper.averaged";
	meta[nm++].value = kbuf;
	write_ckpt(output, &o, meta, nm);
	printf("%s: the mean of %d checkpoints, %zu tensors\n", output, k, o.n);
	free(meta);
	out_free(&o);
	for (int i = 0; i < k; i++)
		st_close(&f[i]);
	free(f);
	return 0;
}

/* ---- init ---- */

static uint64_t rng_state;

static double
rng_uniform(void)
{
	/* xorshift64*: enough for test weights, and the same on every host. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (((rng_state * 0x2545f4914f6cdd1dull) >> 11) + 0.5) / 9007199254740992.0;
}

static int
cmd_init(int argc, char **argv)
{
	int c, vocab_used = 0;
	const char *preset = "tiny", *tokfile = NULL;
	uint64_t seed = 1;
	while ((c = getopt(argc, argv, "+hp:s:t:V:")) != -1) {
		switch (c) {
		case 'h': cli_help();
		case 'p': preset = optarg; break;
		case 't': tokfile = optarg; break;
		case 's': seed = cli_count("-s", optarg, 0, UINT64_MAX); break;
		case 'V': vocab_used = (int)cli_int("-V", optarg, 1, 1 << 22); break;
		default: cli_usage();
		}
	}
	if (argc - optind != 1)
		cli_usage();
	/* A tokenizer sets the vocabulary and is recorded by its hash. */
	char tokhex[65] = "";
	if (tokfile != NULL) {
		struct tok *t;
		int e = tok_load(tokfile, &t);
		if (e)
			cli_fatal(e);
		vocab_used = (int)tok_vocab_size(t);
		snprintf(tokhex, sizeof tokhex, "%s", tok_sha256_hex(t));
		tok_free(t);
	}
	struct vlm_config cfg;
	int err = vlm_preset(preset, vocab_used, &cfg);
	if (err)
		cli_bad_usage("-p: %s", v_errmsg(err));
	int nl = vlm_layout(&cfg, NULL);
	struct vlm_tensor *lt = xmalloc((size_t)nl * sizeof *lt);
	vlm_layout(&cfg, lt);
	size_t total = lt[nl - 1].offset + (size_t)lt[nl - 1].rows * lt[nl - 1].cols;
	float *p = xmalloc(total * sizeof *p);
	rng_state = seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;
	/* Normal(0, 0.02) matrices, the output projections of the blocks
	 * scaled down by sqrt(2L) as GPT-2 does, and norms of ones. */
	for (int i = 0; i < nl; i++) {
		float *x = p + lt[i].offset;
		size_t n = (size_t)lt[i].rows * lt[i].cols;
		double sd = 0.02;
		if (strstr(lt[i].name, "o_proj") || strstr(lt[i].name, "down_proj"))
			sd /= sqrt(2.0 * cfg.layers);
		for (size_t k = 0; k < n; k++)
			x[k] = lt[i].is_matrix ? (float)(sd * sqrt(-2 * log(rng_uniform())) *
			    cos(6.283185307179586 * rng_uniform())) : 1.0f;
	}
	struct outset o = { 0 };
	for (int i = 0; i < nl; i++) {
		struct st_wtensor *w = out_add(&o, NULL);
		w->name = lt[i].name;
		w->dtype = ST_F32;
		w->ndim = lt[i].is_matrix ? 2 : 1;
		w->shape[0] = lt[i].is_matrix ? lt[i].rows : lt[i].cols;
		w->shape[1] = lt[i].cols;
		w->data = p + lt[i].offset;
	}
	char *js = vlm_config_json(&cfg);
	if (js == NULL)
		cli_die("out of memory");
	struct st_kv meta[] = {
		{ "format", "vesper" }, { "vesper.config", js },
		{ "vesper.tokenizer", tokhex }, { "vesper.step", "0" },
	};
	write_ckpt(argv[optind], &o, meta, 4);
	free(js);
	free(p);
	free(lt);
	out_free(&o);
	return 0;
}

/* ---- export ---- */

/* Copy a file through a temporary name. */
static void
copy_file(const char *from, const char *to)
{
	char *buf;
	size_t n;
	struct v_atomic a;
	int err = v_slurp(from, 0, &buf, &n);
	if (err)
		cli_fatal(err);
	if ((err = v_atomic_open(&a, to)) != V_OK)
		cli_fatal(err);
	err = v_write_all(a.fp, buf, n, to);
	if (!err)
		err = v_atomic_commit(&a);
	if (err) {
		v_atomic_abort(&a);
		cli_fatal(err);
	}
	free(buf);
}

static int
exists(const char *path)
{
	struct stat sb;
	return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* A tokenizer beside a checkpoint: tokenizer.json, else the Vesper
 * tokenizer.bpe, in the checkpoint's directory or up to two above it (a
 * pipeline keeps RUN/tokenizer.bpe beside RUN/ckpt/step-N). */
static char *
find_tokenizer(const char *ckpt)
{
	struct stat sb;
	char buf[4096];
	static const char *const names[] = { "tokenizer.json", "tokenizer.bpe" };
	static const char *const ups[] = { "", "/..", "/../.." };
	char *dir = xstrdup(ckpt);

	if (stat(ckpt, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
		char *slash = strrchr(dir, '/');
		if (slash != NULL)
			*slash = '\0';
		else
			strcpy(dir, ".");
	}
	for (int n = 0; n < 2; n++)
		for (int u = 0; u < 3; u++) {
			snprintf(buf, sizeof buf, "%s%s/%s", dir, ups[u], names[n]);
			if (exists(buf)) {
				free(dir);
				return xstrdup(buf);
			}
		}
	free(dir);
	return NULL;
}

/* Is path a JSON document (a Hugging Face tokenizer.json) rather than a
 * Vesper tokenizer?  Its first non-blank byte says. */
static int
is_json_file(const char *path)
{
	FILE *fp = fopen(path, "rb");
	int c = EOF;
	if (fp == NULL)
		return 0;
	while ((c = getc(fp)) != EOF && (c == ' ' || c == '\t' || c == '\n' || c == '\r'))
		;
	fclose(fp);
	return c == '{';
}

/* A Vesper tokenizer as a tokenizer.json at out, after checking that it is
 * the one the checkpoint was trained with and that its ids fit the model. */
static void
vesper_tokenizer_json(const struct st_file *f, const struct vlm_config *cfg,
    const char *tokfile, const char *out)
{
	struct tok *t;
	int err = tok_load(tokfile, &t);
	if (err)
		cli_fatal(err);
	const char *want = st_meta(f, "vesper.tokenizer");
	if (want != NULL && *want != '\0' && strcmp(want, tok_sha256_hex(t)) != 0)
		cli_die("%s is not the tokenizer %s was trained with (SHA-256 %s, "
		    "the checkpoint records %s)", tokfile, f->path, tok_sha256_hex(t), want);
	if (tok_vocab_size(t) > (uint32_t)cfg->vocab)
		cli_die("%s: %u tokens, more than the model's %d embeddings", tokfile,
		    tok_vocab_size(t), cfg->vocab);
	if ((err = tok_export_hf(t, out)) != V_OK)
		cli_fatal(err);
	tok_free(t);
}

static void
write_hf_config(const char *path, const struct vlm_config *c, int dtype)
{
	int hd = c->dim / c->heads;
	json_t *o = json_pack("{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i,"
	    " s:s, s:f, s:f, s:b, s:b, s:b, s:s, s:f, s:n, s:i, s:i, s:i, s:s}",
	    "architectures", "LlamaForCausalLM", "model_type", "llama",
	    "vocab_size", c->vocab, "hidden_size", c->dim,
	    "intermediate_size", c->hidden, "num_hidden_layers", c->layers,
	    "num_attention_heads", c->heads, "num_key_value_heads", c->kv_heads,
	    "head_dim", hd, "max_position_embeddings", c->ctx,
	    "hidden_act", "silu", "rms_norm_eps", (double)c->norm_eps,
	    "rope_theta", (double)c->rope_theta,
	    "tie_word_embeddings", c->tie, "attention_bias", 0, "mlp_bias", 0,
	    "torch_dtype", dtype == ST_BF16 ? "bfloat16" : dtype == ST_F16 ? "float16" : "float32",
	    "initializer_range", 0.02, "rope_scaling",
	    "pad_token_id", 0, "bos_token_id", 1, "eos_token_id", 2,
	    "vesper_source", "vckpt export --hf");
	if (o == NULL)
		cli_die("out of memory");
	char *js = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(o);
	if (js == NULL)
		cli_die("out of memory");
	struct v_atomic a;
	int err = v_atomic_open(&a, path);
	if (!err)
		err = v_write_all(a.fp, js, strlen(js), path);
	if (!err)
		err = v_write_all(a.fp, "\n", 1, path);
	if (!err)
		err = v_atomic_commit(&a);
	if (err) {
		v_atomic_abort(&a);
		cli_fatal(err);
	}
	free(js);
}

static void
export_hf(struct st_file *f, const struct vlm_config *cfg, const char *dir,
    const char *tokfile)
{
	char path[4096];
	int err;

	if (cfg->act != VLM_ACT_SILU)
		cli_die("%s: activation %s: Hugging Face's Llama runs silu models only",
		    f->path, vlm_act_name(cfg->act));
	if ((err = v_mkdir_p(dir)) != V_OK)
		cli_fatal(err);
	/* Weights keep their float dtype; quantised ones go back to bf16. */
	struct outset o = { 0 };
	int dtype = ST_F32;
	for (size_t i = 0; i < f->n; i++) {
		const struct st_tensor *t = &f->t[i];
		if (is_scale_of_quantised(f, t))
			continue;
		struct st_wtensor *w;
		if (!is_quantised(f, t)) {
			w = out_add(&o, NULL);
			w->dtype = t->dtype;
			w->data = t->data;
			if (t->dtype == ST_BF16 || t->dtype == ST_F16)
				dtype = t->dtype;
		} else {
			uint64_t n;
			float *x = load_f32(f, t, &n);
			w = out_add(&o, x);
			w->dtype = ST_BF16;
			w->f32 = x;
			dtype = ST_BF16;
		}
		w->name = t->name;
		w->ndim = t->ndim;
		memcpy(w->shape, t->shape, sizeof t->shape);
		if (t->dtype == ST_U8 && is_quantised(f, t))
			w->shape[1] *= 2;
	}
	/* transformers refuses safetensors whose format is not "pt". */
	size_t nm;
	struct st_kv *meta = copy_meta(f, 0, &nm, 1);
	for (size_t i = 0; i < nm; i++)
		if (strcmp(meta[i].key, "format") == 0)
			meta[i].value = "pt";
	snprintf(path, sizeof path, "%s/model.safetensors", dir);
	if ((err = st_write(path, o.w, o.n, meta, nm)) != V_OK)
		cli_fatal(err);
	free(meta);
	out_free(&o);
	snprintf(path, sizeof path, "%s/config.json", dir);
	write_hf_config(path, cfg, dtype);
	if (tokfile != NULL) {
		snprintf(path, sizeof path, "%s/tokenizer.json", dir);
		copy_file(tokfile, path);
	}
}

/* The tokenizer.json of vtokenize export (a Hugging Face BPE tokenizer) as
 * GGUF's tokenizer.ggml.* keys, padded to the model's vocabulary. */
static void
gguf_tokenizer(struct gguf_writer *w, const char *tokfile, int vocab)
{
	char *buf;
	size_t len;
	json_t *root;
	int err = v_slurp(tokfile, 0, &buf, &len);
	if (err)
		cli_fatal(err);
	if ((err = v_json_parse(buf, len, tokfile, 0, &root)) != V_OK)
		cli_fatal(err);
	free(buf);
	json_t *model = json_object_get(root, "model");
	json_t *vmap = json_object_get(model, "vocab");
	json_t *merges = json_object_get(model, "merges");
	const char *type = json_string_value(json_object_get(model, "type"));
	if (!json_is_object(vmap) || type == NULL || strcmp(type, "BPE") != 0)
		cli_die("%s: not a BPE tokenizer.json (model.type, model.vocab)", tokfile);

	const char **tok = calloc((size_t)vocab, sizeof *tok);
	size_t *tlen = calloc((size_t)vocab, sizeof *tlen);
	int32_t *ttype = calloc((size_t)vocab, sizeof *ttype);
	char (*pad)[24] = calloc((size_t)vocab, sizeof *pad);
	if (!tok || !tlen || !ttype || !pad)
		cli_die("out of memory");
	const char *k;
	json_t *v;
	json_object_foreach(vmap, k, v) {
		json_int_t id = json_integer_value(v);
		if (!json_is_integer(v) || id < 0 || id >= vocab)
			cli_die("%s: token \"%s\" has id %lld, outside the model's %d",
			    tokfile, k, (long long)id, vocab);
		tok[id] = k;
		ttype[id] = 1;	/* normal */
	}
	int bos = -1, eos = -1, padid = -1;
	json_t *added = json_object_get(root, "added_tokens");
	size_t i;
	json_array_foreach(added, i, v) {
		json_int_t id = json_integer_value(json_object_get(v, "id"));
		const char *s = json_string_value(json_object_get(v, "content"));
		if (s == NULL || id < 0 || id >= vocab)
			continue;
		tok[id] = s;
		ttype[id] = json_is_true(json_object_get(v, "special")) ? 3 : 4;
		if (strcmp(s, "<bos>") == 0) bos = (int)id;
		if (strcmp(s, "<eos>") == 0) eos = (int)id;
		if (strcmp(s, "<pad>") == 0) padid = (int)id;
	}
	for (int id = 0; id < vocab; id++) {
		if (tok[id] == NULL) {
			snprintf(pad[id], sizeof pad[id], "[PAD%d]", id);
			tok[id] = pad[id];
			ttype[id] = 5;	/* unused */
		}
		tlen[id] = strlen(tok[id]);
	}
	gguf_w_str(w, "tokenizer.ggml.model", "gpt2");
	gguf_w_str(w, "tokenizer.ggml.pre", "default");
	gguf_w_arr_str(w, "tokenizer.ggml.tokens", tok, tlen, (size_t)vocab);
	gguf_w_arr_i32(w, "tokenizer.ggml.token_type", ttype, (size_t)vocab);
	/* Merges are "a b" strings, or [a, b] pairs in newer files. */
	size_t nmerge = json_array_size(merges);
	char **ms = calloc(nmerge ? nmerge : 1, sizeof *ms);
	if (ms == NULL)
		cli_die("out of memory");
	json_array_foreach(merges, i, v) {
		if (json_is_string(v)) {
			ms[i] = xstrdup(json_string_value(v));
		} else if (json_is_array(v) && json_array_size(v) == 2 &&
		    json_is_string(json_array_get(v, 0)) && json_is_string(json_array_get(v, 1))) {
			const char *a = json_string_value(json_array_get(v, 0));
			const char *b = json_string_value(json_array_get(v, 1));
			ms[i] = xmalloc(strlen(a) + strlen(b) + 2);
			sprintf(ms[i], "%s %s", a, b);
		} else {
			cli_die("%s: merge %zu is neither \"a b\" nor [a, b]", tokfile, i);
		}
	}
	gguf_w_arr_str(w, "tokenizer.ggml.merges", (const char *const *)ms, NULL, nmerge);
	if (bos >= 0) gguf_w_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)bos);
	if (eos >= 0) gguf_w_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eos);
	if (padid >= 0) gguf_w_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)padid);
	gguf_w_bool(w, "tokenizer.ggml.add_bos_token", bos >= 0);
	for (size_t m = 0; m < nmerge; m++)
		free(ms[m]);
	free(ms);
	free(tok);
	free(tlen);
	free(ttype);
	free(pad);
	json_decref(root);
}

/* llama.cpp's name for a Hugging Face Llama tensor. */
static int
gguf_name(const char *hf, char *out, size_t n)
{
	static const struct { const char *hf, *gg; } map[] = {
		{ "input_layernorm.weight", "attn_norm.weight" },
		{ "self_attn.q_proj.weight", "attn_q.weight" },
		{ "self_attn.k_proj.weight", "attn_k.weight" },
		{ "self_attn.v_proj.weight", "attn_v.weight" },
		{ "self_attn.o_proj.weight", "attn_output.weight" },
		{ "post_attention_layernorm.weight", "ffn_norm.weight" },
		{ "mlp.gate_proj.weight", "ffn_gate.weight" },
		{ "mlp.up_proj.weight", "ffn_up.weight" },
		{ "mlp.down_proj.weight", "ffn_down.weight" },
	};
	int layer, used = 0;

	if (strcmp(hf, "model.embed_tokens.weight") == 0)
		return snprintf(out, n, "token_embd.weight"), 0;
	if (strcmp(hf, "model.norm.weight") == 0)
		return snprintf(out, n, "output_norm.weight"), 0;
	if (strcmp(hf, "lm_head.weight") == 0)
		return snprintf(out, n, "output.weight"), 0;
	if (sscanf(hf, "model.layers.%d.%n", &layer, &used) == 1 && used > 0)
		for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
			if (strcmp(hf + used, map[i].hf) == 0)
				return snprintf(out, n, "blk.%d.%s", layer, map[i].gg), 0;
	return -1;
}

/* Rows of q and k reordered for llama.cpp's rope, which rotates adjacent
 * pairs (2i, 2i+1) where Hugging Face's rotates (i, i + hd/2): within each
 * head, new row 2i+a is old row a*hd/2 + i.  convert_hf_to_gguf.py does
 * the same permutation. */
static void
permute_rows(const float *in, float *out, int rows, int cols, int hd)
{
	for (int h = 0; h < rows / hd; h++)
		for (int i = 0; i < hd / 2; i++)
			for (int a = 0; a < 2; a++)
				memcpy(out + ((size_t)h * hd + 2 * i + a) * cols,
				    in + ((size_t)h * hd + (size_t)a * hd / 2 + i) * cols,
				    (size_t)cols * sizeof *out);
}

static void
export_gguf(struct st_file *f, const struct vlm_config *cfg, const char *file,
    const char *qtype, const char *tokfile)
{
	uint32_t mtype, ftype;
	if (strcmp(qtype, "f16") == 0) mtype = GGML_TYPE_F16, ftype = 1;
	else if (strcmp(qtype, "q8_0") == 0) mtype = GGML_TYPE_Q8_0, ftype = 7;
	else if (strcmp(qtype, "q4_0") == 0) mtype = GGML_TYPE_Q4_0, ftype = 2;
	else cli_bad_usage("-q: f16, q8_0 or q4_0, not %s", qtype);
	if (cfg->act != VLM_ACT_SILU)
		cli_die("%s: activation %s: llama.cpp's llama runs silu models only",
		    f->path, vlm_act_name(cfg->act));

	struct gguf_writer w;
	int hd = cfg->dim / cfg->heads, err;
	gguf_w_init(&w);
	gguf_w_str(&w, "general.architecture", "llama");
	gguf_w_str(&w, "general.name", "VesperLM");
	gguf_w_u32(&w, "general.file_type", ftype);
	if (mtype != GGML_TYPE_F16)
		gguf_w_u32(&w, "general.quantization_version", 2);
	gguf_w_u32(&w, "llama.vocab_size", (uint32_t)cfg->vocab);
	gguf_w_u32(&w, "llama.context_length", (uint32_t)cfg->ctx);
	gguf_w_u32(&w, "llama.embedding_length", (uint32_t)cfg->dim);
	gguf_w_u32(&w, "llama.block_count", (uint32_t)cfg->layers);
	gguf_w_u32(&w, "llama.feed_forward_length", (uint32_t)cfg->hidden);
	gguf_w_u32(&w, "llama.attention.head_count", (uint32_t)cfg->heads);
	gguf_w_u32(&w, "llama.attention.head_count_kv", (uint32_t)cfg->kv_heads);
	gguf_w_u32(&w, "llama.rope.dimension_count", (uint32_t)hd);
	gguf_w_f32(&w, "llama.rope.freq_base", cfg->rope_theta);
	gguf_w_f32(&w, "llama.attention.layer_norm_rms_epsilon", cfg->norm_eps);
	if (tokfile != NULL)
		gguf_tokenizer(&w, tokfile, cfg->vocab);

	/* Declare every tensor: vectors F32, matrices the asked type when
	 * their rows are whole blocks, else F16. */
	struct vlm_tensor *lt;
	int nl = vlm_layout(cfg, NULL);
	lt = xmalloc((size_t)nl * sizeof *lt);
	vlm_layout(cfg, lt);
	uint32_t *types = xmalloc((size_t)nl * sizeof *types);
	for (int i = 0; i < nl; i++) {
		char name[96];
		uint64_t ne[2] = { (uint64_t)lt[i].cols, (uint64_t)lt[i].rows };
		if (gguf_name(lt[i].name, name, sizeof name) != 0)
			cli_die("%s: no GGUF name for %s", f->path, lt[i].name);
		if (!lt[i].is_matrix)
			types[i] = GGML_TYPE_F32;
		else if (mtype != GGML_TYPE_F16 && lt[i].cols % VQ_QK != 0)
			types[i] = GGML_TYPE_F16;
		else
			types[i] = mtype;
		gguf_w_tensor(&w, name, types[i], lt[i].is_matrix ? 2 : 1, ne);
	}
	if ((err = gguf_w_begin(&w, file)) != V_OK) {
		gguf_w_free(&w);
		cli_fatal(err);
	}
	for (int i = 0; i < nl && !err; i++) {
		const struct st_tensor *t = st_find(f, lt[i].name);
		uint64_t n;
		if (t == NULL)
			cli_die("%s: tensor %s is missing", f->path, lt[i].name);
		vq_tensor_numel(f, t, &n);
		if (n != (uint64_t)lt[i].rows * (uint64_t)lt[i].cols)
			cli_die("%s: tensor %s has %llu values, the configuration wants %d x %d",
			    f->path, t->name, (unsigned long long)n, lt[i].rows, lt[i].cols);
		float *x = load_f32(f, t, &n);
		int is_q = strstr(t->name, "q_proj") != NULL, is_k = strstr(t->name, "k_proj") != NULL;
		if (is_q || is_k) {
			float *y = xmalloc(n * sizeof *y);
			permute_rows(x, y, lt[i].rows, lt[i].cols, hd);
			free(x);
			x = y;
		}
		uint64_t nb = gguf_type_bytes(types[i], n);
		unsigned char *b = xmalloc(nb);
		if (types[i] == GGML_TYPE_F32)
			memcpy(b, x, nb);
		else if (types[i] == GGML_TYPE_F16)
			for (uint64_t k = 0; k < n; k++)
				v_put_u16(b + 2 * k, v_f32_to_f16(x[k]));
		else if (types[i] == GGML_TYPE_Q8_0)
			vq_q8_0(x, n, b);
		else
			vq_q4_0(x, n, b);
		err = gguf_w_data(&w, b, nb);
		free(b);
		free(x);
	}
	if (!err)
		err = gguf_w_commit(&w);
	gguf_w_free(&w);
	if (err)
		cli_fatal(err);
	free(types);
	free(lt);
}

static int
cmd_export(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "hf", required_argument, NULL, 'H' },
		{ "gguf", required_argument, NULL, 'G' },
		{ "tokenizer", required_argument, NULL, 't' },
		{ "type", required_argument, NULL, 'q' },
		{ NULL, 0, NULL, 0 }
	};
	int c;
	const char *hf = NULL, *gg = NULL, *tokfile = NULL, *qtype = "f16";
	while ((c = getopt_long(argc, argv, "+ht:q:", longopts, NULL)) != -1) {
		switch (c) {
		case 'h': cli_help();
		case 'H': hf = optarg; break;
		case 'G': gg = optarg; break;
		case 't': tokfile = optarg; break;
		case 'q': qtype = optarg; break;
		default: cli_usage();
		}
	}
	if (argc - optind != 1 || (hf == NULL) == (gg == NULL))
		cli_bad_usage("export needs a checkpoint and one of --hf DIR or --gguf FILE");
	struct st_file f;
	struct vlm_config cfg;
	open_ckpt(&f, argv[optind]);
	int err = st_vesper_config(&f, &cfg);
	if (err)
		cli_fatal(err);
	char *found = NULL, tmpdir[64] = "", tmpjson[96] = "";
	if (tokfile == NULL)
		tokfile = found = find_tokenizer(argv[optind]);
	if (tokfile != NULL && !is_json_file(tokfile)) {
		/* A Vesper tokenizer: its tokenizer.json, made in a private
		 * directory and removed at the end. */
		const char *td = getenv("TMPDIR");
		snprintf(tmpdir, sizeof tmpdir, "%s/vckpt.XXXXXX",
		    td != NULL && *td != '\0' && strlen(td) < 40 ? td : "/tmp");
		if (mkdtemp(tmpdir) == NULL)
			cli_die("cannot create a temporary directory: %s", strerror(errno));
		snprintf(tmpjson, sizeof tmpjson, "%s/tokenizer.json", tmpdir);
		vesper_tokenizer_json(&f, &cfg, tokfile, tmpjson);
		tokfile = tmpjson;
	}
	if (hf != NULL)
		export_hf(&f, &cfg, hf, tokfile);
	else
		export_gguf(&f, &cfg, gg, qtype, tokfile);
	if (tokfile == NULL)
		cli_warn("no tokenizer given (-t) or found beside the checkpoint: "
		    "the export holds no tokenizer");
	if (*tmpjson != '\0') {
		unlink(tmpjson);
		rmdir(tmpdir);
	}
	free(found);
	st_close(&f);
	return 0;
}

/* ---- import ---- */

static int
hf_int(json_t *o, const char *key, int dflt, int required)
{
	json_t *v = json_object_get(o, key);
	if (v == NULL || json_is_null(v)) {
		if (required)
			cli_die("config.json: no %s", key);
		return dflt;
	}
	if (!json_is_integer(v) || json_integer_value(v) <= 0 ||
	    json_integer_value(v) > INT32_MAX)
		cli_die("config.json: %s is not a positive integer", key);
	return (int)json_integer_value(v);
}

static double
hf_num(json_t *o, const char *key, double dflt)
{
	json_t *v = json_object_get(o, key);
	if (v == NULL || json_is_null(v))
		return dflt;
	if (!json_is_number(v))
		cli_die("config.json: %s is not a number", key);
	return json_number_value(v);
}

static int
cmd_import(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "hf", required_argument, NULL, 'H' },
		{ NULL, 0, NULL, 0 }
	};
	int c;
	const char *hf = NULL, *output = NULL;
	while ((c = getopt_long(argc, argv, "+ho:", longopts, NULL)) != -1) {
		switch (c) {
		case 'h': cli_help();
		case 'H': hf = optarg; break;
		case 'o': output = optarg; break;
		default: cli_usage();
		}
	}
	if (argc != optind || hf == NULL || output == NULL)
		cli_usage();
	char path[4096];
	char *buf;
	size_t len;
	json_t *hc;
	snprintf(path, sizeof path, "%s/config.json", hf);
	int err = v_slurp(path, 1 << 20, &buf, &len);
	if (err)
		cli_fatal(err);
	if ((err = v_json_parse(buf, len, path, 0, &hc)) != V_OK)
		cli_fatal(err);
	free(buf);
	if (!json_is_object(hc))
		cli_die("%s: not a JSON object", path);

	/* What Vesper's model can be: a Llama without biases, rope scaling or
	 * another activation. */
	const char *act = json_string_value(json_object_get(hc, "hidden_act"));
	if (act != NULL && strcmp(act, "silu") != 0)
		cli_die("%s: hidden_act %s: only silu Llama models import", path, act);
	json_t *rs = json_object_get(hc, "rope_scaling");
	if (rs != NULL && !json_is_null(rs))
		cli_die("%s: rope_scaling is not supported", path);
	if (json_is_true(json_object_get(hc, "attention_bias")) ||
	    json_is_true(json_object_get(hc, "mlp_bias")))
		cli_die("%s: biases are not supported", path);
	struct vlm_config cfg;
	memset(&cfg, 0, sizeof cfg);
	cfg.vocab_used = hf_int(hc, "vocab_size", 0, 1);
	cfg.vocab = vlm_pad_vocab(cfg.vocab_used);
	cfg.dim = hf_int(hc, "hidden_size", 0, 1);
	cfg.layers = hf_int(hc, "num_hidden_layers", 0, 1);
	cfg.heads = hf_int(hc, "num_attention_heads", 0, 1);
	cfg.kv_heads = hf_int(hc, "num_key_value_heads", cfg.heads, 0);
	cfg.hidden = hf_int(hc, "intermediate_size", 0, 1);
	cfg.ctx = hf_int(hc, "max_position_embeddings", 2048, 0);
	if (cfg.ctx > 1 << 20)
		cfg.ctx = 1 << 20;
	cfg.act = VLM_ACT_SILU;
	cfg.era_gamma = 0.5f;
	cfg.era_temp = 1.0f;
	cfg.tie = json_is_true(json_object_get(hc, "tie_word_embeddings"));
	cfg.norm_eps = (float)hf_num(hc, "rms_norm_eps", 1e-6);
	cfg.rope_theta = (float)hf_num(hc, "rope_theta", 10000);
	int hd = hf_int(hc, "head_dim", cfg.dim / cfg.heads, 0);
	json_decref(hc);
	if (hd * cfg.heads != cfg.dim)
		cli_die("%s: head_dim %d times %d heads is not hidden_size %d",
		    path, hd, cfg.heads, cfg.dim);
	if ((err = vlm_config_check(&cfg)) != V_OK)
		cli_die("%s: %s", path, v_errmsg(err));

	struct st_file f;
	snprintf(path, sizeof path, "%s/model.safetensors", hf);
	if (!exists(path)) {
		char idx[4096];
		snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", hf);
		if (exists(idx))
			cli_die("%s: sharded checkpoints are not supported; "
			    "merge the shards into model.safetensors first", hf);
	}
	open_ckpt(&f, path);
	int nl = vlm_layout(&cfg, NULL);
	struct vlm_tensor *lt = xmalloc((size_t)nl * sizeof *lt);
	vlm_layout(&cfg, lt);
	struct outset o = { 0 };
	for (int i = 0; i < nl; i++) {
		const struct st_tensor *t = st_find(&f, lt[i].name);
		if (t == NULL)
			cli_die("%s: tensor %s is missing", path, lt[i].name);
		if (!is_float(t->dtype))
			cli_die("%s: tensor %s is %s, not a float", path, t->name,
			    st_dtype_name(t->dtype));
		/* The embedding and head gain zero rows up to the padded
		 * vocabulary, which no token id reaches. */
		int rows = lt[i].rows, cols = lt[i].cols;
		int have_rows = (strcmp(lt[i].name, "model.embed_tokens.weight") == 0 ||
		    strcmp(lt[i].name, "lm_head.weight") == 0) ? cfg.vocab_used : rows;
		int nd = lt[i].is_matrix ? 2 : 1;
		if (t->ndim != nd || (nd == 2 && (t->shape[0] != have_rows || t->shape[1] != cols)) ||
		    (nd == 1 && t->shape[0] != cols))
			cli_die("%s: tensor %s does not have the shape config.json implies (%d, %d)",
			    path, t->name, have_rows, cols);
		float *x = calloc((size_t)rows * cols, sizeof *x);
		if (x == NULL)
			cli_die("out of memory");
		st_tensor_f32(t, x);
		struct st_wtensor *w = out_add(&o, x);
		w->name = lt[i].name;
		w->dtype = ST_F32;
		w->ndim = nd;
		w->shape[0] = nd == 2 ? rows : cols;
		w->shape[1] = cols;
		w->f32 = x;
	}
	char *js = vlm_config_json(&cfg);
	if (js == NULL)
		cli_die("out of memory");
	struct st_kv meta[] = {
		{ "format", "vesper" }, { "vesper.config", js },
		{ "vesper.tokenizer", "" }, { "vesper.step", "0" },
		{ "vesper.imported_from", hf },
	};
	write_ckpt(output, &o, meta, 5);
	free(lt);
	printf("%s: %d layers, width %d, vocabulary %d (padded to %d), %llu parameters\n",
	    output, cfg.layers, cfg.dim, cfg.vocab_used, cfg.vocab,
	    (unsigned long long)vlm_param_count(&cfg));
	free(js);
	out_free(&o);
	st_close(&f);
	return 0;
}

int
main(int argc, char **argv)
{
	cli_init("vckpt",
	"vckpt info [-h] [-t] checkpoint\n"
	"vckpt verify [-h] [-t tokenizer] checkpoint\n"
	"vckpt diff [-h] [-e tolerance] checkpoint checkpoint\n"
	"vckpt convert [-h] [-d f32|bf16|f16] checkpoint output\n"
	"vckpt average [-h] -o output checkpoint ...\n"
	"vckpt init [-h] [-p preset] [-s seed] [-t tokenizer | -V vocab] output\n"
	"vckpt export [-h] [-t tokenizer] --hf dir checkpoint\n"
	"vckpt export [-h] [-t tokenizer] [-q type] --gguf file checkpoint\n"
	"vckpt import [-h] --hf dir -o output");
	cli_signals();
	if (argc < 2)
		cli_usage();
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)
		cli_help();
	static const struct {
		const char *name;
		int (*run)(int, char **);
	} cmds[] = {
		{ "info", cmd_info }, { "verify", cmd_verify }, { "diff", cmd_diff },
		{ "convert", cmd_convert }, { "average", cmd_average },
		{ "init", cmd_init }, { "export", cmd_export }, { "import", cmd_import },
	};
	for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
		if (strcmp(argv[1], cmds[i].name) == 0)
			return cli_exit_status(cmds[i].run(argc - 1, argv + 1));
	cli_bad_usage("unknown command '%s'", argv[1]);
}
