/* dp.c: data parallelism over the launcher's processes (see dp.h). */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dp.h"
#include "verr.h"

/* A decimal value of the environment in [0, INT_MAX]; -1 when unset. */
static int
env_int(const char *name, long *out)
{
	const char *s = getenv(name);
	char *end;

	*out = -1;
	if (s == NULL)
		return V_OK;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (*s == '\0' || *end != '\0' || errno != 0 || v < 0 || v > INT_MAX)
		return v_error(V_ERR_FORMAT, "%s='%s' is not a rank or size", name, s);
	*out = v;
	return V_OK;
}

int
dp_launch_env(int *rank, int *size, const char **launcher)
{
	static const struct { const char *r, *s, *who; } v[] = {
		{ "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "mpirun" },
		{ "SLURM_PROCID", "SLURM_NTASKS", "srun" },
		{ "PMI_RANK", "PMI_SIZE", "pmi" },
	};

	*rank = 0;
	*size = 1;
	*launcher = "none";
	for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
		long r, s;
		int err;
		if ((err = env_int(v[i].r, &r)) != V_OK ||
		    (err = env_int(v[i].s, &s)) != V_OK)
			return err;
		if (r < 0 && s < 0)
			continue;
		if (r < 0 || s < 0)
			return v_error(V_ERR_FORMAT, "%s is set without %s", r < 0 ?
			    v[i].s : v[i].r, r < 0 ? v[i].r : v[i].s);
		if (s < 1 || r >= s)
			return v_error(V_ERR_FORMAT, "%s=%ld is not a rank of %s=%ld",
			    v[i].r, r, v[i].s, s);
		*rank = (int)r;
		*size = (int)s;
		*launcher = v[i].who;
		return V_OK;
	}
	return V_OK;
}

/* A shared object beside the program (build/bin -> build/lib/vesper, or
 * PREFIX/bin -> PREFIX/lib/vesper), as lib/backend.c finds the CUDA
 * backend, or where the variable env says. */
static void
beside_path(const char *env_name, const char *name, char *path, size_t len)
{
	const char *env = getenv(env_name);
	char exe[PATH_MAX];
	ssize_t n;
	char *slash;

	if (env != NULL && *env != '\0') {
		snprintf(path, len, "%s", env);
		return;
	}
	n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n > 0) {
		exe[n] = '\0';
		if ((slash = strrchr(exe, '/')) != NULL) {
			*slash = '\0';
			snprintf(path, len, "%s/../lib/vesper/%s", exe, name);
			return;
		}
	}
	snprintf(path, len, "%s", name);
}

static int
mpi_load(const struct dp_mpi_api **api)
{
	static char why[768];
	char path[PATH_MAX + 64];
	dp_mpi_api_fn fn;
	void *h;

	beside_path("VESPER_MPI_LIB", "libvesper_mpi.so", path, sizeof path);
	if (access(path, R_OK) != 0)
		return v_error(V_ERR_NOTFOUND, "this build has no MPI support (%s not "
		    "found: build with Open MPI's mpicc installed)", path);
	/* Global: Open MPI loads components that look up libmpi's symbols. */
	h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
	if (h == NULL) {
		snprintf(why, sizeof why, "%s", dlerror());
		return v_error(V_ERR_UNSUPPORTED, "cannot load MPI: %s", why);
	}
	*(void **)&fn = dlsym(h, "vesper_mpi_api");
	if (fn == NULL || (*api = fn(DP_MPI_ABI)) == NULL) {
		dlclose(h);
		return v_error(V_ERR_UNSUPPORTED, "%s: not a Vesper MPI shim of ABI %d",
		    path, DP_MPI_ABI);
	}
	/* Never closed: MPI cannot be loaded twice in a process. */
	return V_OK;
}

static int
mpi_err(const struct dp *d, int err)
{
	return v_error(err, "rank %d of %d: %s", d->rank, d->size,
	    d->mpi->last_error());
}

int
dp_open(struct dp *d)
{
	int err, rank, size;

	memset(d, 0, sizeof *d);
	d->kind = DP_NONE;
	d->size = 1;
	d->launcher = "none";
	if ((err = dp_launch_env(&rank, &size, &d->launcher)) != V_OK)
		return err;
	d->rank = rank;
	d->size = size;
	if (size == 1)
		return V_OK;
	if ((err = mpi_load(&d->mpi)) != V_OK)
		return err;
	if ((err = d->mpi->init(&d->rank, &d->size)) != V_OK)
		return mpi_err(d, err);
	d->kind = DP_MPI;
	if (d->rank != rank || d->size != size) {
		/* The launcher and MPI disagree: an MPI that is not the launcher's
		 * (singletons of a foreign mpirun).  Going on would deadlock. */
		err = v_error(V_ERR_MISMATCH, "%s says rank %d of %d, MPI (%s) says "
		    "%d of %d: the launcher and the MPI of libvesper_mpi.so do not "
		    "know each other", d->launcher, rank, size, d->mpi->library(),
		    d->rank, d->size);
		return err;
	}
	return V_OK;
}

int
dp_nccl_open(struct dp *d)
{
	unsigned char id[DP_NCCL_ID_BYTES];
	char path[PATH_MAX + 64];
	dp_nccl_api_fn fn;
	void *h;
	int err;

	beside_path("VESPER_CUDA_LIB", "libvesper_cuda.so", path, sizeof path);
	/* The backend that lib/backend.h loaded, not a second copy. */
	h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
	if (h == NULL)
		return v_error(V_ERR_UNSUPPORTED, "NCCL: the CUDA backend (%s) is "
		    "not loaded", path);
	*(void **)&fn = dlsym(h, "vesper_nccl_api");
	d->nccl = fn != NULL ? fn(DP_NCCL_ABI) : NULL;
	/* RTLD_NOLOAD took a reference of its own. */
	dlclose(h);
	if (d->nccl == NULL)
		return v_error(V_ERR_UNSUPPORTED, "%s: no NCCL table of ABI %d", path,
		    DP_NCCL_ABI);
	memset(id, 0, sizeof id);
	if (d->rank == 0 && (err = d->nccl->unique_id(id)) != V_OK)
		return v_error(err, "rank 0: %s", d->nccl->last_error());
	if ((err = dp_bcast(d, id, sizeof id)) != V_OK)
		return err;
	if ((err = d->nccl->comm_init(id, d->rank, d->size, &d->nccl_comm)) != V_OK)
		return v_error(err, "rank %d of %d: %s", d->rank, d->size,
		    d->nccl->last_error());
	return V_OK;
}

int
dp_nccl_sum(struct dp *d, float *dev, size_t n, void *stream)
{
	int err;

	if (d->nccl_comm == NULL)
		return v_error(V_ERR_ARG, "NCCL: no communicator");
	if ((err = d->nccl->allreduce_sum(d->nccl_comm, dev, n, stream)) != V_OK)
		return v_error(err, "rank %d of %d: %s", d->rank, d->size,
		    d->nccl->last_error());
	return V_OK;
}

void
dp_close(struct dp *d)
{
	if (d->nccl_comm != NULL)
		d->nccl->comm_destroy(d->nccl_comm);
	d->nccl_comm = NULL;
	if (d->kind == DP_MPI && !d->closed)
		d->mpi->finalize();
	d->closed = 1;
	free(d->send);
	free(d->recv);
	free(d->acc);
	d->send = d->recv = d->acc = NULL;
	d->cap = 0;
}

void
dp_abort(struct dp *d, int status)
{
	if (d->kind == DP_MPI && !d->closed)
		d->mpi->abort(status);
}

int
dp_bcast(struct dp *d, void *buf, size_t bytes)
{
	int err;

	if (d->kind != DP_MPI || bytes == 0)
		return V_OK;
	if ((err = d->mpi->bcast(buf, bytes, 0)) != V_OK)
		return mpi_err(d, err);
	return V_OK;
}

int
dp_barrier(struct dp *d)
{
	int err;

	if (d->kind != DP_MPI)
		return V_OK;
	if ((err = d->mpi->barrier()) != V_OK)
		return mpi_err(d, err);
	return V_OK;
}

int
dp_allgather_f64(struct dp *d, const double *mine, double *all, size_t n)
{
	int err;

	if (d->kind != DP_MPI) {
		memmove(all, mine, n * sizeof *all);
		return V_OK;
	}
	if ((err = d->mpi->allgather_f64(mine, all, n)) != V_OK)
		return mpi_err(d, err);
	return V_OK;
}

void
dp_slice(size_t n, int size, int r, size_t *lo, size_t *hi)
{
	size_t chunk = (n + (size_t)size - 1) / (size_t)size;

	*lo = (size_t)r * chunk < n ? (size_t)r * chunk : n;
	*hi = *lo + chunk < n ? *lo + chunk : n;
}

static int
sum_scratch(struct dp *d, size_t all)
{
	if (all <= d->cap)
		return V_OK;
	free(d->send);
	free(d->recv);
	free(d->acc);
	d->send = malloc(all * sizeof *d->send);
	d->recv = malloc(all * sizeof *d->recv);
	d->acc = malloc(all * sizeof *d->acc);
	d->cap = d->send && d->recv && d->acc ? all : 0;
	if (d->cap == 0)
		return v_error(V_ERR_NOMEM, "out of memory for the gradient sum "
		    "(%zu floats)", 3 * all);
	return V_OK;
}

int
dp_sum_add(struct dp *d, const float *x, size_t n)
{
	size_t size = (size_t)d->size, chunk = (n + size - 1) / size;
	int err;

	if (d->sum_chunk >= chunk)
		chunk = d->sum_chunk;
	if (d->sum_rounds > 0 && n != d->sum_n)
		return v_error(V_ERR_ARG, "a sum of %zu floats given %zu", d->sum_n, n);
	d->sum_n = n;
	if (n == 0) {
		d->sum_rounds++;
		return V_OK;
	}
	if ((err = sum_scratch(d, chunk * size)) != V_OK)
		return err;
	if (d->kind != DP_MPI) {
		if (d->sum_rounds++ == 0)
			memcpy(d->acc, x, n * sizeof *x);
		else
			for (size_t i = 0; i < n; i++)
				d->acc[i] += x[i];
		return V_OK;
	}
	/* The tail past n is padding, zero, so that every slice has one size. */
	memcpy(d->send, x, n * sizeof *x);
	memset(d->send + n, 0, (chunk * size - n) * sizeof *x);
	if ((err = d->mpi->alltoall_f32(d->send, d->recv, chunk)) != V_OK)
		return mpi_err(d, err);
	/* This rank's slice of every rank's term, rank 0's first. */
	int j = 0;
	if (d->sum_rounds++ == 0) {
		memcpy(d->acc, d->recv, chunk * sizeof *d->acc);
		j = 1;
	}
	for (; j < d->size; j++) {
		const float *part = d->recv + (size_t)j * chunk;
		for (size_t i = 0; i < chunk; i++)
			d->acc[i] += part[i];
	}
	return V_OK;
}

const float *
dp_sum_own(struct dp *d, size_t *lo, size_t *hi)
{
	size_t n = d->sum_n, chunk = (n + (size_t)d->size - 1) / (size_t)d->size;

	if (d->sum_chunk >= chunk)
		chunk = d->sum_chunk;
	if (d->sum_rounds == 0)
		return NULL;
	d->sum_rounds = 0;
	if (d->kind != DP_MPI)
		chunk = n;
	*lo = (size_t)d->rank * chunk < n ? (size_t)d->rank * chunk : n;
	*hi = *lo + chunk < n ? *lo + chunk : n;
	return d->acc;
}

int
dp_sum_end(struct dp *d, float *out, size_t n)
{
	size_t chunk = (n + (size_t)d->size - 1) / (size_t)d->size;
	int err;

	if (d->sum_chunk >= chunk)
		chunk = d->sum_chunk;

	if (d->sum_rounds == 0 || n != d->sum_n)
		return v_error(V_ERR_ARG, "no sum of %zu floats begun", n);
	d->sum_rounds = 0;
	if (n == 0)
		return V_OK;
	if (d->kind != DP_MPI) {
		memcpy(out, d->acc, n * sizeof *out);
		return V_OK;
	}
	if ((err = d->mpi->allgather_f32(d->acc, d->recv, chunk)) != V_OK)
		return mpi_err(d, err);
	memcpy(out, d->recv, n * sizeof *out);
	return V_OK;
}

int
dp_allreduce_sum(struct dp *d, float *x, size_t n)
{
	int err;

	if (d->kind != DP_MPI || n == 0)
		return V_OK;
	if ((err = dp_sum_add(d, x, n)) != V_OK)
		return err;
	return dp_sum_end(d, x, n);
}
