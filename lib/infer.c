/* infer.c: the matrix-vector kernels for each weight type, and the
 * forward step with its key/value cache. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "infer.h"
#include "verr.h"

/* ---- kernels: one row of W against one input vector ----
 *
 * Each kernel is compiled twice, for AVX2 with FMA (x86-64-v3) and for the
 * baseline, and the loader picks the one the CPU runs: the Makefile builds
 * for any x86-64, and these loops are where decode spends its time. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__SANITIZE_ADDRESS__)
#define KERNEL __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define KERNEL
#endif

KERNEL static float
dot_f32(const float *restrict w, const float *restrict x, int n)
{
	float s = 0;
#pragma omp simd reduction(+:s)
	for (int i = 0; i < n; i++)
		s += w[i] * x[i];
	return s;
}

/* Four inputs against one row: the row is loaded once for all four. */
KERNEL static void
dot4_f32(const float *restrict w, const float *restrict x, size_t ldx, int n,
    float *restrict out)
{
	const float *x0 = x, *x1 = x + ldx, *x2 = x + 2 * ldx, *x3 = x + 3 * ldx;
	float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+:s0, s1, s2, s3)
	for (int i = 0; i < n; i++) {
		float wi = w[i];
		s0 += wi * x0[i];
		s1 += wi * x1[i];
		s2 += wi * x2[i];
		s3 += wi * x3[i];
	}
	out[0] = s0;
	out[1] = s1;
	out[2] = s2;
	out[3] = s3;
}

KERNEL static float
dot_bf16(const uint16_t *restrict w, const float *restrict x, int n)
{
	float s = 0;
#pragma omp simd reduction(+:s)
	for (int i = 0; i < n; i++)
		s += v_bf16_to_f32(w[i]) * x[i];
	return s;
}

KERNEL static float
dot_q8(const int8_t *restrict w, const float *restrict x, int n)
{
	float s = 0;
#pragma omp simd reduction(+:s)
	for (int i = 0; i < n; i++)
		s += (float)w[i] * x[i];
	return s;
}

/* The input as INT4 rows want it: byte j of a row holds inputs 2j and
 * 2j+1, so the even and odd inputs apart (xe, xo) let both nibbles meet
 * their input at unit stride; gsum holds each group's sum of inputs, so
 * that sum (u - 8) x = sum u x - 8 sum x costs no subtraction per weight. */
struct q4_in {
	float *xe, *xo, *gsum;
};

static int
q4_in_make(struct q4_in *q, const float *x, int n, int group)
{
	q->xe = malloc((size_t)(n + n / group) * sizeof(float));
	if (q->xe == NULL)
		return V_ERR_NOMEM;
	q->xo = malloc((size_t)n / 2 * sizeof(float));
	if (q->xo == NULL) {
		free(q->xe);
		return V_ERR_NOMEM;
	}
	q->gsum = q->xe + n / 2;
	for (int j = 0; j < n / 2; j++) {
		q->xe[j] = x[2 * j];
		q->xo[j] = x[2 * j + 1];
	}
	for (int g = 0; g < n / group; g++) {
		float s = 0;
		for (int j = g * group; j < (g + 1) * group; j++)
			s += x[j];
		q->gsum[g] = s;
	}
	return V_OK;
}

static void
q4_in_free(struct q4_in *q)
{
	free(q->xe);
	free(q->xo);
}

/* One scale per group, so the sum of a group is scaled once rather than
 * each weight. */
KERNEL static float
dot_q4(const uint8_t *restrict w, const float *restrict scale, int group,
    const struct q4_in *in, int n)
{
	float s = 0;
	int h = group / 2;
	for (int g = 0; g < n / group; g++) {
		const uint8_t *wg = w + g * h;
		const float *e = in->xe + g * h, *o = in->xo + g * h;
		float a = 0;
#pragma omp simd reduction(+:a)
		for (int j = 0; j < h; j++)
			a += (float)(wg[j] & 15) * e[j] + (float)(wg[j] >> 4) * o[j];
		s += (a - 8 * in->gsum[g]) * scale[g];
	}
	return s;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_AVX2_KERNELS 1

/* AVX2 + FMA by hand for the integer types: the compiler's own vectors
 * spend more instructions widening int8 and nibbles than on the products.
 * Eight lanes, two accumulators to hide the FMA latency. */
__attribute__((target("avx2,fma"))) static inline float
hsum256(__m256 v)
{
	__m128 a = _mm_add_ps(_mm256_castps256_ps128(v),
	    _mm256_extractf128_ps(v, 1));
	a = _mm_add_ps(a, _mm_movehl_ps(a, a));
	a = _mm_add_ss(a, _mm_movehdup_ps(a));
	return _mm_cvtss_f32(a);
}

__attribute__((target("avx2,fma"))) static float
dot_q8_avx2(const int8_t *restrict w, const float *restrict x, int n)
{
	__m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
	int i = 0;
	for (; i + 16 <= n; i += 16) {
		__m128i b = _mm_loadu_si128((const __m128i *)(w + i));
		__m256 w0 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
		__m256 w1 = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
		    _mm_srli_si128(b, 8)));
		a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + i), a0);
		a1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + i + 8), a1);
	}
	float s = hsum256(_mm256_add_ps(a0, a1));
	for (; i < n; i++)
		s += (float)w[i] * x[i];
	return s;
}

__attribute__((target("avx2,fma"))) static float
dot_q4_avx2(const uint8_t *restrict w, const float *restrict scale,
    int group, const struct q4_in *in, int n)
{
	const __m256i lo4 = _mm256_set1_epi32(15);
	int h = group / 2;	/* bytes per group: 16, 32 or 64 */
	int ng = n / group;
	/* sum_g scale_g (sum u x - 8 gsum_g): the products summed in
	 * vectors scaled per group, the 8 gsum part as one short dot. */
	__m256 acc = _mm256_setzero_ps();
	float corr = 0;
	for (int g = 0; g < ng; g++) {
		const uint8_t *wg = w + g * h;
		const float *e = in->xe + g * h, *o = in->xo + g * h;
		__m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
		for (int j = 0; j < h; j += 8) {
			__m256i b = _mm256_cvtepu8_epi32(
			    _mm_loadl_epi64((const __m128i *)(wg + j)));
			__m256 lo = _mm256_cvtepi32_ps(_mm256_and_si256(b, lo4));
			__m256 hi = _mm256_cvtepi32_ps(_mm256_srli_epi32(b, 4));
			a0 = _mm256_fmadd_ps(lo, _mm256_loadu_ps(e + j), a0);
			a1 = _mm256_fmadd_ps(hi, _mm256_loadu_ps(o + j), a1);
		}
		acc = _mm256_fmadd_ps(_mm256_add_ps(a0, a1),
		    _mm256_set1_ps(scale[g]), acc);
		corr += scale[g] * in->gsum[g];
	}
	return hsum256(acc) - 8 * corr;
}

static int simd_off;

static int
have_avx2(void)
{
	static int known = -1;
	if (known < 0)
		known = __builtin_cpu_supports("avx2") &&
		    __builtin_cpu_supports("fma");
	return known && !simd_off;
}

int
infer_simd(int on)
{
	simd_off = !on;
	return have_avx2();
}
#else
int
infer_simd(int on)
{
	(void)on;
	return 0;
}
#endif

static float
dot_row(const struct infer_mat *m, int r, const float *x,
    const struct q4_in *q4)
{
	size_t rc = (size_t)r * (size_t)m->cols;
	switch (m->type) {
	case INFER_F32:
		return dot_f32((const float *)m->w + rc, x, m->cols);
	case INFER_BF16:
		return dot_bf16((const uint16_t *)m->w + rc, x, m->cols);
	case INFER_Q8:
#ifdef HAVE_AVX2_KERNELS
		if (have_avx2())
			return dot_q8_avx2((const int8_t *)m->w + rc, x, m->cols) *
			    m->scale[r];
#endif
		return dot_q8((const int8_t *)m->w + rc, x, m->cols) * m->scale[r];
	default: {
		const uint8_t *w = (const uint8_t *)m->w + rc / 2;
		const float *sc = m->scale + (size_t)r * (size_t)(m->cols / m->group);
#ifdef HAVE_AVX2_KERNELS
		if (have_avx2() && m->group % 16 == 0)
			return dot_q4_avx2(w, sc, m->group, q4, m->cols);
#endif
		return dot_q4(w, sc, m->group, q4, m->cols);
	}
	}
}

/* Rows expanded to fp32, for the batched products and the embedding. */
KERNEL static void
expand_bf16(const uint16_t *restrict w, float *restrict out, int n)
{
#pragma omp simd
	for (int i = 0; i < n; i++)
		out[i] = v_bf16_to_f32(w[i]);
}

KERNEL static void
expand_q8(const int8_t *restrict w, float s, float *restrict out, int n)
{
#pragma omp simd
	for (int i = 0; i < n; i++)
		out[i] = (float)w[i] * s;
}

KERNEL static void
expand_q4(const uint8_t *restrict w, const float *restrict sc, int group,
    float *restrict out, int n)
{
	for (int g = 0; g < n / group; g++) {
		const uint8_t *wg = w + g * (group / 2);
		float *o = out + g * group, s = sc[g];
#pragma omp simd
		for (int j = 0; j < group / 2; j++) {
			o[2 * j] = (float)((int)(wg[j] & 15) - 8) * s;
			o[2 * j + 1] = (float)((int)(wg[j] >> 4) - 8) * s;
		}
	}
}

void
infer_mat_row(const struct infer_mat *m, int r, float *out)
{
	size_t rc = (size_t)r * (size_t)m->cols;
	int n = m->cols;
	switch (m->type) {
	case INFER_F32:
		memcpy(out, (const float *)m->w + rc, (size_t)n * sizeof *out);
		break;
	case INFER_BF16:
		expand_bf16((const uint16_t *)m->w + rc, out, n);
		break;
	case INFER_Q8:
		expand_q8((const int8_t *)m->w + rc, m->scale[r], out, n);
		break;
	default:
		expand_q4((const uint8_t *)m->w + rc / 2, m->scale + (size_t)r *
		    (size_t)(n / m->group), m->group, out, n);
	}
}

size_t
infer_mat_bytes(const struct infer_mat *m)
{
	size_t e = (size_t)m->rows * (size_t)m->cols;
	switch (m->type) {
	case INFER_F32:
		return e * 4;
	case INFER_BF16:
		return e * 2;
	case INFER_Q8:
		return e + (size_t)m->rows * 4;
	default:
		return e / 2 + e / (size_t)m->group * 4;
	}
}

/* Threads pay for themselves only on enough work. */
#define PAR_MIN_WORK (1 << 16)
/* Rows expanded to fp32 at a time for a batched product: 128 rows of
 * 2048 inputs are 1 MB, which stays in a core's cache for BLAS. */
#define TILE_ROWS 128
/* Up to this many inputs, rows meet the inputs in our own loops; beyond,
 * BLAS's packing pays for itself. */
#define SMALL_BATCH 16

int
infer_matmul(const struct infer_mat *m, const float *x, float *y, int n)
{
	int R = m->rows, K = m->cols;
	long work = (long)R * K * n;

	if (n == 1) {
		struct q4_in q4 = { 0 };
		if (m->type == INFER_Q4 && q4_in_make(&q4, x, K, m->group) != V_OK)
			return v_error(V_ERR_NOMEM, "matrix product: out of memory");
#pragma omp parallel for schedule(static) if (work >= PAR_MIN_WORK)
		for (int r = 0; r < R; r++)
			y[r] = dot_row(m, r, x, &q4);
		q4_in_free(&q4);
		return V_OK;
	}
	if (n <= SMALL_BATCH) {
		/* A few inputs (a batched decode step): each row, expanded to
		 * fp32 once if it is not already, meets every input while it
		 * is in the cache.  BLAS would first copy the whole matrix into
		 * its own layout, which costs more than the products here. */
		int nth = work >= PAR_MIN_WORK ? omp_get_max_threads() : 1;
		float *rows = NULL;
		if (m->type != INFER_F32 && (rows = malloc((size_t)nth *
		    (size_t)K * sizeof *rows)) == NULL)
			return v_error(V_ERR_NOMEM, "matrix product: out of memory");
		/* Rows in blocks of RB, their outputs gathered in ob so that y
		 * is written a cache line at a time, not one float in each of
		 * n distant lines per row. */
		enum { RB = 16 };
		int nblk = (R + RB - 1) / RB;
#pragma omp parallel num_threads(nth)
		{
			float *row = rows ? rows + (size_t)omp_get_thread_num() *
			    (size_t)K : NULL;
			float o[4], ob[SMALL_BATCH][RB];
#pragma omp for schedule(static)
			for (int blk = 0; blk < nblk; blk++) {
				int r0 = blk * RB, nr = R - r0 < RB ? R - r0 : RB;
				for (int rr = 0; rr < nr; rr++) {
					const float *wr = (const float *)m->w +
					    (size_t)(r0 + rr) * K;
					if (row != NULL) {
						infer_mat_row(m, r0 + rr, row);
						wr = row;
					}
					int b = 0;
					for (; b + 4 <= n; b += 4) {
						dot4_f32(wr, x + (size_t)b * K,
						    (size_t)K, K, o);
						for (int k = 0; k < 4; k++)
							ob[b + k][rr] = o[k];
					}
					for (; b < n; b++)
						ob[b][rr] = dot_f32(wr, x +
						    (size_t)b * K, K);
				}
				for (int b = 0; b < n; b++)
					memcpy(y + (size_t)b * R + r0, ob[b],
					    (size_t)nr * sizeof(float));
			}
		}
		free(rows);
		return V_OK;
	}
	if (m->type == INFER_F32) {
		/* Y (n, R) = X (n, K) W^T: BLAS has this one covered. */
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, R, K,
		    1.0f, x, K, (const float *)m->w, K, 0.0f, y, R);
		return V_OK;
	}
	/* Other types: expand a tile of rows into fp32 (in parallel), then
	 * let BLAS multiply the tile with all n inputs; the weights still
	 * cross memory once per step, and the products run at BLAS speed. */
	int tr = TILE_ROWS < R ? TILE_ROWS : R;
	float *tile = malloc((size_t)tr * (size_t)K * sizeof *tile);
	if (tile == NULL)
		return v_error(V_ERR_NOMEM, "matrix product: out of memory");
	for (int r0 = 0; r0 < R; r0 += tr) {
		int nr = R - r0 < tr ? R - r0 : tr;
#pragma omp parallel for schedule(static) if ((long)nr * K >= PAR_MIN_WORK)
		for (int r = 0; r < nr; r++)
			infer_mat_row(m, r0 + r, tile + (size_t)r * K);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, nr, K,
		    1.0f, x, K, tile, K, 0.0f, y + r0, R);
	}
	free(tile);
	return V_OK;
}

/* ---- the forward step ---- */

float
infer_act(const struct vlm_config *c, float x)
{
	switch (c->act) {
	case VLM_ACT_GELU:
		return 0.5f * x * (1.0f + erff(x * 0.70710678f));
	case VLM_ACT_ERA: {
		float s = 1.0f / (1.0f + expf(-x / c->era_temp));
		/* Binary entropy in bits, 0 at the ends (0 log 0 = 0). */
		float h = 0;
		if (s > 0 && s < 1)
			h = -(s * log2f(s) + (1 - s) * log2f(1 - s));
		return x * s * (1.0f + c->era_gamma * h);
	}
	default:
		return x / (1.0f + expf(-x));
	}
}

static void
rmsnorm(float *out, const float *x, const float *w, int n, float eps)
{
	float ss = 0;
	for (int i = 0; i < n; i++)
		ss += x[i] * x[i];
	float k = 1.0f / sqrtf(ss / (float)n + eps);
	for (int i = 0; i < n; i++)
		out[i] = x[i] * k * w[i];
}

/* rotate_half: the pair (i, i + hd/2) of each head turns by pos * f_i. */
static void
rope(float *v, int heads, int hd, const float *cs, const float *sn)
{
	int h2 = hd / 2;
	for (int h = 0; h < heads; h++) {
		float *a = v + h * hd;
		for (int i = 0; i < h2; i++) {
			float x0 = a[i], x1 = a[i + h2];
			a[i] = x0 * cs[i] - x1 * sn[i];
			a[i + h2] = x1 * cs[i] + x0 * sn[i];
		}
	}
}

int
infer_state_init(struct infer_state *s, const struct infer_model *m, int cap)
{
	const struct vlm_config *c = &m->c;
	memset(s, 0, sizeof *s);
	if (cap <= 0 || cap > c->ctx)
		return v_error(V_ERR_RANGE, "cache of %d positions: the model's "
		    "context is %d", cap, c->ctx);
	size_t kvd = (size_t)c->kv_heads * (size_t)(c->dim / c->heads);
	size_t n = (size_t)c->layers * (size_t)cap * kvd;
	s->k = malloc(n * sizeof *s->k);
	s->v = malloc(n * sizeof *s->v);
	if (s->k == NULL || s->v == NULL) {
		infer_state_free(s);
		return v_error(V_ERR_NOMEM, "key/value cache: out of memory");
	}
	s->cap = cap;
	return V_OK;
}

void
infer_state_free(struct infer_state *s)
{
	free(s->k);
	free(s->v);
	s->k = s->v = NULL;
	s->cap = 0;
}

int
infer_work_init(struct infer_work *w, const struct infer_model *m, int cap)
{
	const struct vlm_config *c = &m->c;
	size_t C = (size_t)c->dim, F = (size_t)c->hidden, n = (size_t)cap;
	size_t kvd = (size_t)c->kv_heads * (C / (size_t)c->heads);

	memset(w, 0, sizeof *w);
	if (cap <= 0)
		return v_error(V_ERR_RANGE, "a step of %d slots", cap);
	w->x = malloc(n * C * sizeof(float));
	w->xb = malloc(n * C * sizeof(float));
	w->q = malloc(n * C * sizeof(float));
	w->kv = malloc(2 * n * kvd * sizeof(float));
	w->ao = malloc(n * C * sizeof(float));
	w->hb = malloc(n * F * sizeof(float));
	w->hb2 = malloc(n * F * sizeof(float));
	w->att = malloc(n * (size_t)c->heads * (size_t)c->ctx * sizeof(float));
	w->logits = malloc(n * (size_t)c->vocab_used * sizeof(float));
	if (!w->x || !w->xb || !w->q || !w->kv || !w->ao || !w->hb || !w->hb2 ||
	    !w->att || !w->logits) {
		infer_work_free(w);
		return v_error(V_ERR_NOMEM, "inference buffers: out of memory");
	}
	w->cap = cap;
	w->ctx = c->ctx;
	return V_OK;
}

void
infer_work_free(struct infer_work *w)
{
	free(w->x);
	free(w->xb);
	free(w->q);
	free(w->kv);
	free(w->ao);
	free(w->hb);
	free(w->hb2);
	free(w->att);
	free(w->logits);
	memset(w, 0, sizeof *w);
}

int
infer_step(const struct infer_model *m, struct infer_work *w,
    const struct infer_slot *slot, int n)
{
	const struct vlm_config *c = &m->c;
	int C = c->dim, H = c->heads, KV = c->kv_heads, hd = C / H, F = c->hidden;
	int kvd = KV * hd, grp = H / KV, Vu = c->vocab_used;
	float eps = c->norm_eps, isq = 1.0f / sqrtf((float)hd);
	int err = V_OK;

	if (n <= 0 || n > w->cap)
		return v_error(V_ERR_RANGE, "a step of %d slots (at most %d)", n,
		    w->cap);
	for (int s = 0; s < n; s++) {
		if (slot[s].token < 0 || slot[s].token >= c->vocab)
			return v_error(V_ERR_RANGE, "token %d outside the "
			    "vocabulary of %d", slot[s].token, c->vocab);
		if (slot[s].pos < 0 || slot[s].pos >= slot[s].st->cap)
			return v_error(V_ERR_RANGE, "position %d outside the "
			    "cache of %d", slot[s].pos, slot[s].st->cap);
		infer_mat_row(&m->embed, slot[s].token, w->x + (size_t)s * C);
	}
	float *kb = w->kv, *vb = w->kv + (size_t)n * kvd;

	for (int l = 0; l < c->layers; l++) {
		const struct infer_layer *ly = &m->layer[l];
		for (int s = 0; s < n; s++)
			rmsnorm(w->xb + (size_t)s * C, w->x + (size_t)s * C,
			    ly->attn_norm, C, eps);
		if ((err = infer_matmul(&ly->wq, w->xb, w->q, n)) != V_OK ||
		    (err = infer_matmul(&ly->wk, w->xb, kb, n)) != V_OK ||
		    (err = infer_matmul(&ly->wv, w->xb, vb, n)) != V_OK)
			return err;
		for (int s = 0; s < n; s++) {
			const struct infer_slot *sl = &slot[s];
			const float *cs = m->rope_cos + (size_t)sl->pos * (hd / 2);
			const float *sn = m->rope_sin + (size_t)sl->pos * (hd / 2);
			rope(w->q + (size_t)s * C, H, hd, cs, sn);
			rope(kb + (size_t)s * kvd, KV, hd, cs, sn);
			size_t at = ((size_t)l * sl->st->cap + (size_t)sl->pos) * kvd;
			memcpy(sl->st->k + at, kb + (size_t)s * kvd,
			    (size_t)kvd * sizeof(float));
			memcpy(sl->st->v + at, vb + (size_t)s * kvd,
			    (size_t)kvd * sizeof(float));
		}
		long awork = 0;
		for (int s = 0; s < n; s++)
			awork += (long)(slot[s].pos + 1) * C;
#pragma omp parallel for schedule(dynamic) if (awork >= PAR_MIN_WORK)
		for (int sh = 0; sh < n * H; sh++) {
			int s = sh / H, h = sh % H, p = slot[s].pos;
			const struct infer_state *st = slot[s].st;
			const float *q = w->q + (size_t)s * C + (size_t)h * hd;
			const float *kc = st->k + (size_t)l * st->cap * kvd +
			    (size_t)(h / grp) * hd;
			const float *vc = st->v + (size_t)l * st->cap * kvd +
			    (size_t)(h / grp) * hd;
			float *a = w->att + (size_t)sh * w->ctx;
			float mx = -INFINITY, sum = 0;
			for (int t = 0; t <= p; t++) {
				a[t] = dot_f32(q, kc + (size_t)t * kvd, hd) * isq;
				if (a[t] > mx)
					mx = a[t];
			}
			for (int t = 0; t <= p; t++) {
				a[t] = expf(a[t] - mx);
				sum += a[t];
			}
			float *o = w->ao + (size_t)s * C + (size_t)h * hd;
			memset(o, 0, (size_t)hd * sizeof *o);
			for (int t = 0; t <= p; t++) {
				const float *v = vc + (size_t)t * kvd;
				float at = a[t] / sum;
				for (int i = 0; i < hd; i++)
					o[i] += at * v[i];
			}
		}
		if ((err = infer_matmul(&ly->wo, w->ao, w->xb, n)) != V_OK)
			return err;
		for (size_t i = 0; i < (size_t)n * C; i++)
			w->x[i] += w->xb[i];

		for (int s = 0; s < n; s++)
			rmsnorm(w->xb + (size_t)s * C, w->x + (size_t)s * C,
			    ly->mlp_norm, C, eps);
		if ((err = infer_matmul(&ly->gate, w->xb, w->hb, n)) != V_OK ||
		    (err = infer_matmul(&ly->up, w->xb, w->hb2, n)) != V_OK)
			return err;
		for (size_t i = 0; i < (size_t)n * F; i++)
			w->hb[i] = infer_act(c, w->hb[i]) * w->hb2[i];
		if ((err = infer_matmul(&ly->down, w->hb, w->xb, n)) != V_OK)
			return err;
		for (size_t i = 0; i < (size_t)n * C; i++)
			w->x[i] += w->xb[i];
	}

	/* Only the slots that want logits go through the output head (in a
	 * prompt chunk, the last one), packed so the head is read once. */
	int nl = 0, last = 0;
	for (int s = 0; s < n; s++)
		if (slot[s].logits != NULL) {
			rmsnorm(w->xb + (size_t)nl * C, w->x + (size_t)s * C,
			    m->final_norm, C, eps);
			nl++;
			last = s;
		}
	if (nl == 1) {
		err = infer_matmul(&m->head, w->xb, slot[last].logits, 1);
	} else if (nl > 1) {
		err = infer_matmul(&m->head, w->xb, w->logits, nl);
		for (int s = 0, j = 0; s < n; s++)
			if (slot[s].logits != NULL)
				memcpy(slot[s].logits, w->logits +
				    (size_t)j++ * Vu, (size_t)Vu * sizeof(float));
	}
	if (err)
		return err;
	for (int s = 0; s < n; s++) {
		if (slot[s].logits == NULL)
			continue;
		for (int i = 0; i < Vu; i++)
			if (!isfinite(slot[s].logits[i]))
				return v_error(V_ERR_NUMERIC, "the model's output "
				    "is not finite at position %d", slot[s].pos);
	}
	return V_OK;
}
