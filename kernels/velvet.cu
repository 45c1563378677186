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

// One element: the same operations, in the same order, as lib/velvet.c's
// velvet_update (m by torch's lerp form), so the two agree to rounding.
__device__ __forceinline__ void adamw_one(float &p, float &m, float &v,
    float g, const struct vk_adamw &h, float decay)
{
	float gi = g * h.grad_mul;
	if (h.sparse && g == 0.0f)
		return;
	float pi = p * decay;
	m = m + h.one_minus_b1 * (gi - m);
	v = h.beta2 * v + h.one_minus_b2 * gi * gi;
	float den = sqrtf(v) / h.bc2_sqrt + h.eps;
	p = pi - h.step_size * (m / den);
}

__global__ void __launch_bounds__(VELVET_THREADS)
velvet_kernel(float *p, bf16 *pbf, const float *g, float *m, float *v,
    const struct vk_chunk *chunks, struct vk_adamw h)
{
	struct vk_chunk c = chunks[blockIdx.x];
	float decay = c.decay || h.decay_all ? 1.0f - h.lr * h.weight_decay :
	    1.0f;
	size_t base = c.off;
	// 16-byte accesses where the chunk starts aligned and holds whole
	// vectors (every tensor of the presets); else element by element.
	if ((base & 3) == 0 && (c.len & 3) == 0) {
		float4 *p4 = (float4 *)(p + base);
		const float4 *g4 = (const float4 *)(g + base);
		float4 *m4 = (float4 *)(m + base);
		float4 *v4 = (float4 *)(v + base);
		uint2 *b4 = (uint2 *)(pbf + base);
		// Every byte is read once and written once: streaming loads
		// and stores (evict first) keep the cache for other work, and
		// two iterations' loads are in flight at once.
#pragma unroll 2
		for (int i = threadIdx.x; i < c.len / 4; i += blockDim.x) {
			float4 gg = __ldcs(g4 + i), mm = __ldcs(m4 + i);
			float4 vv = __ldcs(v4 + i), pp = __ldcs(p4 + i);
			adamw_one(pp.x, mm.x, vv.x, gg.x, h, decay);
			adamw_one(pp.y, mm.y, vv.y, gg.y, h, decay);
			adamw_one(pp.z, mm.z, vv.z, gg.z, h, decay);
			adamw_one(pp.w, mm.w, vv.w, gg.w, h, decay);
			__stcs(m4 + i, mm);
			__stcs(v4 + i, vv);
			__stcs(p4 + i, pp);
			__nv_bfloat162 lo = __floats2bfloat162_rn(pp.x, pp.y);
			__nv_bfloat162 hi = __floats2bfloat162_rn(pp.z, pp.w);
			uint2 o;
			o.x = *(unsigned *)&lo;
			o.y = *(unsigned *)&hi;
			__stcs(b4 + i, o);
		}
		return;
	}
	for (int i = threadIdx.x; i < c.len; i += blockDim.x) {
		size_t j = base + i;
		float pp = p[j], mm = m[j], vv = v[j];
		adamw_one(pp, mm, vv, g[j], h, decay);
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
