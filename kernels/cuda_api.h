/* cuda_api.h: the table of functions that the CUDA backend exports.
 *
 * The CUDA backend is a shared object (libvesper_cuda.so) loaded with
 * dlopen at run time, so that every program starts on a machine with no
 * GPU, no driver and no CUDA libraries.  It exports one symbol,
 * vesper_cuda_api(), which returns this table when the ABI versions agree.
 * Plain C types only: the programs are compiled by cc, the table by nvcc.
 *
 * Every function returns 0 on success or a V_ERR_* value, and writes a
 * message into the backend's error buffer (last_error). */
#ifndef VESPER_CUDA_API_H
#define VESPER_CUDA_API_H

#include <stddef.h>

#include "../lib/trainer.h"

#define V_CUDA_ABI 1

struct v_cuda_api {
	int abi;			/* V_CUDA_ABI */
	/* Number of usable devices; a missing driver is 0 devices, with the
	 * reason in last_error. */
	int (*device_count)(int *n);
	/* Name, memory in bytes and compute capability of device dev. */
	int (*device_info)(int dev, char *name, size_t len, size_t *mem,
	    int *major, int *minor);
	/* Make dev current for this thread. */
	int (*set_device)(int dev);
	/* The message for the last failure of this thread. */
	const char *(*last_error)(void);
	/* A round trip through a kernel: y = a*x + y over n floats on the
	 * device, copied from and back to the host.  A smoke test that the
	 * build and the driver agree. */
	int (*saxpy)(size_t n, float a, const float *x, float *y);
	/* The training backend (lib/trainer.h); NULL until built. */
	const struct vlm_trainer_ops *trainer;
};

typedef const struct v_cuda_api *(*v_cuda_api_fn)(int abi);

#endif
