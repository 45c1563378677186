// xent.cu: softmax cross-entropy fused with its gradient.  The
// probabilities are never stored: a block reads its row of logits once to
// find the log-sum-exp (an online max and sum), and a second time (from
// the cache) to write the gradient and the entropy's sum.
#include <cmath>

#include "cuda_common.cuh"
#include "ops.cuh"

#define XENT_THREADS 256

// kernels

// Rows whose length is a multiple of 8: 16-byte loads and stores, eight
// logits at a time.
__global__ void __launch_bounds__(XENT_THREADS)
xent_vec_kernel(bf16 *dlogits, float *loss, float *ent, const bf16 *logits,
    const int32_t *tgt, int V, int Vu, float dscale)
{
	__shared__ float sh[32];
	int n = blockIdx.x;
	const uint4 *z4 = (const uint4 *)(logits + (size_t)n * V);
	float m = -INFINITY, sum = 0.0f;
	for (int q = threadIdx.x; q < V / 8; q += blockDim.x) {
		uint4 u = z4[q];
		const __nv_bfloat162 *h2 = (const __nv_bfloat162 *)&u;
		float v[8], mv = -INFINITY;
#pragma unroll
		for (int k = 0; k < 4; k++) {
			float2 f = __bfloat1622float2(h2[k]);
			v[2 * k] = q * 8 + 2 * k < Vu ? f.x : -INFINITY;
			v[2 * k + 1] = q * 8 + 2 * k + 1 < Vu ? f.y : -INFINITY;
			mv = fmaxf(mv, fmaxf(v[2 * k], v[2 * k + 1]));
		}
		if (mv == -INFINITY)
			continue;
		if (mv > m) {
			sum *= __expf(m - mv);
			m = mv;
		}
#pragma unroll
		for (int k = 0; k < 8; k++)
			sum += __expf(v[k] - m);
	}
	float gm = vk_block_max(m, sh);
	sum = m == -INFINITY ? 0.0f : sum * __expf(m - gm);
	float gs = vk_block_sum(sum, sh);
	float lse = gm + logf(gs);

	int t = tgt[n];
	float pz = 0.0f;
	uint4 *d4 = dlogits ? (uint4 *)(dlogits + (size_t)n * V) : nullptr;
	for (int q = threadIdx.x; q < V / 8; q += blockDim.x) {
		uint4 u = z4[q], o;
		const __nv_bfloat162 *h2 = (const __nv_bfloat162 *)&u;
		__nv_bfloat162 *o2 = (__nv_bfloat162 *)&o;
#pragma unroll
		for (int k = 0; k < 4; k++) {
			float2 f = __bfloat1622float2(h2[k]);
			int i0 = q * 8 + 2 * k, i1 = i0 + 1;
			float p0 = i0 < Vu ? __expf(f.x - lse) : 0.0f;
			float p1 = i1 < Vu ? __expf(f.y - lse) : 0.0f;
			pz += p0 * f.x + p1 * f.y;
			o2[k] = __floats2bfloat162_rn(
			    (p0 - (i0 == t ? 1.0f : 0.0f)) * dscale,
			    (p1 - (i1 == t ? 1.0f : 0.0f)) * dscale);
		}
		if (d4)
			d4[q] = o;
	}
	pz = vk_block_sum(pz, sh);
	if (threadIdx.x == 0) {
		loss[n] = lse - __bfloat162float(logits[(size_t)n * V + t]);
		ent[n] = lse - pz;
	}
}

// Any row length, element by element.
__global__ void __launch_bounds__(XENT_THREADS)
xent_kernel(bf16 *dlogits, float *loss, float *ent, const bf16 *logits,
    const int32_t *tgt, int V, int Vu, float dscale)
{
	__shared__ float sh[32];
	int n = blockIdx.x;
	const bf16 *z = logits + (size_t)n * V;
	float m = -INFINITY, sum = 0.0f;
	for (int i = threadIdx.x; i < Vu; i += blockDim.x) {
		float v = __bfloat162float(z[i]);
		if (v > m) {
			sum = sum * __expf(m - v) + 1.0f;
			m = v;
		} else {
			sum += __expf(v - m);
		}
	}
	float gm = vk_block_max(m, sh);
	sum = m == -INFINITY ? 0.0f : sum * __expf(m - gm);
	float gs = vk_block_sum(sum, sh);
	float lse = gm + logf(gs);

	int t = tgt[n];
	float pz = 0.0f;
	bf16 *dz = dlogits ? dlogits + (size_t)n * V : nullptr;
	for (int i = threadIdx.x; i < V; i += blockDim.x) {
		if (i >= Vu) {
			if (dz)
				dz[i] = __float2bfloat16(0.0f);
			continue;
		}
		float v = __bfloat162float(z[i]);
		float p = __expf(v - lse);
		pz += p * v;
		if (dz)
			dz[i] = __float2bfloat16((p - (i == t ? 1.0f : 0.0f)) * dscale);
	}
	pz = vk_block_sum(pz, sh);
	if (threadIdx.x == 0) {
		loss[n] = lse - __bfloat162float(z[t]);
		ent[n] = lse - pz;
	}
}

// launcher

int vk_xent(bf16 *dlogits, float *loss, float *ent, const bf16 *logits,
    const int32_t *tgt, int N, int V, int Vu, float dscale, cudaStream_t s)
{
	if (V % 8 == 0) {
		xent_vec_kernel<<<N, XENT_THREADS, 0, s>>>(dlogits, loss, ent, logits,
		    tgt, V, Vu, dscale);
		VK_CHECK_LAUNCH("xent_vec_kernel");
		return 0;
	}
	xent_kernel<<<N, XENT_THREADS, 0, s>>>(dlogits, loss, ent, logits, tgt, V,
	    Vu, dscale);
	VK_CHECK_LAUNCH("xent_kernel");
	return 0;
}
