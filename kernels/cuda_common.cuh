// cuda_common.cuh: error checking shared by every kernel file.
//
// VK_CHECK wraps a CUDA runtime call; on failure it records the call, the
// file and the line in the backend's per-thread error buffer and returns
// V_ERR_DEVICE from the enclosing function.  VK_CHECK_LAUNCH does the same
// for the last kernel launch, naming the kernel (and, with VESPER_CUDA_SYNC
// set, waits for it, so that a fault inside it is caught there too).
// VK_CHECK_BLAS is
// VK_CHECK for cuBLAS and cuBLASLt calls.
#ifndef VESPER_CUDA_COMMON_CUH
#define VESPER_CUDA_COMMON_CUH

#include <cuda_runtime.h>

#define VK_ERR_DEVICE (-10)	// V_ERR_DEVICE in lib/verr.h
#define VK_ERR_NOMEM (-1)	// V_ERR_NOMEM
#define VK_ERR_ARG (-4)		// V_ERR_ARG
#define VK_ERR_RANGE (-5)	// V_ERR_RANGE
#define VK_ERR_NOTIMPL (-15)	// V_ERR_NOTIMPL

void vk_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void vk_add_context(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *vk_last_error(void);
// VESPER_CUDA_SYNC set: VK_CHECK_LAUNCH waits for each kernel (error.cu).
extern const int vk_sync_launches;

#define VK_CHECK(call) do { \
	cudaError_t vk_e_ = (call); \
	if (vk_e_ != cudaSuccess) { \
		vk_set_error("%s:%d: %s: %s", __FILE__, __LINE__, #call, \
		    cudaGetErrorString(vk_e_)); \
		return VK_ERR_DEVICE; \
	} \
} while (0)

#define VK_CHECK_LAUNCH(name) do { \
	cudaError_t vk_e_ = cudaGetLastError(); \
	if (vk_e_ == cudaSuccess && vk_sync_launches) \
		vk_e_ = cudaDeviceSynchronize(); \
	if (vk_e_ != cudaSuccess) { \
		vk_set_error("%s:%d: kernel %s: %s", __FILE__, __LINE__, name, \
		    cudaGetErrorString(vk_e_)); \
		return VK_ERR_DEVICE; \
	} \
} while (0)

#define VK_CHECK_BLAS(call) do { \
	int vk_s_ = (int)(call); \
	if (vk_s_ != 0) { \
		vk_set_error("%s:%d: %s: cuBLAS status %d", __FILE__, __LINE__, \
		    #call, vk_s_); \
		return VK_ERR_DEVICE; \
	} \
} while (0)

// Propagate a launcher's failure (its message is already set).
#define VK_TRY(call) do { \
	int vk_r_ = (call); \
	if (vk_r_ != 0) \
		return vk_r_; \
} while (0)

int vk_saxpy(size_t n, float a, const float *x, float *y);

#ifdef __CUDACC__
// Sums over a warp, and over a block of at most 1024 threads (every thread
// gets the total).  sh: 32 floats of shared memory.
__device__ __forceinline__ float vk_warp_sum(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

__device__ __forceinline__ float vk_warp_max(float v)
{
	for (int o = 16; o > 0; o >>= 1)
		v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
	return v;
}

__device__ __forceinline__ float vk_block_sum(float v, float *sh)
{
	int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
	int nw = (blockDim.x + 31) >> 5;
	v = vk_warp_sum(v);
	__syncthreads();	// sh may still be read by a previous call
	if (lane == 0)
		sh[w] = v;
	__syncthreads();
	v = lane < nw ? sh[lane] : 0.0f;
	return vk_warp_sum(v);
}

__device__ __forceinline__ float vk_block_max(float v, float *sh)
{
	int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
	int nw = (blockDim.x + 31) >> 5;
	v = vk_warp_max(v);
	__syncthreads();
	if (lane == 0)
		sh[w] = v;
	__syncthreads();
	v = lane < nw ? sh[lane] : -INFINITY;
	return vk_warp_max(v);
}
#endif

#endif
