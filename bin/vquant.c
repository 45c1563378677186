/* vquant.c: quantise a checkpoint's matrices to INT8 or INT4 (the layouts
 * of vesper-checkpoint(5)) and report what it costs. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/infer.h"
#include "../lib/quant.h"
#include "../lib/safetensors.h"
#include "../lib/shard_reader.h"
#include "../lib/verr.h"
#include "../lib/vio.h"
#include "../lib/vlm_config.h"
#include "cli/cli.h"

/* The matrices vgen runs through its quantised kernels: every projection of
 * the blocks, and an untied output head.  The embedding is a lookup and
 * stays as it is. */
static int
is_quantised_name(const char *name)
{
	size_t n = strlen(name);
	static const char suffix[] = "_proj.weight";

	if (strcmp(name, "lm_head.weight") == 0)
		return 1;
	return strncmp(name, "model.layers.", 13) == 0 && n > sizeof suffix &&
	    strcmp(name + n - (sizeof suffix - 1), suffix) == 0;
}

/* Validation perplexity of the checkpoint at path over the first `budget`
 * tokens of the val split of shards, in windows of up to 256 tokens (each
 * predicting its tokens 1..T from the ones before, from a fresh cache).
 * Both models see the same windows, so the two numbers compare. */
static double
perplexity(const char *path, const char *shards, uint64_t budget,
    uint64_t *counted)
{
	struct infer_model m;
	struct infer_state st;
	struct infer_work w;
	struct shard_reader *r;
	int err;

	if ((err = infer_model_open(&m, path)) != V_OK)
		cli_fatal(err);
	if ((err = shard_reader_open(&r, shards, SHARD_VAL)) != V_OK)
		cli_fatal(err);
	int T = m.c.ctx < 256 ? m.c.ctx : 256, V = m.c.vocab_used;
	uint64_t avail = shard_reader_tokens(r);
	if (avail < 2)
		cli_die("%s: the validation split has %llu tokens", shards,
		    (unsigned long long)avail);
	if (budget > avail - 1)
		budget = avail - 1;
	if ((uint64_t)T > budget)
		T = (int)budget;
	if (infer_state_init(&st, &m, T) != V_OK || infer_work_init(&w, &m, T) != V_OK)
		cli_die("out of memory for the evaluation");
	int32_t *tok = malloc((size_t)(T + 1) * sizeof *tok);
	float *logits = malloc((size_t)T * V * sizeof *logits);
	struct infer_slot *slot = malloc((size_t)T * sizeof *slot);
	if (tok == NULL || logits == NULL || slot == NULL)
		cli_die("out of memory for the evaluation");
	double nll = 0;
	uint64_t n = 0;
	for (uint64_t done = 0; done + (uint64_t)T <= budget; done += (uint64_t)T) {
		if ((err = shard_reader_next_batch(r, 1, T, tok)) != V_OK)
			cli_fatal(err);
		for (int i = 0; i <= T; i++)
			if (tok[i] < 0 || tok[i] >= V)
				cli_die("%s: token %d is outside the model's vocabulary of %d",
				    shards, (int)tok[i], V);
		for (int i = 0; i < T; i++) {
			slot[i].st = &st;
			slot[i].token = tok[i];
			slot[i].pos = i;
			slot[i].logits = logits + (size_t)i * V;
		}
		if ((err = infer_step(&m, &w, slot, T)) != V_OK)
			cli_fatal(err);
		for (int i = 0; i < T; i++) {
			const float *z = logits + (size_t)i * V;
			double mx = z[0], sum = 0;
			for (int k = 1; k < V; k++)
				mx = z[k] > mx ? z[k] : mx;
			for (int k = 0; k < V; k++)
				sum += exp(z[k] - mx);
			nll += mx + log(sum) - z[tok[i + 1]];
			n++;
		}
	}
	free(tok);
	free(logits);
	free(slot);
	infer_work_free(&w);
	infer_state_free(&st);
	shard_reader_close(r);
	infer_model_free(&m);
	*counted = n;
	return exp(nll / (double)n);
}

struct out_tensor {
	struct st_wtensor w;
	void *own;		/* a buffer to free after writing */
	char *own_name;
};

int
main(int argc, char **argv)
{
	cli_init("vquant",
	"vquant [-h] [-v] [-b 8|4] [-g 32|64|128] [-e shards] [-n tokens]\n"
	"checkpoint output");
	cli_signals();
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "bits", required_argument, NULL, 'b' },
		{ "group", required_argument, NULL, 'g' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "eval", required_argument, NULL, 'e' },
		{ "eval-tokens", required_argument, NULL, 'n' },
		{ NULL, 0, NULL, 0 }
	};
	int c, bits = 8, group = 64, verbose = 0;
	const char *shards = NULL;
	uint64_t budget = 16384;

	while ((c = getopt_long(argc, argv, "+hb:g:ve:n:", longopts, NULL)) != -1) {
		switch (c) {
		case 'h':
			cli_help();
		case 'b':
			bits = (int)cli_int("-b", optarg, 4, 8);
			if (bits != 4 && bits != 8)
				cli_bad_usage("-b: 8 or 4, not %s", optarg);
			break;
		case 'g':
			group = (int)cli_int("-g", optarg, 32, 128);
			if (group != 32 && group != 64 && group != 128)
				cli_bad_usage("-g: 32, 64 or 128, not %s", optarg);
			break;
		case 'v':
			verbose = 1;
			break;
		case 'e':
			shards = optarg;
			break;
		case 'n':
			budget = cli_count("-n", optarg, 2, UINT64_C(1) << 40);
			break;
		default:
			cli_usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc != 2)
		cli_usage();
	if (shards != NULL && strcmp(argv[1], "-") == 0)
		cli_bad_usage("-e evaluates the output, which cannot be standard output");

	struct st_file in;
	struct vlm_config cfg;
	int err = st_open_checkpoint(&in, argv[0]);
	if (err)
		cli_fatal(err);
	if ((err = st_vesper_config(&in, &cfg)) != V_OK)
		cli_fatal(err);
	if (st_meta(&in, "vesper.quant") != NULL)
		cli_die("%s: already quantised (%s)", in.path, st_meta(&in, "vesper.quant"));

	struct out_tensor *out = calloc(2 * in.n + 1, sizeof *out);
	size_t nout = 0;
	uint64_t bytes_in = 0, bytes_out = 0;
	double sum_err = 0, max_err = 0;
	int nmat = 0, kept = 0;
	const char *worst = "";
	if (out == NULL)
		cli_die("out of memory");

	/* The report goes to stdout, unless the checkpoint does. */
	FILE *rep = strcmp(argv[1], "-") == 0 ? stderr : stdout;
	if (verbose)
		fprintf(rep, "%-48s %-10s %12s\n", "tensor", "scheme", "rel_rms");
	for (size_t i = 0; i < in.n; i++) {
		const struct st_tensor *t = &in.t[i];
		struct out_tensor *o = &out[nout++];

		/* By default a tensor passes through unchanged. */
		o->w.name = t->name;
		o->w.dtype = t->dtype;
		o->w.ndim = t->ndim;
		memcpy(o->w.shape, t->shape, sizeof t->shape);
		o->w.data = t->data;
		bytes_in += t->nbytes;
		if (!is_quantised_name(t->name) || t->ndim != 2)
			continue;
		if (t->dtype != ST_F32 && t->dtype != ST_BF16 && t->dtype != ST_F16)
			cli_die("%s: tensor %s is %s, not a float matrix", in.path,
			    t->name, st_dtype_name(t->dtype));
		int rows = (int)t->shape[0], cols = (int)t->shape[1];
		int G = bits == 4 ? vq_int4_group(cols, group) : 0;
		if (bits == 4 && G == 0) {
			cli_warn("%s: %d inputs: no group size divides them; kept as %s",
			    t->name, cols, st_dtype_name(t->dtype));
			kept++;
			continue;
		}
		float *w = malloc(t->numel * sizeof *w);
		float *back = malloc(t->numel * sizeof *back);
		if (w == NULL || back == NULL)
			cli_die("out of memory for %s", t->name);
		st_tensor_f32(t, w);
		for (uint64_t k = 0; k < t->numel; k++)
			if (!isfinite(w[k]))
				cli_die("%s: tensor %s holds NaN or infinity at %llu; "
				    "not quantising a broken model", in.path, t->name,
				    (unsigned long long)k);

		size_t nscale = bits == 8 ? (size_t)rows : (size_t)rows * (cols / G);
		uint16_t *scale = malloc(nscale * sizeof *scale);
		void *q = malloc(bits == 8 ? t->numel : t->numel / 2);
		char *sname = malloc(strlen(t->name) + sizeof "_scale");
		if (scale == NULL || q == NULL || sname == NULL)
			cli_die("out of memory for %s", t->name);
		sprintf(sname, "%s_scale", t->name);
		if (bits == 8) {
			vq_int8(w, rows, cols, q, scale);
			vq_int8_dequant(q, scale, rows, cols, back);
			o->w.dtype = ST_I8;
		} else {
			vq_int4(w, rows, cols, G, q, scale);
			vq_int4_dequant(q, scale, rows, cols, G, back);
			o->w.dtype = ST_U8;
			o->w.shape[1] = cols / 2;
		}
		o->w.data = q;
		o->own = q;
		struct out_tensor *s = &out[nout++];
		s->w.name = sname;
		s->own_name = sname;
		s->w.dtype = ST_BF16;
		s->w.ndim = bits == 8 ? 1 : 2;
		s->w.shape[0] = rows;
		s->w.shape[1] = bits == 8 ? 0 : cols / G;
		s->w.data = scale;
		s->own = scale;

		double e = vq_rel_rms(w, back, t->numel);
		sum_err += e;
		if (e > max_err) {
			max_err = e;
			worst = t->name;
		}
		nmat++;
		if (verbose) {
			char scheme[16];
			if (bits == 8)
				snprintf(scheme, sizeof scheme, "int8");
			else
				snprintf(scheme, sizeof scheme, "int4-g%d", G);
			fprintf(rep, "%-48s %-10s %12.6f\n", t->name, scheme, e);
		}
		free(w);
		free(back);
	}
	for (size_t i = 0; i < nout; i++) {
		uint64_t n = st_dtype_size(out[i].w.dtype);
		for (int d = 0; d < out[i].w.ndim; d++)
			n *= (uint64_t)out[i].w.shape[d];
		bytes_out += n;
	}

	/* The source's metadata, and the scheme. */
	struct st_kv *meta = calloc(in.n_meta + 2, sizeof *meta);
	size_t nmeta = 0;
	char gbuf[16];
	if (meta == NULL)
		cli_die("out of memory");
	for (size_t i = 0; i < in.n_meta; i++)
		meta[nmeta++] = in.meta[i];
	meta[nmeta].key = "vesper.quant";
	meta[nmeta++].value = bits == 8 ? "int8" : "int4";
	if (bits == 4) {
		snprintf(gbuf, sizeof gbuf, "%d", group);
		meta[nmeta].key = "vesper.quant.group";
		meta[nmeta++].value = gbuf;
	}
	struct st_wtensor *wt = calloc(nout, sizeof *wt);
	if (wt == NULL)
		cli_die("out of memory");
	for (size_t i = 0; i < nout; i++)
		wt[i] = out[i].w;

	char *path;
	if ((err = st_checkpoint_output(argv[1], &path)) != V_OK)
		cli_fatal(err);
	if ((err = st_write(path, wt, nout, meta, nmeta)) != V_OK)
		cli_fatal(err);
	{
		char scheme[32];
		if (bits == 8)
			snprintf(scheme, sizeof scheme, "int8 per row");
		else
			snprintf(scheme, sizeof scheme, "int4 groups of %d", group);
		fprintf(rep, "%s: %s, %d matrices%s, %.1f MB -> %.1f MB; "
		    "relative RMS error mean %.5f, max %.5f (%s)\n",
		    path, scheme, nmat, kept ? " (some kept)" : "",
		    bytes_in / 1e6, bytes_out / 1e6,
		    nmat ? sum_err / nmat : 0.0, max_err, worst);
	}
	if (shards != NULL) {
		uint64_t n0, n1;
		double p0 = perplexity(argv[0], shards, budget, &n0);
		double p1 = perplexity(path, shards, budget, &n1);
		fprintf(rep, "validation perplexity over %llu tokens: %.4f -> %.4f (%+.2f%%)\n",
		    (unsigned long long)n0, p0, p1, 100 * (p1 / p0 - 1));
	}
	for (size_t i = 0; i < nout; i++) {
		free(out[i].own);
		free(out[i].own_name);
	}
	free(out);
	free(wt);
	free(meta);
	free(path);
	st_close(&in);
	return cli_exit_status(0);
}
