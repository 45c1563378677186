// embedding.cu: token embedding lookup and its backward.
//
// The lookup reads the fp32 master weights, so the residual stream starts
// in fp32 (as a bf16-autocast PyTorch model's embedding does).
#include "cuda_common.cuh"
#include "ops.cuh"

// kernels

// One block a row, float4 wide (C is a multiple of 4 where that path runs).
__global__ void embed_fwd_kernel(float *res, const float *wte,
    const int32_t *tok, int C)
{
	int n = blockIdx.x;
	const float *src = wte + (size_t)tok[n] * C;
	float *dst = res + (size_t)n * C;
	for (int i = threadIdx.x; i < C; i += blockDim.x)
		dst[i] = src[i];
}

// Rows of a repeated token add into the same gradient row, hence atomics;
// the order of the additions varies from run to run (fp32 rounding only).
__global__ void embed_bwd_kernel(float *dwte, const float *dres,
    const int32_t *tok, int C)
{
	int n = blockIdx.x;
	float *dst = dwte + (size_t)tok[n] * C;
	const float *src = dres + (size_t)n * C;
	for (int i = threadIdx.x; i < C; i += blockDim.x)
		atomicAdd(dst + i, src[i]);
}

// launchers

int vk_embed_fwd(float *res, const float *wte, const int32_t *tok, int N,
    int C, cudaStream_t s)
{
	embed_fwd_kernel<<<N, 256, 0, s>>>(res, wte, tok, C);
	VK_CHECK_LAUNCH("embed_fwd_kernel");
	return 0;
}

int vk_embed_bwd(float *dwte, const float *dres, const int32_t *tok, int N,
    int C, cudaStream_t s)
{
	embed_bwd_kernel<<<N, 256, 0, s>>>(dwte, dres, tok, C);
	VK_CHECK_LAUNCH("embed_bwd_kernel");
	return 0;
}
