// cuda_common.cuh: error checking shared by every kernel file.
//
// VK_CHECK wraps a CUDA runtime call; on failure it records the call, the
// file and the line in the backend's per-thread error buffer and returns
// V_ERR_DEVICE from the enclosing function.  VK_CHECK_LAUNCH does the same
// for the last kernel launch, naming the kernel.
#ifndef VESPER_CUDA_COMMON_CUH
#define VESPER_CUDA_COMMON_CUH

#include <cuda_runtime.h>

#define VK_ERR_DEVICE (-10)	// V_ERR_DEVICE in lib/verr.h

void vk_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *vk_last_error(void);

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
	if (vk_e_ != cudaSuccess) { \
		vk_set_error("%s:%d: kernel %s: %s", __FILE__, __LINE__, name, \
		    cudaGetErrorString(vk_e_)); \
		return VK_ERR_DEVICE; \
	} \
} while (0)

int vk_saxpy(size_t n, float a, const float *x, float *y);

#endif
