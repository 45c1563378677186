// attention_simple.cu: causal multi-head attention in the flash style, the
// plain version (fp32 arithmetic, no tensor cores) that the tests check the
// tensor-core version of attention.cu against, and the first version the
// notes in bench/NOTES-gpu.md time.  Tiles of keys and values pass through
// shared memory, each query keeps a running max and sum (online softmax),
// and no T x T matrix ever reaches device memory.  The forward pass keeps
// each row's log-sum-exp; the backward pass recomputes the probabilities
// from it.
//
// One thread owns one query row (forward, dQ) or one key row (dK, dV) and
// keeps its vectors in registers; the tile being swept is read by every
// thread of the block at once (a shared-memory broadcast).  fp32
// arithmetic throughout, bf16 in and out.
//
// qkv rows: H query heads, then KV key heads, then KV value heads, hd each;
// query head h reads key/value head h / (H / KV).
#include <cmath>

#include "cuda_common.cuh"
#include "ops.cuh"

#define ATT_BQ 64	// query rows a block (forward, dQ)
#define ATT_BK 64	// key rows a tile, and a block (dK, dV)
#define ATT_CHUNK 16	// scores kept in registers between rescalings

struct att_dims {
	int T, H, KV, hd, width;	// width = (H + 2 KV) hd
	float scale;			// 1 / sqrt(hd)
};

template <int HD>
__device__ __forceinline__ void load_row(float *dst, const bf16 *src)
{
	const __nv_bfloat162 *s2 = (const __nv_bfloat162 *)src;
#pragma unroll
	for (int d = 0; d < HD / 2; d++) {
		float2 f = __bfloat1622float2(s2[d]);
		dst[2 * d] = f.x;
		dst[2 * d + 1] = f.y;
	}
}

// Cooperative load of rows [r0, r0 + ATT_BK) of one head into a float tile
// (rows past T are zero).
template <int HD>
__device__ __forceinline__ void load_tile(float (*tile)[HD + 1],
    const bf16 *base, int r0, int T, int width)
{
	for (int i = threadIdx.x; i < ATT_BK * HD; i += blockDim.x) {
		int r = i / HD, d = i % HD;
		tile[r][d] = r0 + r < T ?
		    __bfloat162float(base[(size_t)(r0 + r) * width + d]) : 0.0f;
	}
}

// kernels

// grid (T / ATT_BQ, H, B), ATT_BQ threads.
template <int HD>
__global__ void __launch_bounds__(ATT_BQ)
attn_fwd_kernel(bf16 *out, float *lse, const bf16 *qkv, struct att_dims a)
{
	extern __shared__ float smem[];
	float (*ks)[HD + 1] = (float (*)[HD + 1])smem;
	float (*vs)[HD + 1] = ks + ATT_BK;
	int b = blockIdx.z, h = blockIdx.y;
	int kvh = h / (a.H / a.KV);
	int q0 = blockIdx.x * ATT_BQ;
	int i = q0 + threadIdx.x;
	const bf16 *seq = qkv + (size_t)b * a.T * a.width;
	const bf16 *kbase = seq + (size_t)(a.H + kvh) * a.hd;
	const bf16 *vbase = seq + (size_t)(a.H + a.KV + kvh) * a.hd;
	float q[HD], acc[HD];
	float m = -INFINITY, l = 0.0f;
	bool live = i < a.T;

	if (live)
		load_row<HD>(q, seq + (size_t)i * a.width + (size_t)h * a.hd);
	else
		for (int d = 0; d < HD; d++)
			q[d] = 0.0f;
#pragma unroll
	for (int d = 0; d < HD; d++) {
		q[d] *= a.scale;
		acc[d] = 0.0f;
	}
	int last = min(a.T, q0 + ATT_BQ);	// keys past the block's last query
	for (int k0 = 0; k0 < last; k0 += ATT_BK) {
		__syncthreads();
		load_tile<HD>(ks, kbase, k0, a.T, a.width);
		load_tile<HD>(vs, vbase, k0, a.T, a.width);
		__syncthreads();
		for (int c0 = 0; c0 < ATT_BK; c0 += ATT_CHUNK) {
			float s[ATT_CHUNK];
			float cm = m;
#pragma unroll
			for (int c = 0; c < ATT_CHUNK; c++) {
				int j = k0 + c0 + c;
				float dot = 0.0f;
#pragma unroll
				for (int d = 0; d < HD; d++)
					dot += q[d] * ks[c0 + c][d];
				s[c] = j <= i ? dot : -INFINITY;
				cm = fmaxf(cm, s[c]);
			}
			if (cm == -INFINITY)
				continue;
			float corr = __expf(m - cm);
			l *= corr;
#pragma unroll
			for (int d = 0; d < HD; d++)
				acc[d] *= corr;
#pragma unroll
			for (int c = 0; c < ATT_CHUNK; c++) {
				float p = __expf(s[c] - cm);
				l += p;
#pragma unroll
				for (int d = 0; d < HD; d++)
					acc[d] += p * vs[c0 + c][d];
			}
			m = cm;
		}
	}
	if (!live)
		return;
	float rl = 1.0f / l;
	__nv_bfloat162 *o2 = (__nv_bfloat162 *)(out + ((size_t)b * a.T + i) *
	    a.H * a.hd + (size_t)h * a.hd);
#pragma unroll
	for (int d = 0; d < HD / 2; d++)
		o2[d] = __floats2bfloat162_rn(acc[2 * d] * rl, acc[2 * d + 1] * rl);
	lse[((size_t)b * a.H + h) * a.T + i] = m + logf(l);
}

// dQ, one thread a query row; also writes dsum = rowsum(dO * O), which
// the dK/dV kernel reads after it.
// grid (T / ATT_BQ, H, B), ATT_BQ threads.
template <int HD>
__global__ void __launch_bounds__(ATT_BQ)
attn_bwd_dq_kernel(bf16 *dqkv, float *dsum, const bf16 *dout, const bf16 *qkv,
    const bf16 *out, const float *lse, struct att_dims a)
{
	extern __shared__ float smem[];
	float (*ks)[HD + 1] = (float (*)[HD + 1])smem;
	float (*vs)[HD + 1] = ks + ATT_BK;
	int b = blockIdx.z, h = blockIdx.y;
	int kvh = h / (a.H / a.KV);
	int q0 = blockIdx.x * ATT_BQ;
	int i = q0 + threadIdx.x;
	bool live = i < a.T;
	const bf16 *seq = qkv + (size_t)b * a.T * a.width;
	const bf16 *kbase = seq + (size_t)(a.H + kvh) * a.hd;
	const bf16 *vbase = seq + (size_t)(a.H + a.KV + kvh) * a.hd;
	float q[HD], g[HD], dq[HD];
	float L = 0.0f, D = 0.0f;
	size_t orow = ((size_t)b * a.T + (live ? i : 0)) * a.H * a.hd +
	    (size_t)h * a.hd;

	if (live) {
		float o[HD];
		load_row<HD>(q, seq + (size_t)i * a.width + (size_t)h * a.hd);
		load_row<HD>(g, dout + orow);
		load_row<HD>(o, out + orow);
#pragma unroll
		for (int d = 0; d < HD; d++)
			D += g[d] * o[d];
		L = lse[((size_t)b * a.H + h) * a.T + i];
		dsum[((size_t)b * a.H + h) * a.T + i] = D;
	} else {
		for (int d = 0; d < HD; d++)
			q[d] = g[d] = 0.0f;
	}
#pragma unroll
	for (int d = 0; d < HD; d++) {
		q[d] *= a.scale;
		dq[d] = 0.0f;
	}
	int last = min(a.T, q0 + ATT_BQ);
	for (int k0 = 0; k0 < last; k0 += ATT_BK) {
		__syncthreads();
		load_tile<HD>(ks, kbase, k0, a.T, a.width);
		load_tile<HD>(vs, vbase, k0, a.T, a.width);
		__syncthreads();
		int jmax = live ? min(ATT_BK, i - k0 + 1) : 0;
		for (int c = 0; c < jmax; c++) {
			float s = 0.0f, dp = 0.0f;
#pragma unroll
			for (int d = 0; d < HD; d++) {
				s += q[d] * ks[c][d];
				dp += g[d] * vs[c][d];
			}
			float ds = __expf(s - L) * (dp - D);
#pragma unroll
			for (int d = 0; d < HD; d++)
				dq[d] += ds * ks[c][d];
		}
	}
	if (!live)
		return;
	__nv_bfloat162 *d2 = (__nv_bfloat162 *)(dqkv + ((size_t)b * a.T + i) *
	    a.width + (size_t)h * a.hd);
#pragma unroll
	for (int d = 0; d < HD / 2; d++)
		d2[d] = __floats2bfloat162_rn(dq[2 * d] * a.scale,
		    dq[2 * d + 1] * a.scale);
}

// dK and dV, one thread a key row, summed over the query heads that share
// the key/value head.  The thread's own k and v rows sit in shared memory
// (padded rows: no bank conflicts); the query tile is broadcast.
// grid (T / ATT_BK, KV, B), ATT_BK threads.
template <int HD>
__global__ void __launch_bounds__(ATT_BK)
attn_bwd_dkv_kernel(bf16 *dqkv, const float *dsum, const bf16 *dout,
    const bf16 *qkv, const float *lse, struct att_dims a)
{
	extern __shared__ float smem[];
	float (*kr)[HD + 1] = (float (*)[HD + 1])smem;
	float (*vr)[HD + 1] = kr + ATT_BK;
	float (*qs)[HD + 1] = vr + ATT_BK;
	float (*gs)[HD + 1] = qs + ATT_BQ;
	float *Ls = (float *)(gs + ATT_BQ), *Ds = Ls + ATT_BQ;
	int b = blockIdx.z, kvh = blockIdx.y;
	int k0 = blockIdx.x * ATT_BK;
	int j = k0 + threadIdx.x;
	int t = threadIdx.x;
	int group = a.H / a.KV;
	const bf16 *seq = qkv + (size_t)b * a.T * a.width;
	float dk[HD], dv[HD];

	load_tile<HD>(kr, seq + (size_t)(a.H + kvh) * a.hd, k0, a.T, a.width);
	load_tile<HD>(vr, seq + (size_t)(a.H + a.KV + kvh) * a.hd, k0, a.T,
	    a.width);
#pragma unroll
	for (int d = 0; d < HD; d++)
		dk[d] = dv[d] = 0.0f;
	for (int h = kvh * group; h < (kvh + 1) * group; h++) {
		const bf16 *qbase = seq + (size_t)h * a.hd;
		const bf16 *gbase = dout + (size_t)b * a.T * a.H * a.hd +
		    (size_t)h * a.hd;
		const float *Lrow = lse + ((size_t)b * a.H + h) * a.T;
		const float *Drow = dsum + ((size_t)b * a.H + h) * a.T;
		// Queries before the block's first key see none of its keys.
		for (int q0 = k0 - k0 % ATT_BQ; q0 < a.T; q0 += ATT_BQ) {
			__syncthreads();
			load_tile<HD>(qs, qbase, q0, a.T, a.width);
			load_tile<HD>(gs, gbase, q0, a.T, a.H * a.hd);
			for (int r = threadIdx.x; r < ATT_BQ; r += blockDim.x) {
				Ls[r] = q0 + r < a.T ? Lrow[q0 + r] : 0.0f;
				Ds[r] = q0 + r < a.T ? Drow[q0 + r] : 0.0f;
			}
			__syncthreads();
			if (j >= a.T)
				continue;
			int rmin = max(0, j - q0);
			int rmax = min(ATT_BQ, a.T - q0);
			for (int r = rmin; r < rmax; r++) {
				float s = 0.0f, dp = 0.0f;
#pragma unroll
				for (int d = 0; d < HD; d++) {
					s += qs[r][d] * kr[t][d];
					dp += gs[r][d] * vr[t][d];
				}
				float p = __expf(s * a.scale - Ls[r]);
				float ds = p * (dp - Ds[r]);
#pragma unroll
				for (int d = 0; d < HD; d++) {
					dv[d] += p * gs[r][d];
					dk[d] += ds * qs[r][d];
				}
			}
		}
	}
	if (j >= a.T)
		return;
	bf16 *row = dqkv + ((size_t)b * a.T + j) * a.width;
	__nv_bfloat162 *k2 = (__nv_bfloat162 *)(row + (size_t)(a.H + kvh) * a.hd);
	__nv_bfloat162 *v2 = (__nv_bfloat162 *)(row +
	    (size_t)(a.H + a.KV + kvh) * a.hd);
#pragma unroll
	for (int d = 0; d < HD / 2; d++) {
		k2[d] = __floats2bfloat162_rn(dk[2 * d] * a.scale,
		    dk[2 * d + 1] * a.scale);
		v2[d] = __floats2bfloat162_rn(dv[2 * d], dv[2 * d + 1]);
	}
}

// launchers

template <int HD>
static int attn_fwd_launch(bf16 *out, float *lse, const bf16 *qkv, int B,
    struct att_dims a, cudaStream_t s)
{
	dim3 grid((a.T + ATT_BQ - 1) / ATT_BQ, a.H, B);
	int sh = 2 * ATT_BK * (HD + 1) * (int)sizeof(float);
	VK_CHECK(cudaFuncSetAttribute(attn_fwd_kernel<HD>,
	    cudaFuncAttributeMaxDynamicSharedMemorySize, sh));
	attn_fwd_kernel<HD><<<grid, ATT_BQ, sh, s>>>(out, lse, qkv, a);
	VK_CHECK_LAUNCH("attn_fwd_kernel");
	return 0;
}

template <int HD>
static int attn_bwd_launch(bf16 *dqkv, float *dsum, const bf16 *dout,
    const bf16 *qkv, const bf16 *out, const float *lse, int B,
    struct att_dims a, cudaStream_t s)
{
	dim3 gq((a.T + ATT_BQ - 1) / ATT_BQ, a.H, B);
	int sq = 2 * ATT_BK * (HD + 1) * (int)sizeof(float);
	int sk = (2 * ATT_BK + 2 * ATT_BQ) * (HD + 1) * (int)sizeof(float) +
	    2 * ATT_BQ * (int)sizeof(float);
	VK_CHECK(cudaFuncSetAttribute(attn_bwd_dq_kernel<HD>,
	    cudaFuncAttributeMaxDynamicSharedMemorySize, sq));
	VK_CHECK(cudaFuncSetAttribute(attn_bwd_dkv_kernel<HD>,
	    cudaFuncAttributeMaxDynamicSharedMemorySize, sk));
	attn_bwd_dq_kernel<HD><<<gq, ATT_BQ, sq, s>>>(dqkv, dsum, dout, qkv, out,
	    lse, a);
	VK_CHECK_LAUNCH("attn_bwd_dq_kernel");
	dim3 gk((a.T + ATT_BK - 1) / ATT_BK, a.KV, B);
	attn_bwd_dkv_kernel<HD><<<gk, ATT_BK, sk, s>>>(dqkv, dsum, dout, qkv, lse,
	    a);
	VK_CHECK_LAUNCH("attn_bwd_dkv_kernel");
	return 0;
}

static int dims(struct att_dims *a, int T, int H, int KV, int hd)
{
	a->T = T;
	a->H = H;
	a->KV = KV;
	a->hd = hd;
	a->width = (H + 2 * KV) * hd;
	a->scale = 1.0f / sqrtf((float)hd);
	// A thread keeps up to three head vectors in registers: beyond 64
	// they would spill to local memory.
	if (hd != 32 && hd != 64) {
		vk_set_error("attention: head size %d (this backend has 32 and "
		    "64)", hd);
		return VK_ERR_NOTIMPL;
	}
	return 0;
}

int vk_attn_fwd_simple(bf16 *out, float *lse, const bf16 *qkv, int B, int T,
    int H, int KV, int hd, cudaStream_t s)
{
	struct att_dims a;
	VK_TRY(dims(&a, T, H, KV, hd));
	switch (hd) {
	case 32: return attn_fwd_launch<32>(out, lse, qkv, B, a, s);
	default: return attn_fwd_launch<64>(out, lse, qkv, B, a, s);
	}
}

int vk_attn_bwd_simple(bf16 *dqkv, float *dsum, const bf16 *dout,
    const bf16 *qkv, const bf16 *out, const float *lse, int B, int T, int H,
    int KV, int hd, cudaStream_t s)
{
	struct att_dims a;
	VK_TRY(dims(&a, T, H, KV, hd));
	switch (hd) {
	case 32: return attn_bwd_launch<32>(dqkv, dsum, dout, qkv, out, lse, B, a, s);
	default: return attn_bwd_launch<64>(dqkv, dsum, dout, qkv, out, lse, B, a, s);
	}
}
