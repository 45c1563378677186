// xent.cu: softmax cross-entropy fused with its gradient.  The
// probabilities are never stored: a block reads its row of logits once to
// find the log-sum-exp (an online max and sum), and a second time (from
// the cache) to write the gradient and the entropy's sum.
#include <cmath>

#include "cuda_common.cuh"
#include "ops.cuh"

#define XENT_THREADS 512

// kernels

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
	xent_kernel<<<N, XENT_THREADS, 0, s>>>(dlogits, loss, ent, logits, tgt, V,
	    Vu, dscale);
	VK_CHECK_LAUNCH("xent_kernel");
	return 0;
}
