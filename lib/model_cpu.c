/* model_cpu.c: the layers of VesperLM on the CPU (fp32, OpenMP, OpenBLAS).
 *
 * Reductions that decide a result (norms, softmax sums) run in a fixed
 * order inside one thread, so that a run repeats bit for bit with the same
 * number of threads: parallel loops split rows or columns, never a sum. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model_cpu.h"
#include "verr.h"
#include "vio.h"

/* Below this much work a parallel region costs more than it saves, and
 * on a loaded machine a descheduled thread stalls every barrier. */
#define VLM_PAR_MIN 65536

static double mm_seconds, mm_flops;

void
vlm_matmul_stats(double *seconds, double *flops)
{
	*seconds = mm_seconds;
	*flops = mm_flops;
}

void
vlm_matmul_forward(float *y, const float *x, const float *w, int N, int in,
    int out)
{
	double t0 = v_now();

	cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, out, in,
	    1.0f, x, in, w, in, 0.0f, y, out);
	mm_seconds += v_now() - t0;
	mm_flops += 2.0 * N * in * out;
}

void
vlm_matmul_backward(float *dx, float *dw, const float *dy, const float *x,
    const float *w, int N, int in, int out, int accumulate)
{
	double t0 = v_now();

	if (dx != NULL)
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, in, out,
		    1.0f, dy, out, w, in, accumulate ? 1.0f : 0.0f, dx, in);
	cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, N,
	    1.0f, dy, out, x, in, 1.0f, dw, in);
	mm_seconds += v_now() - t0;
	mm_flops += (dx != NULL ? 4.0 : 2.0) * N * in * out;
}

void
vlm_rmsnorm_forward(float *out, float *rstd, const float *x, const float *w,
    int N, int C, float eps)
{
#pragma omp parallel for schedule(static) if ((size_t)N * C >= VLM_PAR_MIN)
	for (int n = 0; n < N; n++) {
		const float *xr = x + (size_t)n * C;
		float *o = out + (size_t)n * C;
		float ss = 0;
		for (int i = 0; i < C; i++)
			ss += xr[i] * xr[i];
		float r = 1.0f / sqrtf(ss / C + eps);
		#pragma omp simd
		for (int i = 0; i < C; i++)
			o[i] = xr[i] * r * w[i];
		rstd[n] = r;
	}
}

void
vlm_rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x,
    const float *w, const float *rstd, int N, int C)
{
	/* y_i = w_i x_i r: dx_i = r w_i dy_i - r^3 x_i (sum_j w_j dy_j x_j) / C */
#pragma omp parallel for schedule(static) if ((size_t)N * C >= VLM_PAR_MIN)
	for (int n = 0; n < N; n++) {
		const float *xr = x + (size_t)n * C, *dy = dout + (size_t)n * C;
		float *d = dx + (size_t)n * C;
		float r = rstd[n], dot = 0;
		for (int i = 0; i < C; i++)
			dot += w[i] * dy[i] * xr[i];
		float k = r * r * r * dot / C;
		#pragma omp simd
		for (int i = 0; i < C; i++)
			d[i] += r * w[i] * dy[i] - k * xr[i];
	}
	/* The weight's gradient sums over rows: split the columns instead. */
#pragma omp parallel for schedule(static) if ((size_t)N * C >= VLM_PAR_MIN)
	for (int i = 0; i < C; i++) {
		float s = 0;
		for (int n = 0; n < N; n++)
			s += dout[(size_t)n * C + i] * x[(size_t)n * C + i] * rstd[n];
		dw[i] += s;
	}
}

void
vlm_rope_tables(float *cosv, float *sinv, int T, int hd, float theta)
{
	int half = hd / 2;

	for (int t = 0; t < T; t++)
		for (int i = 0; i < half; i++) {
			double f = pow((double)theta, -2.0 * i / hd);
			cosv[t * half + i] = (float)cos(t * f);
			sinv[t * half + i] = (float)sin(t * f);
		}
}

/* sign +1 rotates by the angle, -1 by its opposite (the transpose). */
static void
rope_apply(float *x, const float *cosv, const float *sinv, int B, int T,
    int nh, int hd, float sign)
{
	int half = hd / 2;

#pragma omp parallel for schedule(static) if ((size_t)B * T * nh * hd >= VLM_PAR_MIN)
	for (int n = 0; n < B * T; n++) {
		const float *c = cosv + (size_t)(n % T) * half;
		const float *s = sinv + (size_t)(n % T) * half;
		for (int h = 0; h < nh; h++) {
			float *v = x + (size_t)n * nh * hd + (size_t)h * hd;
			#pragma omp simd
			for (int i = 0; i < half; i++) {
				float a = v[i], b = v[i + half], sn = sign * s[i];
				v[i] = a * c[i] - b * sn;
				v[i + half] = b * c[i] + a * sn;
			}
		}
	}
}

void
vlm_rope_forward(float *x, const float *cosv, const float *sinv, int B, int T,
    int nh, int hd)
{
	rope_apply(x, cosv, sinv, B, T, nh, hd, 1.0f);
}

void
vlm_rope_backward(float *dx, const float *cosv, const float *sinv, int B,
    int T, int nh, int hd)
{
	rope_apply(dx, cosv, sinv, B, T, nh, hd, -1.0f);
}

/* Key/value head g of sequence b transposed to (hd, T), so that the inner
 * loops run along positions as axpy loops, which vectorise without
 * reordering any sum. */
static void
transpose_head(float *dst, const float *src, int T, int kw, int hd)
{
	for (int t = 0; t < T; t++)
		for (int i = 0; i < hd; i++)
			dst[(size_t)i * T + t] = src[(size_t)t * kw + i];
}

size_t
vlm_attention_work(int B, int T, int H, int hd)
{
	return (size_t)B * H * ((size_t)hd + 1) * T;
}

void
vlm_attention_forward_ws(float *y, float *att, const float *q, const float *k,
    const float *v, int B, int T, int H, int KV, int hd, float *work)
{
	int qw = H * hd, kw = KV * hd, rep = H / KV;
	float scale = 1.0f / sqrtf((float)hd);

#pragma omp parallel for collapse(2) schedule(dynamic) if ((size_t)B * H * T * T * hd >= VLM_PAR_MIN)
	for (int b = 0; b < B; b++)
		for (int h = 0; h < H; h++) {
			const float *kb = k + (size_t)b * T * kw + (size_t)(h / rep) * hd;
			const float *vb = v + (size_t)b * T * kw + (size_t)(h / rep) * hd;
			float *kt = work + ((size_t)b * H + h) * ((size_t)hd + 1) * T;
			transpose_head(kt, kb, T, kw, hd);
			for (int t = 0; t < T; t++) {
				const float *qt = q + ((size_t)b * T + t) * qw + (size_t)h * hd;
				float *a = att + (((size_t)b * H + h) * T + t) * T;
				float *yt = y + ((size_t)b * T + t) * qw + (size_t)h * hd;
				float mx = -INFINITY, sum = 0;
				memset(a, 0, sizeof *a * (size_t)(t + 1));
				for (int i = 0; i < hd; i++) {
					const float *ki = kt + (size_t)i * T;
					float qi = qt[i];
					#pragma omp simd
					for (int j = 0; j <= t; j++)
						a[j] += qi * ki[j];
				}
				for (int j = 0; j <= t; j++) {
					a[j] *= scale;
					if (a[j] > mx)
						mx = a[j];
				}
				for (int j = 0; j <= t; j++) {
					a[j] = expf(a[j] - mx);
					sum += a[j];
				}
				float inv = 1.0f / sum;
				memset(yt, 0, sizeof *yt * hd);
				for (int j = 0; j <= t; j++) {
					const float *vj = vb + (size_t)j * kw;
					a[j] *= inv;
					#pragma omp simd
					for (int i = 0; i < hd; i++)
						yt[i] += a[j] * vj[i];
				}
			}
		}
}

void
vlm_attention_backward_ws(float *dq, float *dk, float *dv, const float *dy,
    const float *att, const float *q, const float *k, const float *v,
    int B, int T, int H, int KV, int hd, float *work)
{
	int qw = H * hd, kw = KV * hd, rep = H / KV;
	float scale = 1.0f / sqrtf((float)hd);

	/* One thread per (sequence, key/value head): the query heads sharing
	 * it add into the same dk and dv rows, in a fixed order. */
#pragma omp parallel for collapse(2) schedule(dynamic) if ((size_t)B * H * T * T * hd >= VLM_PAR_MIN)
	for (int b = 0; b < B; b++)
		for (int g = 0; g < KV; g++) {
			const float *kb = k + (size_t)b * T * kw + (size_t)g * hd;
			const float *vb = v + (size_t)b * T * kw + (size_t)g * hd;
			float *dkb = dk + (size_t)b * T * kw + (size_t)g * hd;
			float *dvb = dv + (size_t)b * T * kw + (size_t)g * hd;
			float *vt = work + ((size_t)b * H + g) * ((size_t)hd + 1) * T;
			float *datt = vt + (size_t)hd * T;
			transpose_head(vt, vb, T, kw, hd);
			for (int t = 0; t < T; t++) {
				memset(dkb + (size_t)t * kw, 0, sizeof(float) * hd);
				memset(dvb + (size_t)t * kw, 0, sizeof(float) * hd);
			}
			for (int h = g * rep; h < (g + 1) * rep; h++)
				for (int t = 0; t < T; t++) {
					size_t row = ((size_t)b * T + t) * qw + (size_t)h * hd;
					const float *qt = q + row, *dyt = dy + row;
					const float *a = att + (((size_t)b * H + h) * T + t) * T;
					float *dqt = dq + row, dot = 0;
					/* datt_j = dy_t . v_j; dv_j += a_j dy_t */
					memset(datt, 0, sizeof *datt * (size_t)(t + 1));
					for (int i = 0; i < hd; i++) {
						const float *vi = vt + (size_t)i * T;
						float di = dyt[i];
						#pragma omp simd
						for (int j = 0; j <= t; j++)
							datt[j] += di * vi[j];
					}
					for (int j = 0; j <= t; j++) {
						float *dvj = dvb + (size_t)j * kw;
						#pragma omp simd
						for (int i = 0; i < hd; i++)
							dvj[i] += a[j] * dyt[i];
						dot += a[j] * datt[j];
					}
					/* Through the softmax: ds_j = a_j (datt_j - sum a datt). */
					memset(dqt, 0, sizeof *dqt * hd);
					for (int j = 0; j <= t; j++) {
						float ds = a[j] * (datt[j] - dot) * scale;
						const float *kj = kb + (size_t)j * kw;
						float *dkj = dkb + (size_t)j * kw;
						#pragma omp simd
						for (int i = 0; i < hd; i++) {
							dqt[i] += ds * kj[i];
							dkj[i] += ds * qt[i];
						}
					}
				}
		}
}

int
vlm_attention_forward(float *y, float *att, const float *q, const float *k,
    const float *v, int B, int T, int H, int KV, int hd)
{
	float *work = malloc(sizeof *work * vlm_attention_work(B, T, H, hd));

	if (work == NULL)
		return v_error(V_ERR_NOMEM, "attention: out of memory");
	vlm_attention_forward_ws(y, att, q, k, v, B, T, H, KV, hd, work);
	free(work);
	return V_OK;
}

int
vlm_attention_backward(float *dq, float *dk, float *dv, const float *dy,
    const float *att, const float *q, const float *k, const float *v,
    int B, int T, int H, int KV, int hd)
{
	float *work = malloc(sizeof *work * vlm_attention_work(B, T, H, hd));

	if (work == NULL)
		return v_error(V_ERR_NOMEM, "attention: out of memory");
	vlm_attention_backward_ws(dq, dk, dv, dy, att, q, k, v, B, T, H, KV, hd,
	    work);
	free(work);
	return V_OK;
}

/* ERA's entropy in bits of s = sigmoid(u), written with softplus so that it
 * stays exact where s rounds to 0 or 1: -ln s = softplus(-u). */
static double
softplus(double u)
{
	return u > 0 ? u + log1p(exp(-u)) : log1p(exp(u));
}

float
vlm_act(int act, float xf, float gamma, float temp)
{
	double x = xf;

	switch (act) {
	case VLM_ACT_GELU:
		return (float)(0.5 * x * (1 + erf(x / sqrt(2.0))));
	case VLM_ACT_ERA: {
		double u = x / temp, s = 1 / (1 + exp(-u));
		double hb = (s * softplus(-u) + (1 - s) * softplus(u)) / log(2.0);
		return (float)(x * s * (1 + gamma * hb));
	}
	default: {
		/* The same operations as ERA's with gamma 0 and T 1, so that
		 * those give SiLU bit for bit. */
		double s = 1 / (1 + exp(-x));
		return (float)(x * s);
	}
	}
}

float
vlm_act_grad(int act, float xf, float gamma, float temp)
{
	double x = xf;

	switch (act) {
	case VLM_ACT_GELU:
		return (float)(0.5 * (1 + erf(x / sqrt(2.0))) +
		    x * exp(-0.5 * x * x) / sqrt(2 * M_PI));
	case VLM_ACT_ERA: {
		/* f = x s (1 + g H(s)), ds/dx = s(1-s)/T, dH/ds = -u / ln 2. */
		double u = x / temp, s = 1 / (1 + exp(-u));
		double hb = (s * softplus(-u) + (1 - s) * softplus(u)) / log(2.0);
		double ds = s * (1 - s) / temp;
		return (float)(s * (1 + gamma * hb) + x * ds * (1 + gamma * hb) +
		    x * s * gamma * (-u / log(2.0)) * ds);
	}
	default: {
		double s = 1 / (1 + exp(-x));
		return (float)(s * (1 + x * (1 - s)));
	}
	}
}

void
vlm_glu_forward(float *out, const float *g, const float *u, size_t n, int act,
    float gamma, float temp)
{
#pragma omp parallel for schedule(static) if (n >= VLM_PAR_MIN / 16)
	for (size_t i = 0; i < n; i++)
		out[i] = vlm_act(act, g[i], gamma, temp) * u[i];
}

void
vlm_glu_backward(float *dg, float *du, const float *dout, const float *g,
    const float *u, size_t n, int act, float gamma, float temp)
{
#pragma omp parallel for schedule(static) if (n >= VLM_PAR_MIN / 16)
	for (size_t i = 0; i < n; i++) {
		float d = dout[i];
		du[i] = d * vlm_act(act, g[i], gamma, temp);
		dg[i] = d * u[i] * vlm_act_grad(act, g[i], gamma, temp);
	}
}

int
vlm_xent(float *dlogits, double *loss, double *entropy, const float *logits,
    const int32_t *targets, int N, int V, float scale)
{
	double *row = malloc(sizeof *row * 2 * (size_t)N);
	if (row == NULL)
		return v_error(V_ERR_NOMEM, "cross-entropy: out of memory");
	for (int n = 0; n < N; n++)
		if (targets[n] < 0 || targets[n] >= V) {
			free(row);
			return v_error(V_ERR_RANGE, "target token %d outside the "
			    "vocabulary of %d", (int)targets[n], V);
		}
#pragma omp parallel for schedule(static) if ((size_t)N * V >= VLM_PAR_MIN)
	for (int n = 0; n < N; n++) {
		const float *z = logits + (size_t)n * V;
		int32_t y = targets[n];
		float mx = z[0];
		for (int i = 1; i < V; i++)
			if (z[i] > mx)
				mx = z[i];
		/* The exponentials in float, their sums in double. */
		double sum = 0, pz = 0, zy = (double)z[y] - mx;
		float *d = dlogits != NULL ? dlogits + (size_t)n * V : NULL;
		for (int i = 0; i < V; i++) {
			float zi = z[i] - mx, e = expf(zi);
			sum += e;
			pz += (double)e * zi;
			if (d != NULL)
				d[i] = e;	/* d may be z: z[i] is already read */
		}
		double lse = log(sum);
		row[2 * n] = lse - zy;
		row[2 * n + 1] = lse - pz / sum;
		if (d != NULL) {
			float k = (float)(scale / N / sum);
			for (int i = 0; i < V; i++)
				d[i] *= k;
			d[y] -= scale / N;
		}
	}
	/* Summed in row order, whatever the threads did: deterministic. */
	double l = 0, e = 0;
	for (int n = 0; n < N; n++) {
		l += row[2 * n];
		e += row[2 * n + 1];
	}
	free(row);
	*loss = l / N;
	if (entropy != NULL)
		*entropy = e / N;
	return V_OK;
}
