// cuda_backend.cu: the exported table of the CUDA backend, and the
// device-management entries.  Each op lives in its own file beside this
// one, with its kernel and launcher; this file only wires them in.
#include <cstdio>
#include <cstring>
#include <cuda_runtime.h>
#include <dlfcn.h>

#include "cuda_api.h"
#include "cuda_common.cuh"

extern const struct vlm_trainer_ops vk_cuda_trainer;	// trainer.cu

namespace {

int device_count(int *n)
{
	int c = 0;
	// Without the driver library, the runtime's own message ("driver
	// version is insufficient") misleads; say what is missing.
	void *drv = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	if (drv == nullptr) {
		vk_set_error("no NVIDIA driver (libcuda.so.1 cannot be loaded)");
		*n = 0;
		return 0;
	}
	dlclose(drv);
	cudaError_t e = cudaGetDeviceCount(&c);
	if (e != cudaSuccess) {
		vk_set_error("%s", cudaGetErrorString(e));
		cudaGetLastError();	// clear the sticky "no driver" state
		*n = 0;
		return 0;
	}
	if (c == 0)
		vk_set_error("the driver reports no device");
	*n = c;
	return 0;
}

int device_info(int dev, char *name, size_t len, size_t *mem, int *major,
    int *minor)
{
	cudaDeviceProp p;
	VK_CHECK(cudaGetDeviceProperties(&p, dev));
	snprintf(name, len, "%s", p.name);
	*mem = p.totalGlobalMem;
	*major = p.major;
	*minor = p.minor;
	return 0;
}

int set_device(int dev)
{
	VK_CHECK(cudaSetDevice(dev));
	return 0;
}

const struct v_cuda_api api = {
	V_CUDA_ABI,
	device_count,
	device_info,
	set_device,
	vk_last_error,
	vk_saxpy,
	&vk_cuda_trainer,
};

} // namespace

extern "C" __attribute__((visibility("default")))
const struct v_cuda_api *vesper_cuda_api(int abi)
{
	return abi == V_CUDA_ABI ? &api : nullptr;
}
