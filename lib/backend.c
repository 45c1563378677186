/* backend.c: run-time choice between the CPU and the CUDA backend. */
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"
#include "trainer.h"
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

/* The CUDA trainer behind error-translating wrappers.  The backend reports
 * its failures through its own last_error(), since it cannot reach the
 * program's v_error; each wrapper copies that message into a detail. */
static const struct vlm_trainer_ops *cuda_ops;
static const struct v_cuda_api *cuda_api;

static int
cuda_err(int err)
{
	if (err == V_OK)
		return V_OK;
	return v_error(err, "%s", cuda_api->last_error());
}

static int
w_create(const struct vlm_config *c, int B, int T, void **st)
{
	return cuda_err(cuda_ops->create(c, B, T, st));
}

static void
w_destroy(void *st)
{
	cuda_ops->destroy(st);
}

#define W1(fn, T1) static int w_##fn(void *st, T1 a) \
	{ return cuda_err(cuda_ops->fn(st, a)); }
#define W2(fn, T1, T2) static int w_##fn(void *st, T1 a, T2 b) \
	{ return cuda_err(cuda_ops->fn(st, a, b)); }
W1(set_params, const float *)
W1(get_params, float *)
W2(set_moments, const float *, const float *)
W2(get_moments, float *, float *)
W1(get_grads, float *)
W1(set_grads, const float *)
W1(get_logits, float *)
W1(grad_norm, float *)
W2(forward, const int32_t *, float *)
W2(device_grads, float **, void **)

static int
w_zero_grad(void *st)
{
	return cuda_err(cuda_ops->zero_grad(st));
}

static int
w_forward_backward(void *st, const int32_t *tokens, float grad_scale,
    float *loss, float *entropy)
{
	return cuda_err(cuda_ops->forward_backward(st, tokens, grad_scale, loss,
	    entropy));
}

static int
w_step(void *st, const struct velvet_hparams *h, float lr, long t,
    float grad_mul)
{
	return cuda_err(cuda_ops->step(st, h, lr, t, grad_mul));
}

static struct vlm_trainer_ops cuda_wrapped;

static const struct vlm_trainer_ops *
wrap_cuda_trainer(const struct v_cuda_api *api)
{
	const struct vlm_trainer_ops *o = api->trainer;

	if (o == NULL)
		return NULL;
	cuda_api = api;
	cuda_ops = o;
	cuda_wrapped = *o;
	cuda_wrapped.create = w_create;
	cuda_wrapped.destroy = w_destroy;
	cuda_wrapped.set_params = w_set_params;
	cuda_wrapped.get_params = w_get_params;
	cuda_wrapped.set_moments = w_set_moments;
	cuda_wrapped.get_moments = w_get_moments;
	cuda_wrapped.get_grads = w_get_grads;
	cuda_wrapped.zero_grad = w_zero_grad;
	cuda_wrapped.forward_backward = w_forward_backward;
	cuda_wrapped.forward = w_forward;
	cuda_wrapped.grad_norm = w_grad_norm;
	cuda_wrapped.step = w_step;
	cuda_wrapped.get_logits = o->get_logits ? w_get_logits : NULL;
	cuda_wrapped.set_grads = o->set_grads ? w_set_grads : NULL;
	cuda_wrapped.device_grads = o->device_grads ? w_device_grads : NULL;
	return &cuda_wrapped;
}

int
v_backend_open(enum v_device want, struct v_backend *b)
{
	const struct v_cuda_api *api;
	int n = 0, err;

	memset(b, 0, sizeof *b);
	b->device = V_DEVICE_CPU;
	b->trainer = &vlm_cpu_trainer;
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
	if (api->trainer != NULL)
		b->trainer = wrap_cuda_trainer(api);
	snprintf(b->name, sizeof b->name, "cuda:0 %s (sm_%d%d, %.0f GiB)", dname,
	    major, minor, (double)mem / (1 << 30));
	return V_OK;
}
