// dp_nccl.cu: NCCL for data-parallel training, the table of lib/dp.h's
// struct dp_nccl_api, exported as vesper_nccl_api.
//
// libnccl.so.2 is opened with dlopen when the first communicator is asked
// for ($VESPER_NCCL_LIB names another), so that the CUDA backend loads, and
// trains on one GPU, where NCCL is not installed, and builds where its
// header is not: the few entry points used are declared below after NCCL's
// documented C API (nccl.h, NCCL 2), whose types they match in size.
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <cuda_runtime.h>

#include "../lib/dp.h"
#include "cuda_common.cuh"

namespace {

// ncclUniqueId, ncclComm_t, ncclResult_t (ncclSuccess is 0), and the enum
// values ncclFloat32 and ncclSum.
struct nccl_id {
	char internal[DP_NCCL_ID_BYTES];
};
typedef struct nccl_comm *nccl_comm_t;
typedef int nccl_result;
enum { NCCL_SUCCESS = 0, NCCL_FLOAT32 = 7, NCCL_SUM = 0 };

struct nccl_lib {
	void *handle;
	nccl_result (*get_unique_id)(nccl_id *id);
	nccl_result (*comm_init_rank)(nccl_comm_t *comm, int nranks, nccl_id id,
	    int rank);
	nccl_result (*all_reduce)(const void *send, void *recv, size_t count,
	    int type, int op, nccl_comm_t comm, cudaStream_t stream);
	nccl_result (*comm_destroy)(nccl_comm_t comm);
	const char *(*get_error_string)(nccl_result r);
	nccl_result (*get_version)(int *version);
};

nccl_lib lib;
char version_text[64];

template <typename F>
bool
sym(F *f, const char *name)
{
	*reinterpret_cast<void **>(f) = dlsym(lib.handle, name);
	if (*f == nullptr) {
		vk_set_error("NCCL: %s missing from the library", name);
		return false;
	}
	return true;
}

int
load(void)
{
	if (lib.handle != nullptr)
		return 0;
	const char *env = getenv("VESPER_NCCL_LIB");
	const char *path = env != nullptr && *env != '\0' ? env : "libnccl.so.2";
	lib.handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (lib.handle == nullptr) {
		vk_set_error("NCCL: cannot load %s: %s", path, dlerror());
		return VK_ERR_DEVICE;
	}
	if (!sym(&lib.get_unique_id, "ncclGetUniqueId") ||
	    !sym(&lib.comm_init_rank, "ncclCommInitRank") ||
	    !sym(&lib.all_reduce, "ncclAllReduce") ||
	    !sym(&lib.comm_destroy, "ncclCommDestroy") ||
	    !sym(&lib.get_error_string, "ncclGetErrorString") ||
	    !sym(&lib.get_version, "ncclGetVersion")) {
		dlclose(lib.handle);
		lib.handle = nullptr;
		return VK_ERR_DEVICE;
	}
	int v = 0;
	if (lib.get_version(&v) == NCCL_SUCCESS)
		// Since NCCL 2.9 the code is major*10000 + minor*100 + patch.
		snprintf(version_text, sizeof version_text, "NCCL %d.%d.%d",
		    v / 10000, v / 100 % 100, v % 100);
	return 0;
}

int
fail(const char *what, nccl_result r)
{
	vk_set_error("%s: %s", what, lib.get_error_string(r));
	return VK_ERR_DEVICE;
}

int
nccl_unique_id(unsigned char id[DP_NCCL_ID_BYTES])
{
	nccl_id u;
	int err = load();

	if (err)
		return err;
	nccl_result r = lib.get_unique_id(&u);
	if (r != NCCL_SUCCESS)
		return fail("ncclGetUniqueId", r);
	memcpy(id, u.internal, sizeof u.internal);
	return 0;
}

int
nccl_comm_init(const unsigned char id[DP_NCCL_ID_BYTES], int rank, int size,
    void **comm)
{
	nccl_id u;
	nccl_comm_t c = nullptr;
	int err = load();

	*comm = nullptr;
	if (err)
		return err;
	memcpy(u.internal, id, sizeof u.internal);
	nccl_result r = lib.comm_init_rank(&c, size, u, rank);
	if (r != NCCL_SUCCESS)
		return fail("ncclCommInitRank", r);
	*comm = c;
	return 0;
}

int
nccl_allreduce_sum(void *comm, float *dev, size_t n, void *stream)
{
	cudaStream_t s = static_cast<cudaStream_t>(stream);
	nccl_result r = lib.all_reduce(dev, dev, n, NCCL_FLOAT32, NCCL_SUM,
	    static_cast<nccl_comm_t>(comm), s);

	if (r != NCCL_SUCCESS)
		return fail("ncclAllReduce", r);
	// The step that follows reads the sum on the same stream; waiting
	// here turns a failure of the collective into this call's error.
	VK_CHECK(cudaStreamSynchronize(s));
	return 0;
}

void
nccl_comm_destroy(void *comm)
{
	if (comm != nullptr && lib.handle != nullptr)
		lib.comm_destroy(static_cast<nccl_comm_t>(comm));
}

const char *
nccl_version(void)
{
	return version_text;
}

const dp_nccl_api api = {
	DP_NCCL_ABI,
	nccl_unique_id,
	nccl_comm_init,
	nccl_allreduce_sum,
	nccl_comm_destroy,
	vk_last_error,
	nccl_version,
};

}  // namespace

extern "C" const dp_nccl_api *vesper_nccl_api(int abi);

extern "C" const dp_nccl_api *
vesper_nccl_api(int abi)
{
	return abi == DP_NCCL_ABI ? &api : nullptr;
}
