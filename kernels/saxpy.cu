// saxpy.cu: y = a*x + y, the backend's smoke test.
#include <cuda_runtime.h>

#include "cuda_common.cuh"

// kernel
__global__ void saxpy_kernel(size_t n, float a, const float *x, float *y)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < n)
		y[i] = a * x[i] + y[i];
}

// launcher
static int saxpy_launch(size_t n, float a, const float *dx, float *dy,
    cudaStream_t s)
{
	unsigned blocks = (unsigned)((n + 255) / 256);
	saxpy_kernel<<<blocks, 256, 0, s>>>(n, a, dx, dy);
	VK_CHECK_LAUNCH("saxpy_kernel");
	return 0;
}

// op entry: host buffers in and out
int vk_saxpy(size_t n, float a, const float *x, float *y)
{
	float *dx = nullptr, *dy = nullptr;
	int err = VK_ERR_DEVICE;

	if (cudaMalloc(&dx, n * sizeof *dx) != cudaSuccess ||
	    cudaMalloc(&dy, n * sizeof *dy) != cudaSuccess) {
		vk_set_error("saxpy: cudaMalloc of %zu floats failed", n);
		goto out;
	}
	if (cudaMemcpy(dx, x, n * sizeof *x, cudaMemcpyHostToDevice) != cudaSuccess ||
	    cudaMemcpy(dy, y, n * sizeof *y, cudaMemcpyHostToDevice) != cudaSuccess) {
		vk_set_error("saxpy: copy to device failed");
		goto out;
	}
	if ((err = saxpy_launch(n, a, dx, dy, 0)) != 0)
		goto out;
	err = VK_ERR_DEVICE;
	if (cudaMemcpy(y, dy, n * sizeof *y, cudaMemcpyDeviceToHost) != cudaSuccess) {
		vk_set_error("saxpy: copy to host failed");
		goto out;
	}
	err = 0;
out:
	cudaFree(dx);
	cudaFree(dy);
	return err;
}
