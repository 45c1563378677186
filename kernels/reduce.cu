// reduce.cu: the sum (or sum of squares) of a long fp32 array in two
// fixed-shape passes, so the result is the same from run to run (no
// atomics): the global gradient norm and the mean loss use it.
#include "cuda_common.cuh"
#include "ops.cuh"

// kernels

__global__ void sum_part_kernel(float *part, const float *x, size_t n,
    int squares)
{
	__shared__ float sh[32];
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	size_t stride = (size_t)gridDim.x * blockDim.x;
	// fp32 partials of a few hundred thousand terms each; the blocks'
	// partial sums are then added in one block.
	float acc = 0.0f;
	for (; i < n; i += stride) {
		float v = x[i];
		acc += squares ? v * v : v;
	}
	acc = vk_block_sum(acc, sh);
	if (threadIdx.x == 0)
		part[blockIdx.x] = acc;
}

__global__ void sum_final_kernel(float *out, const float *part, int nparts)
{
	__shared__ float sh[32];
	float acc = 0.0f;
	for (int i = threadIdx.x; i < nparts; i += blockDim.x)
		acc += part[i];
	acc = vk_block_sum(acc, sh);
	if (threadIdx.x == 0)
		out[0] = acc;
}

// launcher

int vk_sum(float *out, float *part, const float *x, size_t n, int squares,
    cudaStream_t s)
{
	sum_part_kernel<<<VK_REDUCE_BLOCKS, 512, 0, s>>>(part, x, n, squares);
	VK_CHECK_LAUNCH("sum_part_kernel");
	sum_final_kernel<<<1, 512, 0, s>>>(out, part, VK_REDUCE_BLOCKS);
	VK_CHECK_LAUNCH("sum_final_kernel");
	return 0;
}
