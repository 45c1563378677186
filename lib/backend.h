/* backend.h: choosing where the arithmetic runs.
 *
 * `--device auto|cpu|cuda`.  The CUDA backend is loaded at run time
 * (dlopen of libvesper_cuda.so, found beside the program: ../lib/vesper/,
 * or $VESPER_CUDA_LIB), so that the same binaries run where there is no
 * GPU.  auto takes CUDA when a device answers and falls back to the CPU
 * otherwise, saying why in `note`; cuda without a device is an error. */
#ifndef VESPER_BACKEND_H
#define VESPER_BACKEND_H

#include "../kernels/cuda_api.h"

enum v_device { V_DEVICE_AUTO, V_DEVICE_CPU, V_DEVICE_CUDA };

struct v_backend {
	enum v_device device;		/* V_DEVICE_CPU or V_DEVICE_CUDA */
	const struct v_cuda_api *cuda;	/* set when device is CUDA */
	/* The training backend to use: the CPU one, or the CUDA one behind
	 * wrappers that turn its last_error() into a v_error detail, so that
	 * a program prints the backend's own message (the kernel, the batch
	 * that would fit) with v_errmsg like any other error. */
	const struct vlm_trainer_ops *trainer;
	char name[128];			/* "cpu", "cuda:0 NVIDIA H200" */
	char note[512];			/* why auto fell back, or "" */
};

int v_device_parse(const char *s, enum v_device *out);
int v_backend_open(enum v_device want, struct v_backend *b);

/* Load the CUDA backend table without asking for a device (for tests). */
int v_cuda_load(const struct v_cuda_api **api);

#endif
