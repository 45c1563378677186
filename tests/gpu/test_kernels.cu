// test_kernels.cu: each CUDA op of the training backend against the CPU
// reference of lib/ (model_cpu.c, velvet.c) on fresh random inputs, by
// relative error ||gpu - ref|| / ||ref||.  Inputs are rounded to bf16 on
// the host first, so the reference sees exactly what the device sees; the
// tolerance is then what bf16 outputs and fp32 accumulation in another
// order cost (METHOD: bf16 operands land between 1e-3 and 1e-2).  Every
// output buffer is poisoned (NaN) before the launch, so an element left
// unwritten fails the check.  TAP on stdout.
#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

extern "C" {
#include "../../lib/bf16.h"
#include "../../lib/model_cpu.h"
#include "../../lib/velvet.h"
}
#include "../../kernels/cuda_common.cuh"
#include "../../kernels/ops.cuh"

typedef std::vector<float> vec;

static int tap_n, tap_fail;
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static void ok(bool c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ok(bool c, const char *fmt, ...)
{
	va_list ap;
	printf("%sok %d - ", c ? "" : "not ", ++tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	tap_fail += !c;
	fflush(stdout);
}

static float urand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (float)((rng >> 11) * (1.0 / 9007199254740992.0));
}

static float nrand(void)
{
	float u = urand() + 1e-12f, v = urand();
	return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

static vec randn(size_t n, float scale)
{
	vec x(n);
	for (auto &e : x)
		e = v_bf16_to_f32(v_f32_to_bf16(nrand() * scale));
	return x;
}

#define CK(call) do { \
	cudaError_t e_ = (call); \
	if (e_ != cudaSuccess) { \
		printf("Bail out! %s:%d: %s: %s\n", __FILE__, __LINE__, #call, \
		    cudaGetErrorString(e_)); \
		exit(1); \
	} \
} while (0)
#define OP(call) do { \
	if ((call) != 0) { \
		printf("Bail out! %s: %s\n", #call, vk_last_error()); \
		exit(1); \
	} \
	CK(cudaDeviceSynchronize()); \
} while (0)

// Device buffers filled from, and read back to, fp32 host vectors.
static float *dev_f(const vec &x)
{
	float *d;
	CK(cudaMalloc(&d, x.size() * 4 + 4));
	CK(cudaMemcpy(d, x.data(), x.size() * 4, cudaMemcpyHostToDevice));
	return d;
}

static bf16 *dev_b(const vec &x)
{
	std::vector<uint16_t> h(x.size());
	for (size_t i = 0; i < x.size(); i++)
		h[i] = v_f32_to_bf16(x[i]);
	bf16 *d;
	CK(cudaMalloc(&d, h.size() * 2 + 2));
	CK(cudaMemcpy(d, h.data(), h.size() * 2, cudaMemcpyHostToDevice));
	return d;
}

// A buffer of n elements of size es, poisoned with all-ones bytes (NaN in
// both fp32 and bf16).
static void *dev_poison(size_t n, size_t es)
{
	void *d;
	CK(cudaMalloc(&d, n * es + 4));
	CK(cudaMemset(d, 0xff, n * es));
	return d;
}

static vec get_f(const float *d, size_t n)
{
	vec x(n);
	CK(cudaMemcpy(x.data(), d, n * 4, cudaMemcpyDeviceToHost));
	return x;
}

static vec get_b(const bf16 *d, size_t n)
{
	std::vector<uint16_t> h(n);
	CK(cudaMemcpy(h.data(), d, n * 2, cudaMemcpyDeviceToHost));
	vec x(n);
	for (size_t i = 0; i < n; i++)
		x[i] = v_bf16_to_f32(h[i]);
	return x;
}

// ||a - b|| / ||b||; NaN anywhere gives infinity.
static double relerr(const vec &a, const vec &b)
{
	double num = 0, den = 0;
	for (size_t i = 0; i < a.size(); i++) {
		if (!std::isfinite(a[i]))
			return INFINITY;
		double d = (double)a[i] - b[i];
		num += d * d;
		den += (double)b[i] * b[i];
	}
	return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void check(const char *what, const vec &got, const vec &want, double tol)
{
	double e = relerr(got, want);
	ok(e <= tol, "%s: relative error %.2e (tolerance %.0e)", what, e, tol);
}

// bf16 outputs: one rounding (2^-9 relative) plus accumulation order.
const double TOL_BF16 = 8e-3;

static void test_matmul(struct vk_blas *bl)
{
	// skew: operands that start that many elements into an allocation,
	// as a layer's weights do inside the flat parameter array.
	struct { int ta, tb, m, n, k, f32; float beta; int skew; const char *what; } cs[] = {
		{ 0, 1, 136, 264, 320, 0, 0.0f, 0, "matmul x W^T (forward), bf16 out" },
		{ 0, 0, 136, 320, 264, 0, 0.0f, 0, "matmul dy W (input gradient)" },
		{ 1, 0, 264, 320, 136, 1, 1.0f, 0, "matmul dy^T x (weight gradient), fp32 accumulate" },
		{ 0, 1, 260, 512, 192, 0, 0.0f, 64, "matmul x W^T, operands 128 bytes off 256-byte alignment" },
		{ 1, 0, 512, 192, 260, 1, 1.0f, 8, "matmul dy^T x, operands 16 and 32 bytes off alignment" },
	};
	for (auto &c : cs) {
		// Stored shapes: A (m, k) or (k, m); B (k, n) or (n, k).
		vec A = randn((size_t)c.m * c.k, 1.0f), B = randn((size_t)c.k * c.n, 1.0f);
		vec C0 = randn((size_t)c.m * c.n, 1.0f);
		vec ref((size_t)c.m * c.n);
		for (int i = 0; i < c.m; i++)
			for (int j = 0; j < c.n; j++) {
				double s = 0;
				for (int p = 0; p < c.k; p++) {
					float a = c.ta ? A[(size_t)p * c.m + i] : A[(size_t)i * c.k + p];
					float b = c.tb ? B[(size_t)j * c.k + p] : B[(size_t)p * c.n + j];
					s += (double)a * b;
				}
				ref[(size_t)i * c.n + j] = (float)(s + c.beta * C0[(size_t)i * c.n + j]);
			}
		vec As((size_t)c.skew, 0.0f), Bs((size_t)c.skew, 0.0f);
		As.insert(As.end(), A.begin(), A.end());
		Bs.insert(Bs.end(), B.begin(), B.end());
		bf16 *dA = dev_b(As), *dB = dev_b(Bs);
		vec got;
		if (c.f32) {
			vec Cs((size_t)c.skew, 0.0f);
			Cs.insert(Cs.end(), C0.begin(), C0.end());
			float *dC = dev_f(Cs);
			OP(vk_mm(bl, 0, c.ta, c.tb, c.m, c.n, c.k, dA + c.skew,
			    dB + c.skew, dC + c.skew, 1, 1.0f, c.beta));
			got = get_f(dC + c.skew, ref.size());
			check(c.what, got, ref, 1e-5);
			cudaFree(dC);
		} else {
			bf16 *dC = (bf16 *)dev_poison(ref.size() + c.skew, 2);
			OP(vk_mm(bl, 0, c.ta, c.tb, c.m, c.n, c.k, dA + c.skew,
			    dB + c.skew, dC + c.skew, 0, 1.0f, 0.0f));
			got = get_b(dC + c.skew, ref.size());
			check(c.what, got, ref, TOL_BF16);
			cudaFree(dC);
		}
		cudaFree(dA);
		cudaFree(dB);
	}
}

static void test_embedding(void)
{
	int N = 300, C = 96, V = 40;	// few rows: tokens repeat
	vec wte = randn((size_t)V * C, 1.0f);
	std::vector<int32_t> tok(N);
	for (auto &t : tok)
		t = (int32_t)(urand() * V) % V;
	int32_t *dt;
	CK(cudaMalloc(&dt, N * 4));
	CK(cudaMemcpy(dt, tok.data(), N * 4, cudaMemcpyHostToDevice));
	float *dw = dev_f(wte), *dres = (float *)dev_poison((size_t)N * C, 4);
	OP(vk_embed_fwd(dres, dw, dt, N, C, 0));
	vec ref((size_t)N * C);
	for (int n = 0; n < N; n++)
		memcpy(&ref[(size_t)n * C], &wte[(size_t)tok[n] * C], C * 4);
	check("embedding forward", get_f(dres, ref.size()), ref, 0);

	vec g = randn((size_t)N * C, 1.0f), dw0 = randn((size_t)V * C, 1.0f);
	vec gref = dw0;
	for (int n = 0; n < N; n++)
		for (int i = 0; i < C; i++)
			gref[(size_t)tok[n] * C + i] += g[(size_t)n * C + i];
	float *dg = dev_f(g), *ddw = dev_f(dw0);
	OP(vk_embed_bwd(ddw, dg, dt, N, C, 0));
	check("embedding backward (repeated tokens add up)", get_f(ddw, gref.size()), gref, 1e-6);
	cudaFree(dt); cudaFree(dw); cudaFree(dres); cudaFree(dg); cudaFree(ddw);
}

static void test_rmsnorm(int C)
{
	int N = 777;
	float eps = 1e-5f;
	vec x = randn((size_t)N * C, 2.0f), d = randn((size_t)N * C, 1.0f);
	vec w = randn(C, 1.0f);
	for (auto &e : w)
		e += 1.0f;
	vec sum((size_t)N * C);
	for (size_t i = 0; i < sum.size(); i++)
		sum[i] = x[i] + d[i];
	vec out((size_t)N * C), rstd(N);
	vlm_rmsnorm_forward(out.data(), rstd.data(), sum.data(), w.data(), N, C, eps);

	float *dx = dev_f(x), *dwv = dev_f(w);
	bf16 *dd = dev_b(d);
	float *dsum = (float *)dev_poison((size_t)N * C, 4);
	bf16 *dout = (bf16 *)dev_poison((size_t)N * C, 2);
	float *drstd = (float *)dev_poison(N, 4);
	char what[96];
	OP(vk_rmsnorm_fwd(dsum, dx, dd, dwv, dout, drstd, N, C, eps, 0));
	snprintf(what, sizeof what, "rmsnorm forward C=%d: residual sum", C);
	check(what, get_f(dsum, sum.size()), sum, 1e-7);
	snprintf(what, sizeof what, "rmsnorm forward C=%d: normalised output", C);
	check(what, get_b(dout, out.size()), out, TOL_BF16);
	snprintf(what, sizeof what, "rmsnorm forward C=%d: 1/rms kept", C);
	check(what, get_f(drstd, N), rstd, 1e-6);

	// Backward: the residual gradient accumulates onto what is there.
	vec g = randn((size_t)N * C, 1.0f), dres0 = randn((size_t)N * C, 1.0f);
	vec dw0 = randn(C, 1.0f);
	vec dres_ref = dres0, dw_ref = dw0;
	vlm_rmsnorm_backward(dres_ref.data(), dw_ref.data(), g.data(), sum.data(),
	    w.data(), rstd.data(), N, C);
	float *ddres = dev_f(dres0), *ddw = dev_f(dw0), *drs = dev_f(rstd);
	bf16 *dg = dev_b(g), *dbf = (bf16 *)dev_poison((size_t)N * C, 2);
	OP(vk_rmsnorm_bwd(ddres, dbf, ddw, dg, dsum, dwv, drs, N, C, 0));
	snprintf(what, sizeof what, "rmsnorm backward C=%d: residual gradient", C);
	check(what, get_f(ddres, dres_ref.size()), dres_ref, 1e-5);
	snprintf(what, sizeof what, "rmsnorm backward C=%d: its bf16 copy", C);
	check(what, get_b(dbf, dres_ref.size()), dres_ref, TOL_BF16);
	snprintf(what, sizeof what, "rmsnorm backward C=%d: weight gradient", C);
	check(what, get_f(ddw, C), dw_ref, 1e-5);
	cudaFree(dx); cudaFree(dwv); cudaFree(dd); cudaFree(dsum); cudaFree(dout);
	cudaFree(drstd); cudaFree(ddres); cudaFree(ddw); cudaFree(drs); cudaFree(dg);
	cudaFree(dbf);
}

// qkv rows (H + 2 KV) hd wide from separate q, k, v arrays, and back.
static vec pack_qkv(const vec &q, const vec &k, const vec &v, int N, int H,
    int KV, int hd)
{
	int W = (H + 2 * KV) * hd;
	vec x((size_t)N * W);
	for (int n = 0; n < N; n++) {
		memcpy(&x[(size_t)n * W], &q[(size_t)n * H * hd], H * hd * 4);
		memcpy(&x[(size_t)n * W + H * hd], &k[(size_t)n * KV * hd], KV * hd * 4);
		memcpy(&x[(size_t)n * W + (H + KV) * hd], &v[(size_t)n * KV * hd], KV * hd * 4);
	}
	return x;
}

static vec slice_cols(const vec &x, int N, int W, int c0, int w)
{
	vec y((size_t)N * w);
	for (int n = 0; n < N; n++)
		memcpy(&y[(size_t)n * w], &x[(size_t)n * W + c0], w * 4);
	return y;
}

static void test_rope(void)
{
	int B = 2, T = 150, H = 4, KV = 2, hd = 64, N = B * T;
	int W = (H + 2 * KV) * hd;
	vec q = randn((size_t)N * H * hd, 1.0f), k = randn((size_t)N * KV * hd, 1.0f);
	vec v = randn((size_t)N * KV * hd, 1.0f);
	vec x = pack_qkv(q, k, v, N, H, KV, hd);
	vec cosv((size_t)T * hd / 2), sinv((size_t)T * hd / 2);
	vlm_rope_tables(cosv.data(), sinv.data(), T, hd, 10000.0f);
	vec qr = q, kr = k;
	vlm_rope_forward(qr.data(), cosv.data(), sinv.data(), B, T, H, hd);
	vlm_rope_forward(kr.data(), cosv.data(), sinv.data(), B, T, KV, hd);
	float2 *cs = (float2 *)dev_poison((size_t)T * hd / 2, 8);
	OP(vk_rope_table(cs, T, hd, 10000.0f, 0));
	bf16 *dx = dev_b(x);
	OP(vk_rope(dx, cs, N, T, H, KV, hd, 1.0f, 0));
	vec got = get_b(dx, x.size());
	check("rope forward: queries", slice_cols(got, N, W, 0, H * hd), qr, TOL_BF16);
	check("rope forward: keys", slice_cols(got, N, W, H * hd, KV * hd), kr, TOL_BF16);
	check("rope forward: values untouched", slice_cols(got, N, W, (H + KV) * hd, KV * hd), v, 0);
	// Backward: the inverse rotation.
	vec qb = q;
	vlm_rope_backward(qb.data(), cosv.data(), sinv.data(), B, T, H, hd);
	CK(cudaFree(dx));
	dx = dev_b(x);
	OP(vk_rope(dx, cs, N, T, H, KV, hd, -1.0f, 0));
	got = get_b(dx, x.size());
	check("rope backward: queries", slice_cols(got, N, W, 0, H * hd), qb, TOL_BF16);
	cudaFree(dx); cudaFree(cs);
}

static void test_attention(int B, int T, int H, int KV, int hd, int simple)
{
	int N = B * T, W = (H + 2 * KV) * hd;
	char what[128];
	vec q = randn((size_t)N * H * hd, 1.0f), k = randn((size_t)N * KV * hd, 1.0f);
	vec v = randn((size_t)N * KV * hd, 1.0f);
	vec y((size_t)N * H * hd), att((size_t)B * H * T * T);
	vlm_attention_forward(y.data(), att.data(), q.data(), k.data(), v.data(),
	    B, T, H, KV, hd);
	bf16 *dqkv = dev_b(pack_qkv(q, k, v, N, H, KV, hd));
	bf16 *dy = (bf16 *)dev_poison((size_t)N * H * hd, 2);
	float *dlse = (float *)dev_poison((size_t)N * H, 4);
	const char *kind = simple ? "plain" : "tensor-core";
	if (simple)
		OP(vk_attn_fwd_simple(dy, dlse, dqkv, B, T, H, KV, hd, 0));
	else
		OP(vk_attn_fwd(dy, dlse, dqkv, B, T, H, KV, hd, 0));
	snprintf(what, sizeof what, "%s attention forward B=%d T=%d H=%d KV=%d "
	    "hd=%d", kind, B, T, H, KV, hd);
	vec yg = get_b(dy, y.size());
	check(what, yg, y, TOL_BF16);
	// The log-sum-exp, recomputed in double.
	vec lse((size_t)N * H);
	double sc = 1.0 / sqrt((double)hd);
	for (int b = 0; b < B; b++)
		for (int h = 0; h < H; h++)
			for (int i = 0; i < T; i++) {
				int kh = h / (H / KV);
				const float *qi = &q[((size_t)(b * T + i) * H + h) * hd];
				double mx = -INFINITY, s = 0;
				std::vector<double> sv(i + 1);
				for (int j = 0; j <= i; j++) {
					const float *kj = &k[((size_t)(b * T + j) * KV + kh) * hd];
					double d = 0;
					for (int e = 0; e < hd; e++)
						d += (double)qi[e] * kj[e];
					sv[j] = d * sc;
					mx = fmax(mx, sv[j]);
				}
				for (int j = 0; j <= i; j++)
					s += exp(sv[j] - mx);
				lse[((size_t)b * H + h) * T + i] = (float)(mx + log(s));
			}
	snprintf(what, sizeof what, "%s attention forward: log-sum-exp kept "
	    "(T=%d)", kind, T);
	check(what, get_f(dlse, lse.size()), lse, 1e-5);

	// Backward from the device's own bf16 output, as training runs it.
	vec g = randn((size_t)N * H * hd, 1.0f);
	vec dq((size_t)N * H * hd), dk((size_t)N * KV * hd), dv((size_t)N * KV * hd);
	vlm_attention_backward(dq.data(), dk.data(), dv.data(), g.data(), att.data(),
	    q.data(), k.data(), v.data(), B, T, H, KV, hd);
	bf16 *dg = dev_b(g), *dd = (bf16 *)dev_poison((size_t)N * W, 2);
	float *dsum = (float *)dev_poison((size_t)N * H, 4);
	if (simple)
		OP(vk_attn_bwd_simple(dd, dsum, dg, dqkv, dy, dlse, B, T, H, KV, hd,
		    0));
	else
		OP(vk_attn_bwd(dd, dsum, dg, dqkv, dy, dlse, B, T, H, KV, hd, 0));
	vec got = get_b(dd, (size_t)N * W);
	const double tol = 1.5e-2;	// through two bf16 roundings (y and dy)
	snprintf(what, sizeof what, "%s attention backward T=%d KV=%d hd=%d: dq",
	    kind, T, KV, hd);
	check(what, slice_cols(got, N, W, 0, H * hd), dq, tol);
	snprintf(what, sizeof what, "%s attention backward T=%d KV=%d hd=%d: dk",
	    kind, T, KV, hd);
	check(what, slice_cols(got, N, W, H * hd, KV * hd), dk, tol);
	snprintf(what, sizeof what, "%s attention backward T=%d KV=%d hd=%d: dv",
	    kind, T, KV, hd);
	check(what, slice_cols(got, N, W, (H + KV) * hd, KV * hd), dv, tol);
	cudaFree(dqkv); cudaFree(dy); cudaFree(dlse); cudaFree(dg); cudaFree(dd);
	cudaFree(dsum);
}

static void test_gated(int act)
{
	static const char *names[] = { "silu", "gelu", "era" };
	int N = 333, F = 272;
	float gamma = 0.5f, temp = 1.3f;
	size_t n = (size_t)N * F;
	vec g = randn(n, 2.0f), u = randn(n, 1.0f), dh = randn(n, 1.0f);
	vec gu((size_t)N * 2 * F);
	for (int r = 0; r < N; r++) {
		memcpy(&gu[(size_t)r * 2 * F], &g[(size_t)r * F], F * 4);
		memcpy(&gu[(size_t)r * 2 * F + F], &u[(size_t)r * F], F * 4);
	}
	vec h(n), dg(n), du(n);
	vlm_glu_forward(h.data(), g.data(), u.data(), n, act, gamma, temp);
	vlm_glu_backward(dg.data(), du.data(), dh.data(), g.data(), u.data(), n,
	    act, gamma, temp);
	bf16 *dgu = dev_b(gu), *dhh = (bf16 *)dev_poison(n, 2), *ddh = dev_b(dh);
	bf16 *ddgu = (bf16 *)dev_poison(2 * n, 2);
	char what[96];
	OP(vk_gated_fwd(dhh, dgu, N, F, act, gamma, temp, 0));
	snprintf(what, sizeof what, "gated MLP %s forward", names[act]);
	check(what, get_b(dhh, n), h, TOL_BF16);
	OP(vk_gated_bwd(ddgu, ddh, dgu, N, F, act, gamma, temp, 0));
	vec got = get_b(ddgu, 2 * n);
	snprintf(what, sizeof what, "gated MLP %s backward: gate", names[act]);
	check(what, slice_cols(got, N, 2 * F, 0, F), dg, TOL_BF16);
	snprintf(what, sizeof what, "gated MLP %s backward: up", names[act]);
	check(what, slice_cols(got, N, 2 * F, F, F), du, TOL_BF16);
	cudaFree(dgu); cudaFree(dhh); cudaFree(ddh); cudaFree(ddgu);
}

// V: logits a row; Vu of them used (the rest padding, whose gradient must
// be 0).  V a multiple of 8 takes the 16-byte path.
static void test_xent(int V, int Vu)
{
	int N = 129;
	float scale = 0.75f;
	vec z = randn((size_t)N * V, 3.0f), zu((size_t)N * Vu);
	for (int n = 0; n < N; n++)
		memcpy(&zu[(size_t)n * Vu], &z[(size_t)n * V], Vu * 4);
	std::vector<int32_t> t(N);
	for (auto &e : t)
		e = (int32_t)(urand() * Vu) % Vu;
	vec dz((size_t)N * Vu);
	double loss, ent;
	vlm_xent(dz.data(), &loss, &ent, zu.data(), t.data(), N, Vu, scale);
	int32_t *dt;
	CK(cudaMalloc(&dt, N * 4));
	CK(cudaMemcpy(dt, t.data(), N * 4, cudaMemcpyHostToDevice));
	bf16 *dzz = dev_b(z), *ddz = (bf16 *)dev_poison((size_t)N * V, 2);
	float *dl = (float *)dev_poison(N, 4), *de = (float *)dev_poison(N, 4);
	OP(vk_xent(ddz, dl, de, dzz, dt, N, V, Vu, scale / N, 0));
	vec l = get_f(dl, N), e = get_f(de, N), g = get_b(ddz, (size_t)N * V);
	double ls = 0, es = 0;
	for (int i = 0; i < N; i++) {
		ls += l[i];
		es += e[i];
	}
	vec gu((size_t)N * Vu);
	size_t pad_bad = 0;
	for (int n = 0; n < N; n++) {
		memcpy(&gu[(size_t)n * Vu], &g[(size_t)n * V], Vu * 4);
		for (int i = Vu; i < V; i++)
			pad_bad += g[(size_t)n * V + i] != 0.0f;
	}
	char what[96];
	snprintf(what, sizeof what, "cross-entropy V=%d used %d: mean loss", V, Vu);
	check(what, vec{ (float)(ls / N) }, vec{ (float)loss }, 1e-5);
	snprintf(what, sizeof what, "cross-entropy V=%d used %d: mean entropy", V, Vu);
	check(what, vec{ (float)(es / N) }, vec{ (float)ent }, 1e-5);
	snprintf(what, sizeof what, "cross-entropy V=%d used %d: logit gradients", V, Vu);
	check(what, gu, dz, TOL_BF16);
	if (V > Vu)
		ok(pad_bad == 0, "cross-entropy V=%d used %d: padding gradients are 0 "
		    "(%zu are not)", V, Vu, pad_bad);
	cudaFree(dt); cudaFree(dzz); cudaFree(ddz); cudaFree(dl); cudaFree(de);
}

static void test_sum(void)
{
	size_t n = 3000001;
	vec x = randn(n, 1.0f);
	double s = 0, s2 = 0;
	for (float e : x) {
		s += e;
		s2 += (double)e * e;
	}
	float *dx = dev_f(x), *part = (float *)dev_poison(VK_REDUCE_BLOCKS, 4);
	float *out = (float *)dev_poison(2, 4);
	OP(vk_sum(out, part, dx, n, 0, 0));
	OP(vk_sum(out + 1, part, dx, n, 1, 0));
	vec got = get_f(out, 2);
	// The plain sum cancels: compare against the magnitude it sums.
	ok(fabs(got[0] - s) <= 1e-5 * s2, "sum of 3 M values: %.6g vs %.6g", got[0], s);
	check("sum of squares (gradient norm)", vec{ got[1] }, vec{ (float)s2 }, 1e-5);
	cudaFree(dx); cudaFree(part); cudaFree(out);
}

static void test_velvet(int sparse, int decay_vectors)
{
	// Tensors of awkward sizes (unaligned chunks, a vector).
	int sizes[] = { 70000, 333, 131072, 5 };
	std::vector<struct vk_chunk> ch;
	size_t P = 0;
	std::vector<int> is_mat = { 1, 0, 1, 0 };
	std::vector<size_t> offs;
	for (int i = 0; i < 4; i++) {
		offs.push_back(P);
		for (int o = 0; o < sizes[i]; o += 65536) {
			struct vk_chunk c;
			c.off = P + o;
			c.len = sizes[i] - o < 65536 ? sizes[i] - o : 65536;
			c.decay = is_mat[i];
			ch.push_back(c);
		}
		P += sizes[i];
	}
	vec p = randn(P, 1.0f), g = randn(P, 0.1f), m = randn(P, 0.01f), v(P);
	for (size_t i = 0; i < P; i++) {
		v[i] = urand() * 1e-3f;
		if (sparse && i % 7 == 0)
			g[i] = 0;
	}
	struct velvet_hparams hp;
	velvet_defaults(&hp);
	hp.sparse = sparse;
	hp.decay_vectors = decay_vectors;
	float lr = 3e-3f, gm = 0.8f;
	long t = 7;
	struct velvet_step vs;
	velvet_prepare(&hp, 32000, lr, t, gm, &vs);
	vec pr = p, mr = m, vr = v;
	for (int i = 0; i < 4; i++) {
		float wd = is_mat[i] || decay_vectors ? hp.weight_decay : 0;
		velvet_update(&vs, wd, pr.data() + offs[i], g.data() + offs[i],
		    mr.data() + offs[i], vr.data() + offs[i], sizes[i]);
	}
	struct vk_adamw h;
	h.lr = vs.lr;
	h.weight_decay = hp.weight_decay;
	h.one_minus_b1 = vs.one_minus_b1;
	h.beta2 = vs.b2;
	h.one_minus_b2 = vs.one_minus_b2;
	h.step_size = vs.step_size;
	h.bc2_sqrt = vs.bc2_sqrt;
	h.eps = vs.eps;
	h.grad_mul = gm;
	h.decay_all = decay_vectors;
	h.sparse = sparse;
	float *dp = dev_f(p), *dg = dev_f(g), *dm = dev_f(m), *dv = dev_f(v);
	bf16 *db = (bf16 *)dev_poison(P, 2);
	struct vk_chunk *dc;
	CK(cudaMalloc(&dc, ch.size() * sizeof ch[0]));
	CK(cudaMemcpy(dc, ch.data(), ch.size() * sizeof ch[0], cudaMemcpyHostToDevice));
	OP(vk_velvet(dp, db, dg, dm, dv, dc, (int)ch.size(), &h, 0));
	char what[96];
	const char *tag = sparse ? "sparse" : decay_vectors ? "decay vectors" : "AdamW";
	vec gp = get_f(dp, P);
	snprintf(what, sizeof what, "velvet (%s): parameters", tag);
	check(what, gp, pr, 1e-6);
	snprintf(what, sizeof what, "velvet (%s): first moments", tag);
	check(what, get_f(dm, P), mr, 1e-6);
	snprintf(what, sizeof what, "velvet (%s): second moments", tag);
	check(what, get_f(dv, P), vr, 1e-6);
	vec gb = get_b(db, P);
	size_t bad = 0;
	for (size_t i = 0; i < P; i++)
		bad += v_f32_to_bf16(gp[i]) != v_f32_to_bf16(gb[i]);
	snprintf(what, sizeof what, "velvet (%s): bf16 copy is the rounded master (%zu differ)",
	    tag, bad);
	ok(bad == 0, "%s", what);
	cudaFree(dp); cudaFree(dg); cudaFree(dm); cudaFree(dv); cudaFree(db); cudaFree(dc);
}

// Timing of the heavy ops at the medium preset's sizes (B=64, T=1024,
// C=768, 12 heads of 64, F=2048, V=32000), with events, median of 5 after a
// warm-up; `test_kernels bench`.  Inputs are random, never zeros.
static float time_ms(void (*fn)(void *), void *arg)
{
	cudaEvent_t a, b;
	CK(cudaEventCreate(&a));
	CK(cudaEventCreate(&b));
	fn(arg);
	CK(cudaDeviceSynchronize());
	float t[5];
	for (int i = 0; i < 5; i++) {
		CK(cudaEventRecord(a));
		fn(arg);
		CK(cudaEventRecord(b));
		CK(cudaEventSynchronize(b));
		CK(cudaEventElapsedTime(&t[i], a, b));
	}
	for (int i = 0; i < 5; i++)
		for (int j = i + 1; j < 5; j++)
			if (t[j] < t[i]) {
				float x = t[i];
				t[i] = t[j];
				t[j] = x;
			}
	cudaEventDestroy(a);
	cudaEventDestroy(b);
	return t[2];
}

struct bench_ctx {
	int B, T, H, hd, N, C, F, V;
	bf16 *qkv, *y, *dy, *dqkv, *x, *w, *out, *big, *dbig;
	float *lse, *dsum, *res, *rstd, *normw, *loss, *ent, *gw;
	int32_t *tgt;
	struct vk_blas *bl;
};

#define BFN(name, body) static void name(void *p) { \
	struct bench_ctx *c = (struct bench_ctx *)p; body; }
BFN(b_attn_fwd, OP(vk_attn_fwd(c->y, c->lse, c->qkv, c->B, c->T, c->H, c->H, c->hd, 0)))
BFN(b_attn_bwd, OP(vk_attn_bwd(c->dqkv, c->dsum, c->dy, c->qkv, c->y, c->lse, c->B, c->T, c->H, c->H, c->hd, 0)))
BFN(b_attn_fwd_s, OP(vk_attn_fwd_simple(c->y, c->lse, c->qkv, c->B, c->T, c->H, c->H, c->hd, 0)))
BFN(b_mm_fwd, OP(vk_mm(c->bl, 0, 0, 1, c->N, c->F, c->C, c->x, c->w, c->out, 0, 1.0f, 0.0f)))
BFN(b_mm_dx, OP(vk_mm(c->bl, 0, 0, 0, c->N, c->C, c->F, c->out, c->w, c->x, 0, 1.0f, 0.0f)))
BFN(b_mm_dw, OP(vk_mm(c->bl, 0, 1, 0, c->F, c->C, c->N, c->out, c->x, c->gw, 1, 1.0f, 1.0f)))
BFN(b_head, OP(vk_mm(c->bl, 0, 0, 1, c->N, c->V, c->C, c->x, c->w, c->big, 0, 1.0f, 0.0f)))
BFN(b_xent, OP(vk_xent(c->dbig, c->loss, c->ent, c->big, c->tgt, c->N, c->V, c->V, 1.0f / c->N, 0)))
BFN(b_norm, OP(vk_rmsnorm_fwd(c->res, c->res, c->x, c->normw, c->y, c->rstd, c->N, c->C, 1e-5f, 0)))

static void bench(void)
{
	struct bench_ctx c;
	c.B = 64; c.T = 1024; c.H = 12; c.hd = 64; c.C = 768; c.F = 2048;
	c.V = 32000; c.N = c.B * c.T;
	size_t N = c.N;
	vec r = randn(N * 3 * c.C, 1.0f);
	c.qkv = dev_b(r);
	c.dy = dev_b(vec(r.begin(), r.begin() + N * c.C));
	c.x = dev_b(vec(r.begin() + N * c.C, r.begin() + 2 * N * c.C));
	c.y = (bf16 *)dev_poison(N * c.C, 2);
	c.dqkv = (bf16 *)dev_poison(N * 3 * c.C, 2);
	c.lse = (float *)dev_poison(N * c.H, 4);
	c.dsum = (float *)dev_poison(N * c.H, 4);
	c.w = dev_b(randn((size_t)c.V * c.C, 0.02f));
	c.out = dev_b(randn(N * c.F, 1.0f));
	c.gw = dev_f(vec((size_t)c.F * c.C, 0.0f));
	c.big = dev_b(randn(N * c.V / 8, 1.0f));	// filled again below
	CK(cudaFree(c.big));
	CK(cudaMalloc(&c.big, N * c.V * 2));
	CK(cudaMalloc(&c.dbig, N * c.V * 2));
	c.res = dev_f(randn(N * c.C, 1.0f));
	c.rstd = (float *)dev_poison(N, 4);
	c.normw = dev_f(vec(c.C, 1.0f));
	c.loss = (float *)dev_poison(N, 4);
	c.ent = (float *)dev_poison(N, 4);
	std::vector<int32_t> t(N);
	for (auto &e : t)
		e = (int32_t)(urand() * c.V) % c.V;
	CK(cudaMalloc(&c.tgt, N * 4));
	CK(cudaMemcpy(c.tgt, t.data(), N * 4, cudaMemcpyHostToDevice));
	vk_blas_create(&c.bl);
	b_attn_fwd(&c);	// a real output and lse for the backward pass
	b_head(&c);	// real logits for the cross-entropy

	// Causal attention FLOPs: QK^T and PV over half the T x T square.
	double af = 2.0 * 2 * c.B * c.H * (double)c.T * c.T * c.hd / 2;
	double mf = 2.0 * N * c.F * c.C;
	float t1 = time_ms(b_attn_fwd, &c), t2 = time_ms(b_attn_bwd, &c);
	float t3 = time_ms(b_attn_fwd_s, &c);
	printf("# attention forward (tensor cores): %8.3f ms %6.1f TFLOP/s\n", t1, af / t1 / 1e9);
	printf("# attention backward (tensor cores): %7.3f ms %6.1f TFLOP/s (2.5x forward FLOPs)\n", t2, 2.5 * af / t2 / 1e9);
	printf("# attention forward (plain fp32):   %8.3f ms %6.1f TFLOP/s\n", t3, af / t3 / 1e9);
	float t4 = time_ms(b_mm_fwd, &c), t5 = time_ms(b_mm_dx, &c), t6 = time_ms(b_mm_dw, &c);
	printf("# matmul %dx%dx%d forward %.3f ms %.0f TFLOP/s, dx %.3f ms %.0f, dW %.3f ms %.0f\n",
	    c.N, c.F, c.C, t4, mf / t4 / 1e9, t5, mf / t5 / 1e9, t6, mf / t6 / 1e9);
	float t7 = time_ms(b_head, &c), t8 = time_ms(b_xent, &c), t9 = time_ms(b_norm, &c);
	printf("# head %.3f ms %.0f TFLOP/s; cross-entropy %.3f ms %.0f GB/s; rmsnorm %.3f ms %.0f GB/s\n",
	    t7, 2.0 * N * c.V * c.C / t7 / 1e9, t8, 4.0 * N * c.V / t8 / 1e6,
	    t9, N * c.C * 10.0 / t9 / 1e6);
}

int main(int argc, char **argv)
{
	int n = 0;
	if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
		printf("1..0 # SKIP no CUDA device\n");
		return 0;
	}
	if (argc > 1 && strcmp(argv[1], "bench") == 0) {
		bench();
		return 0;
	}
	if (argc > 1)
		rng ^= strtoull(argv[1], nullptr, 0);
	struct vk_blas *bl;
	if (vk_blas_create(&bl) != 0) {
		printf("Bail out! %s\n", vk_last_error());
		return 1;
	}
	test_matmul(bl);
	test_embedding();
	test_rmsnorm(320);
	test_rmsnorm(768);
	test_rope();
	for (int simple = 0; simple < 2; simple++) {
		test_attention(2, 200, 4, 2, 64, simple);
		test_attention(1, 64, 2, 2, 32, simple);
		test_attention(3, 129, 2, 1, 32, simple);
	}
	test_attention(1, 300, 2, 2, 128, 0);
	test_attention(2, 17, 3, 3, 64, 0);
	for (int a = 0; a < 3; a++)
		test_gated(a);
	test_xent(5000, 5000);
	test_xent(1024, 1000);
	test_xent(1003, 1003);
	test_xent(1003, 990);
	test_sum();
	test_velvet(0, 0);
	test_velvet(1, 0);
	test_velvet(0, 1);
	vk_blas_destroy(bl);
	printf("1..%d\n", tap_n);
	return tap_fail != 0;
}
