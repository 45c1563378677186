// rmsnorm.cu: RMSNorm forward fused with the residual add, and backward
// fused with the residual gradient's accumulation and its bf16 copy.
//
// One warp a row.  The forward pass reads back the sums it has just
// written (from L1), the backward pass reads its row twice.
#include "cuda_common.cuh"
#include "ops.cuh"

#define NORM_WARPS 8

// kernels

__global__ void rmsnorm_fwd_kernel(float *res_out, const float *res_in,
    const bf16 *delta, const float *w, bf16 *out, float *rstd, int N, int C,
    float eps)
{
	int row = blockIdx.x * NORM_WARPS + (threadIdx.x >> 5);
	int lane = threadIdx.x & 31;
	if (row >= N)
		return;
	const float *x = res_in + (size_t)row * C;
	float *y = res_out + (size_t)row * C;
	const bf16 *d = delta ? delta + (size_t)row * C : nullptr;
	float ss = 0.0f;
	for (int i = lane; i < C; i += 32) {
		float v = x[i];
		if (d)
			v += __bfloat162float(d[i]);
		y[i] = v;
		ss += v * v;
	}
	ss = vk_warp_sum(ss);
	float r = rsqrtf(ss / (float)C + eps);
	if (lane == 0)
		rstd[row] = r;
	bf16 *o = out + (size_t)row * C;
	// Each lane reads back only the values it wrote itself.
	for (int i = lane; i < C; i += 32)
		o[i] = __float2bfloat16(y[i] * r * w[i]);
}

// dx = rstd * (w*dout - xhat * mean(w*dout*xhat)), xhat = x * rstd.
// dw partial sums stay in shared memory for the block's rows and are added
// to the global gradient once a block.
__global__ void rmsnorm_bwd_kernel(float *dres, bf16 *dres_bf, float *dw,
    const bf16 *dout, const float *x, const float *w, const float *rstd,
    int N, int C, int rows_per_block)
{
	extern __shared__ float sdw[];	// C
	int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
	for (int i = threadIdx.x; i < C; i += blockDim.x)
		sdw[i] = 0.0f;
	__syncthreads();
	int r0 = blockIdx.x * rows_per_block;
	int r1 = min(N, r0 + rows_per_block);
	for (int row = r0 + wid; row < r1; row += NORM_WARPS) {
		const float *xr = x + (size_t)row * C;
		const bf16 *gr = dout + (size_t)row * C;
		float r = rstd[row];
		float dot = 0.0f;
		for (int i = lane; i < C; i += 32) {
			float g = __bfloat162float(gr[i]);
			float xh = xr[i] * r;
			dot += g * w[i] * xh;
			atomicAdd(&sdw[i], g * xh);	// shared-memory atomic
		}
		dot = vk_warp_sum(dot) / (float)C;
		float *dr = dres + (size_t)row * C;
		bf16 *db = dres_bf + (size_t)row * C;
		for (int i = lane; i < C; i += 32) {
			float g = __bfloat162float(gr[i]);
			float xh = xr[i] * r;
			float v = dr[i] + r * (g * w[i] - xh * dot);
			dr[i] = v;
			db[i] = __float2bfloat16(v);
		}
	}
	__syncthreads();
	for (int i = threadIdx.x; i < C; i += blockDim.x)
		atomicAdd(&dw[i], sdw[i]);
}

__global__ void f32_to_bf16_kernel(bf16 *out, const float *in, size_t n)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	size_t stride = (size_t)gridDim.x * blockDim.x;
	for (; i < n; i += stride)
		out[i] = __float2bfloat16(in[i]);
}

// launchers

int vk_rmsnorm_fwd(float *res_out, const float *res_in, const bf16 *delta,
    const float *w, bf16 *out, float *rstd, int N, int C, float eps,
    cudaStream_t s)
{
	int blocks = (N + NORM_WARPS - 1) / NORM_WARPS;
	rmsnorm_fwd_kernel<<<blocks, 32 * NORM_WARPS, 0, s>>>(res_out, res_in,
	    delta, w, out, rstd, N, C, eps);
	VK_CHECK_LAUNCH("rmsnorm_fwd_kernel");
	return 0;
}

int vk_rmsnorm_bwd(float *dres, bf16 *dres_bf, float *dw, const bf16 *dout,
    const float *x, const float *w, const float *rstd, int N, int C,
    cudaStream_t s)
{
	// Enough blocks to fill the chip, few enough that the dw atomics stay
	// cheap: 64 rows a block.
	int rpb = 64;
	int blocks = (N + rpb - 1) / rpb;
	size_t sh = (size_t)C * sizeof(float);
	if (sh > 48 * 1024) {
		VK_CHECK(cudaFuncSetAttribute(rmsnorm_bwd_kernel,
		    cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sh));
	}
	rmsnorm_bwd_kernel<<<blocks, 32 * NORM_WARPS, sh, s>>>(dres, dres_bf, dw,
	    dout, x, w, rstd, N, C, rpb);
	VK_CHECK_LAUNCH("rmsnorm_bwd_kernel");
	return 0;
}

int vk_f32_to_bf16(bf16 *out, const float *in, size_t n, cudaStream_t s)
{
	size_t blocks = (n + 255) / 256;
	if (blocks > 65536)
		blocks = 65536;
	f32_to_bf16_kernel<<<(unsigned)blocks, 256, 0, s>>>(out, in, n);
	VK_CHECK_LAUNCH("f32_to_bf16_kernel");
	return 0;
}
