/* gen_bench.c: CPU decode speed of lib/infer for the presets, in fp32,
 * bf16, INT8 and INT4, at batch 1 and batched.
 *
 *   gen_bench [-n tokens] [-b batch] [-t seconds] [-V vocab] preset...
 *
 * -V is the tokenizer's vocabulary (32000 unless given; the demo pipeline's
 * tiny model has 2048, and with 32000 its output head is most of it).
 * Weights are random (speed does not depend on them); INT8/INT4 matrices
 * come from lib/quant's vquant code, so the layouts are the real ones.
 * Decode is bound by the weight bytes read per step, so the table also
 * shows the bandwidth that implies (weights / time per step); compare it
 * with the machine's memory bandwidth.  Timings on a shared machine are
 * noisy: each figure is the best of a few runs. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/bf16.h"
#include "../lib/infer.h"
#include "../lib/quant.h"
#include "../lib/verr.h"
#include "../lib/vio.h"

static uint64_t rng = 0x9e3779b97f4a7c15ULL;

static float
urand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (float)((double)(rng >> 11) / 9007199254740992.0 * 2 - 1);
}

/* Replace every block matrix and the untied head by its quantised form,
 * as vquant would write it. */
static int
quantise(struct infer_model *m, const float *params, int bits, void ***keep,
    int *nkeep)
{
	const struct vlm_config *c = &m->c;
	int nt = vlm_layout(c, NULL);
	struct vlm_tensor *t = malloc((size_t)nt * sizeof *t);
	vlm_layout(c, t);
	*keep = calloc((size_t)nt * 3, sizeof **keep);
	*nkeep = 0;
	for (int i = 1; i < nt; i++) {
		if (!t[i].is_matrix)
			continue;
		struct infer_mat *d = NULL;
		if (t[i].layer < 0) {
			d = &m->head;
		} else {
			struct infer_layer *y = &m->layer[t[i].layer];
			static const char *const nm[] = { "q_proj", "k_proj",
			    "v_proj", "o_proj", "gate_proj", "up_proj",
			    "down_proj" };
			struct infer_mat *all[] = { &y->wq, &y->wk, &y->wv, &y->wo,
			    &y->gate, &y->up, &y->down };
			for (int j = 0; j < 7; j++)
				if (strstr(t[i].name, nm[j]) != NULL)
					d = all[j];
		}
		int R = t[i].rows, K = t[i].cols;
		const float *w = params + t[i].offset;
		int group = bits == 8 ? K : vq_int4_group(K, 64);
		int ng = K / group;
		uint16_t *s16 = malloc((size_t)R * ng * sizeof *s16);
		float *sc = malloc((size_t)R * ng * sizeof *sc);
		void *q = malloc(bits == 8 ? (size_t)R * K : (size_t)R * K / 2);
		if (bits == 8)
			vq_int8(w, R, K, q, s16);
		else
			vq_int4(w, R, K, group, q, s16);
		for (size_t j = 0; j < (size_t)R * ng; j++)
			sc[j] = v_bf16_to_f32(s16[j]);
		free(s16);
		if (d == NULL)
			continue;
		int rows = d->rows;
		*d = (struct infer_mat){ bits == 8 ? INFER_Q8 : INFER_Q4, rows, K,
		    group, q, sc };
		(*keep)[(*nkeep)++] = q;
		(*keep)[(*nkeep)++] = sc;
	}
	free(t);
	snprintf(m->dtype_name, sizeof m->dtype_name, bits == 8 ?
	    "int8, bf16 emb" : "int4-g64, bf16 emb");
	return V_OK;
}

struct result {
	double prefill_tps, decode_tps, batch_tps;
};

static int
measure(const struct infer_model *m, int ntok, int batch, double min_s,
    struct result *r)
{
	int Vu = m->c.vocab_used, P = 32;
	int cap = P + ntok + 1 > m->c.ctx ? m->c.ctx : P + ntok + 1;
	if (cap <= P + 1)
		return v_error(V_ERR_RANGE, "context too short");
	struct infer_state *st = calloc((size_t)batch, sizeof *st);
	struct infer_work w;
	float *logits = malloc((size_t)batch * Vu * sizeof *logits);
	struct infer_slot sl[64];
	int err = infer_work_init(&w, m, batch > P ? batch : P);
	for (int b = 0; b < batch && err == V_OK; b++)
		err = infer_state_init(&st[b], m, cap);
	if (err)
		return err;
	memset(r, 0, sizeof *r);
	double spent = 0;
	/* Best of runs until min_s seconds have passed (at least 2). */
	for (int rep = 0; ; rep++) {
		double t0 = v_now();
		for (int i = 0; i < P; i++)
			sl[i] = (struct infer_slot){ &st[0], (i * 31) % Vu, i,
			    i == P - 1 ? logits : NULL };
		infer_step(m, &w, sl, P);
		double t1 = v_now();
		int n = 0;
		for (int pos = P; pos < cap; pos++, n++) {
			struct infer_slot one = { &st[0], (pos * 7) % Vu, pos,
			    logits };
			infer_step(m, &w, &one, 1);
		}
		double t2 = v_now();
		/* batch sequences at the same depth, one step for all. */
		int nb = 0;
		for (int pos = 0; pos < cap && pos < 1 + ntok; pos++, nb++) {
			for (int b = 0; b < batch; b++)
				sl[b] = (struct infer_slot){ &st[b],
				    (pos * 13 + b) % Vu, pos, logits + (size_t)b * Vu };
			infer_step(m, &w, sl, batch);
		}
		double t3 = v_now();
		double pf = P / (t1 - t0), dc = n / (t2 - t1);
		double bt = (double)nb * batch / (t3 - t2);
		if (pf > r->prefill_tps)
			r->prefill_tps = pf;
		if (dc > r->decode_tps)
			r->decode_tps = dc;
		if (bt > r->batch_tps)
			r->batch_tps = bt;
		spent += t3 - t0;
		if (rep >= 1 && spent >= min_s)
			break;
	}
	for (int b = 0; b < batch; b++)
		infer_state_free(&st[b]);
	free(st);
	infer_work_free(&w);
	free(logits);
	return V_OK;
}

int
main(int argc, char **argv)
{
	int ntok = 128, batch = 16, vocab = 32000, c;
	double min_s = 2;
	while ((c = getopt(argc, argv, "n:b:t:V:")) != -1) {
		switch (c) {
		case 'n':
			ntok = atoi(optarg);
			break;
		case 'b':
			batch = atoi(optarg);
			break;
		case 't':
			min_s = atof(optarg);
			break;
		case 'V':
			vocab = atoi(optarg);
			break;
		default:
			fprintf(stderr, "usage: gen_bench [-n tokens] [-b batch] "
			    "[-t seconds] [-V vocab] preset...\n");
			return 2;
		}
	}
	if (batch < 1 || batch > 64 || ntok < 1 || vocab < 326) {
		fprintf(stderr, "gen_bench: -b in 1..64, -n >= 1, -V >= 326\n");
		return 2;
	}
	printf("| preset (vocab %d) | weights | MB read/token | prefill tok/s | "
	    "decode tok/s (batch 1) | GB/s implied | batch %d tok/s |\n", vocab,
	    batch);
	printf("|---|---|---|---|---|---|---|\n");
	for (int a = optind; a < argc; a++) {
		struct vlm_config cf;
		int err = vlm_preset(argv[a], vocab, &cf);
		if (err) {
			fprintf(stderr, "gen_bench: %s\n", v_errmsg(err));
			return 1;
		}
		int nt = vlm_layout(&cf, NULL);
		struct vlm_tensor *t = malloc((size_t)nt * sizeof *t);
		vlm_layout(&cf, t);
		size_t total = t[nt - 1].offset + (size_t)t[nt - 1].rows *
		    t[nt - 1].cols;
		free(t);
		float *p = malloc(total * sizeof *p);
		if (p == NULL) {
			fprintf(stderr, "gen_bench: out of memory\n");
			return 1;
		}
		for (size_t i = 0; i < total; i++)
			p[i] = 0.05f * urand() + (i % 7 == 0 ? 0.5f : 0);
		for (int kind = 0; kind < 4; kind++) {
			struct infer_model m;
			void **keep = NULL;
			int nkeep = 0;
			/* The quantised models start from bf16, as after
			 * `vckpt convert -d bf16`: a tied head then reads a
			 * bf16 embedding (vquant leaves the embedding as is). */
			err = infer_model_from_flat(&m, &cf, p, kind >= 1 ?
			    INFER_BF16 : INFER_F32);
			if (err == V_OK && kind >= 2)
				err = quantise(&m, p, kind == 2 ? 8 : 4, &keep, &nkeep);
			struct result r;
			if (err == V_OK)
				err = measure(&m, ntok, batch, min_s, &r);
			if (err) {
				fprintf(stderr, "gen_bench: %s\n", v_errmsg(err));
				return 1;
			}
			double mb = (double)infer_model_bytes(&m) / 1e6;
			printf("| %s | %s | %.1f | %.0f | %.1f | %.1f | %.0f |\n",
			    argv[a], m.dtype_name, mb, r.prefill_tps, r.decode_tps,
			    mb * r.decode_tps / 1e3, r.batch_tps);
			fflush(stdout);
			infer_model_free(&m);
			for (int i = 0; i < nkeep; i++)
				free(keep[i]);
			free(keep);
		}
		free(p);
	}
	return 0;
}
