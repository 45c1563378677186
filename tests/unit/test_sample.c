/* test_sample.c: the generator, each sampling step, and the confidence
 * figures, checked against distributions computed here. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/sample.h"
#include "../../lib/verr.h"
#include "tap.h"

static void
test_rng(void)
{
	struct v_rng a, b, c;
	v_rng_seed(&a, 42);
	v_rng_seed(&b, 42);
	v_rng_seed(&c, 43);
	int same = 1, differ = 0;
	for (int i = 0; i < 1000; i++) {
		uint64_t x = v_rng_next(&a), y = v_rng_next(&b);
		same &= x == y;
		differ += x != v_rng_next(&c);
	}
	ok(same, "same seed, same sequence");
	ok(differ > 990, "seeds 42 and 43 give different sequences");
	/* Seed 0 must not be the stuck all-zero state. */
	v_rng_seed(&a, 0);
	ok(v_rng_next(&a) != 0 || v_rng_next(&a) != 0,
	    "seed 0 gives a working generator");
	double sum = 0, lo = 1, hi = 0;
	int N = 100000;
	for (int i = 0; i < N; i++) {
		float u = v_rng_float(&a);
		sum += u;
		lo = fmin(lo, u);
		hi = fmax(hi, u);
	}
	ok(lo >= 0 && hi < 1 && fabs(sum / N - 0.5) < 0.005,
	    "floats in [0, 1) with mean 1/2 (%.4f, range %.4g..%.4g)",
	    sum / N, lo, hi);
}

/* Draw N tokens from logits with p, counting each. */
static void
draw(const struct sample_params *p, const float *logits, int n, int N,
    int *count, uint64_t seed)
{
	struct sampler s;
	sampler_init(&s, p, n, seed);
	memset(count, 0, (size_t)n * sizeof *count);
	for (int i = 0; i < N; i++)
		count[sampler_pick(&s, logits, NULL, 0)]++;
	sampler_free(&s);
}

/* Counts against the expected probabilities: the largest deviation in
 * standard errors. */
static double
worst_z(const int *count, const double *want, int n, int N)
{
	double z = 0;
	for (int i = 0; i < n; i++) {
		double e = want[i] * N, sd = sqrt(N * want[i] * (1 - want[i]));
		if (want[i] == 0) {
			if (count[i] != 0)
				return INFINITY;
			continue;
		}
		z = fmax(z, fabs(count[i] - e) / sd);
	}
	return z;
}

static void
plain(struct sample_params *p)
{
	p->temperature = 1;
	p->top_k = 0;
	p->top_p = 1;
	p->repeat_penalty = 1;
	p->repeat_window = 64;
}

static void
test_distributions(void)
{
	/* probabilities 0.5, 0.25, 0.125, 0.0625, 0.0625 */
	float lg[5] = { logf(8), logf(4), logf(2), 0, 0 };
	double base[5] = { 0.5, 0.25, 0.125, 0.0625, 0.0625 };
	int cnt[5], N = 40000;
	struct sample_params p;
	double want[5];

	plain(&p);
	draw(&p, lg, 5, N, cnt, 1);
	double z = worst_z(cnt, base, 5, N);
	ok(z < 5, "temperature 1: frequencies follow the softmax "
	    "(worst %.2f standard errors)", z);

	p.temperature = 2;	/* p ~ sqrt(base) */
	double s = 0;
	for (int i = 0; i < 5; i++)
		s += want[i] = sqrt(base[i]);
	for (int i = 0; i < 5; i++)
		want[i] /= s;
	draw(&p, lg, 5, N, cnt, 2);
	z = worst_z(cnt, want, 5, N);
	ok(z < 5, "temperature 2 flattens as softmax(l/2) (%.2f)", z);

	plain(&p);
	p.top_k = 2;
	want[0] = 2.0 / 3;
	want[1] = 1.0 / 3;
	want[2] = want[3] = want[4] = 0;
	draw(&p, lg, 5, N, cnt, 3);
	z = worst_z(cnt, want, 5, N);
	ok(z < 5, "top-k 2 keeps the two best, renormalised (%.2f)", z);

	plain(&p);
	p.top_p = 0.8f;	/* 0.5 + 0.25 < 0.8 <= 0.875: three kept */
	want[0] = 0.5 / 0.875;
	want[1] = 0.25 / 0.875;
	want[2] = 0.125 / 0.875;
	want[3] = want[4] = 0;
	draw(&p, lg, 5, N, cnt, 4);
	z = worst_z(cnt, want, 5, N);
	ok(z < 5, "top-p 0.8 keeps the smallest set reaching 0.8 (%.2f)", z);

	p.top_p = 0.5f;		/* the first token alone reaches it */
	draw(&p, lg, 5, 1000, cnt, 5);
	is_int(cnt[0], 1000, "top-p 0.5 with a 0.5 token: only that token");

	plain(&p);
	p.top_k = 4;
	p.top_p = 0.7f;	/* top-k first: 0.5, 0.25 of the four kept (0.9375) */
	want[0] = 2.0 / 3;
	want[1] = 1.0 / 3;
	want[2] = want[3] = want[4] = 0;
	draw(&p, lg, 5, N, cnt, 6);
	z = worst_z(cnt, want, 5, N);
	ok(z < 5, "top-k then top-p, renormalised between (%.2f)", z);

	p.temperature = 0;
	draw(&p, lg, 5, 100, cnt, 7);
	is_int(cnt[0], 100, "temperature 0 is greedy");
}

/* A large vocabulary exercises the nucleus pre-filter and the heap. */
static void
test_large(void)
{
	int n = 32000, N = 3000;
	float *lg = malloc((size_t)n * sizeof *lg);
	int *cnt = malloc((size_t)n * sizeof *cnt);
	double *want = calloc((size_t)n, sizeof *want);
	struct sample_params p;
	for (int i = 0; i < n; i++)
		lg[i] = -0.001f * (float)((i * 7919) % n);	/* a permutation */
	/* The best tokens are i with (i * 7919) % n small. */
	plain(&p);
	p.top_k = 3;
	int best[3];
	for (int r = 0; r < 3; r++)
		for (int i = 0; i < n; i++)
			if ((i * 7919) % n == r)
				best[r] = i;
	double z = 0;
	for (int r = 0; r < 3; r++)
		z += exp(-0.001 * r);
	for (int r = 0; r < 3; r++)
		want[best[r]] = exp(-0.001 * r) / z;
	draw(&p, lg, n, N, cnt, 9);
	double w = worst_z(cnt, want, n, N);
	ok(w < 5, "top-k 3 of 32000 (%.2f)", w);

	/* Nucleus on a long flat tail: lg = 0 for 10 tokens, -20 for the
	 * rest; top_p 0.85 keeps 9 of the 10 (8 weigh 0.8, 9 about 0.9; ties
	 * broken by id). */
	for (int i = 0; i < n; i++)
		lg[i] = i % 3200 == 0 ? 0 : -20;
	plain(&p);
	p.top_p = 0.85f;
	draw(&p, lg, n, N, cnt, 10);
	int outside = 0, kept = 0;
	for (int i = 0; i < n; i++) {
		if (i % 3200 != 0)
			outside += cnt[i];
		else
			kept += cnt[i] > 0;
	}
	ok(outside == 0 && kept == 9, "top-p 0.85 over 10 equal tokens and a "
	    "long tail keeps 9 of the 10 (kept %d, tail draws %d)", kept,
	    outside);
	free(lg);
	free(cnt);
	free(want);
}

static void
test_penalty(void)
{
	struct sample_params p;
	struct sampler s;
	float lg[4] = { 2.0f, 1.9f, -1.0f, -1.05f };
	int recent[3] = { 0, 0, 2 };

	plain(&p);
	p.temperature = 0;
	p.repeat_penalty = 1.1f;
	sampler_init(&s, &p, 4, 1);
	is_int(sampler_pick(&s, lg, recent, 1), 1, "a repeated token's "
	    "positive logit is divided (2/1.1 < 1.9)");
	is_int(sampler_pick(&s, lg, recent, 0), 0, "no history, no penalty");
	ok(lg[0] == 2.0f, "the caller's logits are left as they are");
	float neg[4] = { -1.0f, -1.05f, -5, -5 };
	is_int(sampler_pick(&s, neg, recent + 1, 1), 1, "a negative logit is "
	    "multiplied (-1.1 < -1.05)");
	/* Counted once however often it appears: 1.9 * 1.1^2 would lose. */
	float lg2[2] = { 2.0f, 1.7f };
	sampler_free(&s);
	sampler_init(&s, &p, 2, 1);
	is_int(sampler_pick(&s, lg2, recent, 2), 0, "a token repeated twice is "
	    "penalised once (2/1.1 > 1.7)");
	sampler_free(&s);
	p.repeat_window = 1;
	sampler_init(&s, &p, 4, 1);
	int hist[2] = { 0, 3 };
	is_int(sampler_pick(&s, lg, hist, 2), 0, "tokens outside the window "
	    "are not penalised");
	sampler_free(&s);
}

static void
test_seed(void)
{
	int n = 1000;
	float *lg = malloc((size_t)n * sizeof *lg);
	for (int i = 0; i < n; i++)
		lg[i] = sinf((float)i) * 3;
	struct sample_params p;
	sample_defaults(&p);
	struct sampler a, b, c;
	sampler_init(&a, &p, n, 1234);
	sampler_init(&b, &p, n, 1234);
	sampler_init(&c, &p, n, 1235);
	int same = 1, differ = 0, hist[200];
	for (int i = 0; i < 200; i++) {
		int x = sampler_pick(&a, lg, hist, i);
		same &= x == sampler_pick(&b, lg, hist, i);
		differ += x != sampler_pick(&c, lg, hist, i);
		hist[i] = x;
	}
	ok(same, "the default sampler: same seed, same 200 tokens");
	ok(differ > 0, "another seed, other tokens (%d of 200 differ)", differ);
	sampler_free(&a);
	sampler_free(&b);
	sampler_free(&c);
	free(lg);

	struct sampler bad;
	p.top_p = 0;
	ok(sampler_init(&bad, &p, 10, 1) == V_ERR_ARG, "top-p 0 is refused");
	sample_defaults(&p);
	p.temperature = NAN;
	ok(sampler_init(&bad, &p, 10, 1) == V_ERR_ARG, "a NaN temperature is "
	    "refused");
}

static void
test_confidence(void)
{
	float u[8] = { 0 }, pr, h;
	sample_confidence(u, 8, 3, &pr, &h);
	ok(fabsf(pr - 0.125f) < 1e-6f && fabsf(h - 3) < 1e-5f,
	    "uniform over 8: p = 1/8, entropy 3 bits (%g, %g)", pr, h);
	float one[4] = { 100, 0, 0, 0 };
	sample_confidence(one, 4, 0, &pr, &h);
	ok(pr > 0.9999f && h < 1e-3f, "a sure choice: p ~ 1, entropy ~ 0");
	float two[3] = { 0, 0, -1000 };
	sample_confidence(two, 3, 2, &pr, &h);
	ok(pr < 1e-30f && fabsf(h - 1) < 1e-5f, "two equal tokens and a "
	    "hopeless one: 1 bit; p of the hopeless one ~ 0");
}

int
main(void)
{
	test_rng();
	test_distributions();
	test_large();
	test_penalty();
	test_seed();
	test_confidence();
	return done_testing();
}
