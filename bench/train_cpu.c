/* train_cpu.c: training speed of the CPU backend (lib/model_cpu*), and the
 * share of OpenBLAS's sgemm rate that its matrix products reach.
 *
 *   train_cpu [preset[:vocab]] ...     (default: tiny:4000 small:32000)
 *
 * For each preset: a few whole steps (forward/backward over B x T tokens,
 * gradient norm, Velvet step) on random tokens, timed after one warm-up
 * step; the seconds and FLOPs inside the matrix products; then sgemm alone
 * on the MLP's shape, (B*T, C) x (C, F), as the rate to compare with.
 * Prints one Markdown table row per preset. */
#include <cblas.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/model_cpu.h"
#include "../lib/train.h"
#include "../lib/trainer.h"
#include "../lib/velvet.h"
#include "../lib/verr.h"
#include "../lib/vio.h"

static double
sgemm_rate(int M, int N, int K)
{
	float *a = calloc((size_t)M * K, 4), *b = calloc((size_t)N * K, 4);
	float *c = calloc((size_t)M * N, 4);
	int reps = 0;
	double t0, dt;

	for (size_t i = 0; i < (size_t)M * K; i++)
		a[i] = (float)(i % 7) * 0.1f;
	for (size_t i = 0; i < (size_t)N * K; i++)
		b[i] = (float)(i % 5) * 0.1f;
	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, a, K, b,
	    K, 0, c, N);
	t0 = v_now();
	do {
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, a, K,
		    b, K, 0, c, N);
		reps++;
		dt = v_now() - t0;
	} while (dt < 1.0);
	free(a);
	free(b);
	free(c);
	return 2.0 * M * N * K * reps / dt;
}

static int
bench(const char *spec)
{
	char name[32];
	int vocab = 32000, B = 4, T = 256, steps = 4;
	const char *colon = strchr(spec, ':');
	struct vlm_config c;
	struct velvet_hparams h;
	struct v_rng rng;
	void *st;
	int err;

	snprintf(name, sizeof name, "%.*s", colon ? (int)(colon - spec) : 31, spec);
	if (colon)
		vocab = atoi(colon + 1);
	if ((err = vlm_preset(name, vocab, &c)) != V_OK) {
		fprintf(stderr, "train_cpu: %s\n", v_errmsg(err));
		return 1;
	}
	if (strcmp(name, "tiny") != 0)
		steps = 2;
	size_t P = vlm_param_count(&c);
	float *p = malloc(P * 4);
	int32_t *tok = malloc(sizeof *tok * (size_t)B * (T + 1));
	v_rng_seed(&rng, 1);
	train_init_params(&c, &rng, p);
	for (int i = 0; i < B * (T + 1); i++)
		tok[i] = (int32_t)(v_rng_next(&rng) % (uint64_t)c.vocab_used);
	if ((err = vlm_cpu_trainer.create(&c, B, T, &st)) != V_OK) {
		fprintf(stderr, "train_cpu: %s\n", v_errmsg(err));
		return 1;
	}
	vlm_cpu_trainer.set_params(st, p);
	velvet_defaults(&h);
	clock_t c0 = 0;
	double t0 = 0, mm_s0 = 0, mm_f0 = 0, mm_s, mm_f;
	float loss, norm;
	for (int s = 0; s <= steps; s++) {
		if (s == 1) {
			t0 = v_now();
			c0 = clock();
			vlm_matmul_stats(&mm_s0, &mm_f0);
		}
		vlm_cpu_trainer.zero_grad(st);
		vlm_cpu_trainer.forward_backward(st, tok, 1, &loss, NULL);
		vlm_cpu_trainer.grad_norm(st, &norm);
		vlm_cpu_trainer.step(st, &h, 1e-3f, s + 1, velvet_clip_factor(norm, 1));
	}
	double dt = v_now() - t0;
	/* CPU seconds of the whole process: on a shared machine the wall
	 * clock measures the neighbours too. */
	double cpu = (double)(clock() - c0) / CLOCKS_PER_SEC;
	vlm_matmul_stats(&mm_s, &mm_f);
	mm_s -= mm_s0;
	mm_f -= mm_f0;
	double tps = (double)B * T * steps / dt;
	double mm_rate = mm_f / mm_s;
	double peak = sgemm_rate(B * T, c.hidden, c.dim);
	printf("| %s | %.1f M | %d | %d x %d | %.0f | %.0f | %.1f | %.0f%% | %.1f | %.0f%% |\n",
	    name, P / 1e6, c.vocab_used, B, T, tps, (double)B * T * steps / cpu,
	    mm_rate / 1e9,
	    100 * mm_s / dt, peak / 1e9, 100 * mm_rate / peak);
	fflush(stdout);
	vlm_cpu_trainer.destroy(st);
	free(p);
	free(tok);
	return 0;
}

int
main(int argc, char **argv)
{
	static const char *def[] = { "tiny:4000", "small:32000" };
	int n = argc > 1 ? argc - 1 : 2, rc = 0;

	printf("| preset | params | vocab | B x T | tokens/s | tokens per CPU s | "
	    "matmul GFLOP/s | time in matmul | sgemm GFLOP/s (B*T x C x F) | "
	    "share |\n");
	printf("|---|---|---|---|---|---|---|---|---|---|\n");
	for (int i = 0; i < n; i++)
		rc |= bench(argc > 1 ? argv[i + 1] : def[i]);
	return rc;
}
