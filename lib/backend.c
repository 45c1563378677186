/* backend.c: run-time choice between the CPU and the CUDA backend. */
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "verr.h"

int
v_device_parse(const char *s, enum v_device *out)
{
	if (strcmp(s, "auto") == 0)
		*out = V_DEVICE_AUTO;
	else if (strcmp(s, "cpu") == 0)
		*out = V_DEVICE_CPU;
	else if (strcmp(s, "cuda") == 0)
		*out = V_DEVICE_CUDA;
	else
		return v_error(V_ERR_ARG, "unknown device '%s' (auto, cpu or cuda)", s);
	return V_OK;
}

/* The directory of the running program, for finding the backend beside
 * it both in the build tree (build/bin -> build/lib/vesper) and once
 * installed (PREFIX/bin -> PREFIX/lib/vesper). */
static int
exe_dir(char *buf, size_t len)
{
	ssize_t n = readlink("/proc/self/exe", buf, len - 1);
	char *slash;

	if (n <= 0)
		return -1;
	buf[n] = '\0';
	slash = strrchr(buf, '/');
	if (slash == NULL)
		return -1;
	*slash = '\0';
	return 0;
}

int
v_cuda_load(const struct v_cuda_api **api)
{
	static const struct v_cuda_api *cached;
	static char why[768];
	char path[PATH_MAX + 64], dir[PATH_MAX];
	const char *env = getenv("VESPER_CUDA_LIB");
	void *h;

	if (cached != NULL) {
		*api = cached;
		return V_OK;
	}
	if (env != NULL && *env != '\0')
		snprintf(path, sizeof path, "%s", env);
	else if (exe_dir(dir, sizeof dir) == 0)
		snprintf(path, sizeof path, "%s/../lib/vesper/libvesper_cuda.so", dir);
	else
		snprintf(path, sizeof path, "libvesper_cuda.so");
	if (access(path, R_OK) != 0)
		return v_error(V_ERR_NOTFOUND,
		    "this build has no CUDA backend (%s not found)", path);
	h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		snprintf(why, sizeof why, "%s", dlerror());
		return v_error(V_ERR_DEVICE, "cannot load the CUDA backend: %s", why);
	}
	v_cuda_api_fn fn;
	*(void **)&fn = dlsym(h, "vesper_cuda_api");
	if (fn == NULL || (cached = fn(V_CUDA_ABI)) == NULL) {
		dlclose(h);
		return v_error(V_ERR_DEVICE, "%s: not a Vesper CUDA backend of ABI %d",
		    path, V_CUDA_ABI);
	}
	*api = cached;
	return V_OK;
}

int
v_backend_open(enum v_device want, struct v_backend *b)
{
	const struct v_cuda_api *api;
	int n = 0, err;

	memset(b, 0, sizeof *b);
	b->device = V_DEVICE_CPU;
	snprintf(b->name, sizeof b->name, "cpu");
	if (want == V_DEVICE_CPU)
		return V_OK;
	err = v_cuda_load(&api);
	if (err == V_OK) {
		if (api->device_count(&n) != 0 || n == 0)
			err = v_error(V_ERR_DEVICE, "no CUDA device: %s",
			    api->last_error());
	}
	if (err != V_OK) {
		if (want == V_DEVICE_CUDA)
			return err;
		snprintf(b->note, sizeof b->note, "%s; using the CPU", v_errmsg(err));
		v_errclear();
		return V_OK;
	}
	char dname[96];
	size_t mem;
	int major, minor;
	if (api->set_device(0) != 0 ||
	    api->device_info(0, dname, sizeof dname, &mem, &major, &minor) != 0) {
		err = v_error(V_ERR_DEVICE, "CUDA device 0: %s", api->last_error());
		if (want == V_DEVICE_CUDA)
			return err;
		snprintf(b->note, sizeof b->note, "%s; using the CPU", v_errmsg(err));
		v_errclear();
		return V_OK;
	}
	b->device = V_DEVICE_CUDA;
	b->cuda = api;
	snprintf(b->name, sizeof b->name, "cuda:0 %s (sm_%d%d, %.0f GiB)", dname,
	    major, minor, (double)mem / (1 << 30));
	return V_OK;
}
