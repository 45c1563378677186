/* gpu_bench.c: time the CUDA trainer on a preset, from the same initial
 * weights and tokens as the PyTorch peer (bench/torch_peer.py), and time
 * the Velvet step alone.  Prints the loss of every timed step (they must
 * match the peer's, which trains on the same batch) and one summary line
 * of key=value pairs that bench/gpu_bench.sh puts in a table.
 *
 *   gpu_bench -p medium -b 64 -t 1024 -n 20 -w init.safetensors -k tok.bin
 *   gpu_bench -p medium -b 1 -t 64 -V 200      (the Velvet step alone)
 *
 * MFU counts 3 x vlm_flops_per_token (forward and backward, attention at
 * the full context, as PaLM's appendix B counts it) against 989 TFLOP/s,
 * the H100/H200 SXM datasheet's dense bf16 rate. */
#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/backend.h"
#include "../lib/safetensors.h"
#include "../lib/trainer.h"
#include "../lib/verr.h"
#include "../lib/vio.h"
#include "../lib/vlm_config.h"

#define PEAK_FLOPS 989e12

static const struct v_cuda_api *api;

static void
die(const char *what, int err)
{
	fprintf(stderr, "gpu_bench: %s: %s\n", what,
	    err == V_ERR_DEVICE || api == NULL ? (api ? api->last_error() :
	    v_errmsg(err)) : v_errmsg(err));
	exit(1);
}

#define DO(call) do { \
	int e_ = (call); \
	if (e_ != 0) { \
		fprintf(stderr, "gpu_bench: %s: %s\n", #call, api->last_error()); \
		exit(1); \
	} \
} while (0)

static uint64_t rng = 88172645463325252ull;

static double
urand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (double)(rng >> 11) / 9007199254740992.0;
}

static void
load_weights(const char *path, const struct vlm_config *c, float *p)
{
	struct st_file f;
	int err = st_open(&f, path);
	if (err)
		die(path, err);
	int nt = vlm_layout(c, NULL);
	struct vlm_tensor *t = calloc((size_t)nt, sizeof *t);
	vlm_layout(c, t);
	for (int i = 0; i < nt; i++) {
		const struct st_tensor *x = st_find(&f, t[i].name);
		if (x == NULL || x->numel != (uint64_t)t[i].rows * t[i].cols) {
			fprintf(stderr, "gpu_bench: %s: no tensor %s of %d x %d\n",
			    path, t[i].name, t[i].rows, t[i].cols);
			exit(1);
		}
		if ((err = st_tensor_f32(x, p + t[i].offset)) != 0)
			die(t[i].name, err);
	}
	free(t);
	st_close(&f);
}

int
main(int argc, char **argv)
{
	const char *preset = "medium", *wpath = NULL, *kpath = NULL;
	int B = 64, T = 1024, steps = 20, velvet = 0, opt;
	float lr = 3e-4f;

	while ((opt = getopt(argc, argv, "p:b:t:n:w:k:V:l:")) != -1) {
		switch (opt) {
		case 'p': preset = optarg; break;
		case 'b': B = atoi(optarg); break;
		case 't': T = atoi(optarg); break;
		case 'n': steps = atoi(optarg); break;
		case 'w': wpath = optarg; break;
		case 'k': kpath = optarg; break;
		case 'V': velvet = atoi(optarg); break;
		case 'l': lr = (float)atof(optarg); break;
		default:
			fprintf(stderr, "usage: gpu_bench [-p preset] [-b B] [-t T] "
			    "[-n steps] [-w init.safetensors] [-k tokens.bin] "
			    "[-V velvet_steps] [-l lr]\n");
			return 2;
		}
	}
	struct vlm_config c;
	int err = vlm_preset(preset, 0, &c);
	if (err)
		die(preset, err);
	struct v_backend be;
	if ((err = v_backend_open(V_DEVICE_CUDA, &be)) != 0)
		die("cuda", err);
	api = be.cuda;
	const struct vlm_trainer_ops *tr = api->trainer;

	int nt = vlm_layout(&c, NULL);
	struct vlm_tensor *tens = calloc((size_t)nt, sizeof *tens);
	vlm_layout(&c, tens);
	size_t P = tens[nt - 1].offset + (size_t)tens[nt - 1].rows *
	    tens[nt - 1].cols;
	float *p = malloc(P * sizeof *p);
	if (wpath)
		load_weights(wpath, &c, p);
	else
		for (int i = 0; i < nt; i++)
			for (size_t j = 0; j < (size_t)tens[i].rows * tens[i].cols; j++)
				p[tens[i].offset + j] = tens[i].is_matrix ?
				    (float)(0.04 * (urand() - 0.5) * 1.732) : 1.0f;
	size_t ntok = (size_t)B * (T + 1);
	int32_t *tok = malloc(ntok * sizeof *tok);
	if (kpath) {
		FILE *fp = fopen(kpath, "rb");
		if (fp == NULL || fread(tok, sizeof *tok, ntok, fp) != ntok) {
			fprintf(stderr, "gpu_bench: %s: need %zu int32 tokens\n",
			    kpath, ntok);
			return 1;
		}
		fclose(fp);
	} else {
		for (size_t i = 0; i < ntok; i++)
			tok[i] = (int32_t)(urand() * c.vocab_used);
	}

	void *st;
	double t0 = v_now();
	DO(tr->create(&c, B, T, &st));
	DO(tr->set_params(st, p));
	fprintf(stderr, "gpu_bench: %s on %s, %llu parameters, batch %dx%d, "
	    "set up in %.2f s\n", preset, be.name,
	    (unsigned long long)vlm_param_count(&c), B, T, v_now() - t0);

	struct velvet_hparams h;
	velvet_defaults(&h);
	float loss, norm;
	if (velvet > 0) {
		/* The optimizer alone: gradients from one pass, then steps. */
		DO(tr->zero_grad(st));
		DO(tr->forward_backward(st, tok, 1.0f, &loss, NULL));
		for (int i = 1; i <= 5; i++)
			DO(tr->step(st, &h, lr, i, 1.0f));
		double a = v_now();
		for (int i = 0; i < velvet; i++)
			DO(tr->step(st, &h, lr, 6 + i, 1.0f));
		double ms = (v_now() - a) * 1e3 / velvet;
		printf("velvet params=%zu ms=%.4f GBps28=%.1f\n", P, ms,
		    28.0 * P / (ms * 1e-3) / 1e9);
		return 0;
	}
	/* Trains on the one batch, as the peer does: the losses must agree
	 * step by step. */
	double total = 0;
	int warm = 3;
	for (int s = 1; s <= steps + warm; s++) {
		double a = v_now();
		DO(tr->zero_grad(st));
		DO(tr->forward_backward(st, tok, 1.0f, &loss, NULL));
		DO(tr->grad_norm(st, &norm));
		float mul = norm > 1.0f ? 1.0f / (norm + 1e-6f) : 1.0f;
		DO(tr->step(st, &h, lr, s, mul));
		double dt = v_now() - a;
		if (s > warm)
			total += dt;
		printf("step %3d loss %.5f norm %.4f ms %.2f\n", s, loss, norm,
		    dt * 1e3);
		fflush(stdout);
	}
	double ms = total * 1e3 / steps;
	double tps = (double)B * T / (ms * 1e-3);
	double mfu = 3 * vlm_flops_per_token(&c, T) * tps / PEAK_FLOPS;
	printf("vesper preset=%s batch=%dx%d ms=%.2f tokens_per_s=%.0f mfu=%.3f\n",
	    preset, B, T, ms, tps, mfu);
	tr->destroy(st);
	free(p);
	free(tok);
	free(tens);
	return 0;
}
