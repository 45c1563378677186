// velvet.cu: the Velvet optimizer's step (AdamW, as torch.optim.AdamW
// computes it) as one memory-bound pass over every parameter: read the
// gradient, both moments and the fp32 master weight, write the moments,
// the master weight and its bf16 copy (28 bytes a parameter, 4 fewer than
// a separate cast would cost).
//
// Work is a list of chunks, each inside one tensor (the multi-tensor
// pattern): a block takes a chunk, so the weight-decay choice is one
// branch a block and the tensors need no padding.
#include <cmath>

#include "cuda_common.cuh"
#include "ops.cuh"

#define VELVET_THREADS 256

// kernels

__global__ void __launch_bounds__(VELVET_THREADS)
velvet_kernel(float *p, bf16 *pbf, const float *g, float *m, float *v,
    const struct vk_chunk *chunks, struct vk_adamw h)
{
	struct vk_chunk c = chunks[blockIdx.x];
	float decay = c.decay || h.decay_all ?
	    1.0f - h.lr * h.weight_decay : 1.0f;
	float step = h.lr / h.bc1;
	float rbc2 = rsqrtf(h.bc2);
	size_t base = c.off;
	// float4 where the chunk starts 16-byte aligned and holds whole
	// vectors; else element by element.
	if ((base & 3) == 0 && (c.len & 3) == 0) {
		float4 *p4 = (float4 *)(p + base);
		const float4 *g4 = (const float4 *)(g + base);
		float4 *m4 = (float4 *)(m + base);
		float4 *v4 = (float4 *)(v + base);
		__nv_bfloat162 *b2 = (__nv_bfloat162 *)(pbf + base);
		for (int i = threadIdx.x; i < c.len / 4; i += blockDim.x) {
			float4 gg = g4[i], mm = m4[i], vv = v4[i], pp = p4[i];
			float ga[4] = { gg.x, gg.y, gg.z, gg.w };
			float ma[4] = { mm.x, mm.y, mm.z, mm.w };
			float va[4] = { vv.x, vv.y, vv.z, vv.w };
			float pa[4] = { pp.x, pp.y, pp.z, pp.w };
#pragma unroll
			for (int k = 0; k < 4; k++) {
				float gk = ga[k] * h.grad_mul;
				ma[k] = h.beta1 * ma[k] + (1.0f - h.beta1) * gk;
				va[k] = h.beta2 * va[k] + (1.0f - h.beta2) * gk * gk;
				float den = sqrtf(va[k]) * rbc2 + h.eps;
				pa[k] = pa[k] * decay - step * ma[k] / den;
			}
			m4[i] = make_float4(ma[0], ma[1], ma[2], ma[3]);
			v4[i] = make_float4(va[0], va[1], va[2], va[3]);
			p4[i] = make_float4(pa[0], pa[1], pa[2], pa[3]);
			b2[2 * i] = __floats2bfloat162_rn(pa[0], pa[1]);
			b2[2 * i + 1] = __floats2bfloat162_rn(pa[2], pa[3]);
		}
		return;
	}
	for (int i = threadIdx.x; i < c.len; i += blockDim.x) {
		size_t j = base + i;
		float gk = g[j] * h.grad_mul;
		float mm = h.beta1 * m[j] + (1.0f - h.beta1) * gk;
		float vv = h.beta2 * v[j] + (1.0f - h.beta2) * gk * gk;
		float den = sqrtf(vv) * rbc2 + h.eps;
		float pp = p[j] * decay - step * mm / den;
		m[j] = mm;
		v[j] = vv;
		p[j] = pp;
		pbf[j] = __float2bfloat16(pp);
	}
}

// launcher

int vk_velvet(float *p, bf16 *pbf, const float *g, float *m, float *v,
    const struct vk_chunk *chunks, int nchunks, const struct vk_adamw *h,
    cudaStream_t s)
{
	velvet_kernel<<<nchunks, VELVET_THREADS, 0, s>>>(p, pbf, g, m, v, chunks,
	    *h);
	VK_CHECK_LAUNCH("velvet_kernel");
	return 0;
}
