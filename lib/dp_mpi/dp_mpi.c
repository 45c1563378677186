/* dp_mpi.c: the MPI shim of lib/dp.h, built by mpicc into
 * libvesper_mpi.so and loaded by dp_open only when a launcher started
 * more than one process.  It is the one file that includes mpi.h. */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <mpi.h>

#include "../dp.h"
#include "../verr.h"

static char last[512];

static int
fail(int rc, const char *what)
{
	char msg[MPI_MAX_ERROR_STRING];
	int len = 0;

	if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS)
		snprintf(msg, sizeof msg, "MPI error %d", rc);
	snprintf(last, sizeof last, "%s: %s", what, msg);
	return V_ERR_IO;
}

/* MPI counts are ints: larger messages go in pieces (bcast) or are refused
 * (the collectives whose layout a split would change). */
static int
count_ok(size_t n, const char *what)
{
	if (n > (size_t)INT_MAX) {
		snprintf(last, sizeof last, "%s: %zu elements per rank is more than "
		    "one MPI message holds", what, n);
		return 0;
	}
	return 1;
}

static int
shim_init(int *rank, int *size)
{
	int provided, rc, ready;

	if ((rc = MPI_Initialized(&ready)) != MPI_SUCCESS)
		return fail(rc, "MPI_Initialized");
	if (!ready && (rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED,
	    &provided)) != MPI_SUCCESS)
		return fail(rc, "MPI_Init_thread");
	/* Errors come back as codes, to be reported with the rank's name. */
	MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
	if ((rc = MPI_Comm_rank(MPI_COMM_WORLD, rank)) != MPI_SUCCESS)
		return fail(rc, "MPI_Comm_rank");
	if ((rc = MPI_Comm_size(MPI_COMM_WORLD, size)) != MPI_SUCCESS)
		return fail(rc, "MPI_Comm_size");
	return V_OK;
}

static int
shim_finalize(void)
{
	int rc = MPI_Finalize();
	return rc == MPI_SUCCESS ? V_OK : fail(rc, "MPI_Finalize");
}

static void
shim_abort(int status)
{
	MPI_Abort(MPI_COMM_WORLD, status);
}

static int
shim_bcast(void *buf, size_t bytes, int root)
{
	char *p = buf;

	while (bytes > 0) {
		int n = bytes > (1u << 30) ? 1 << 30 : (int)bytes;
		int rc = MPI_Bcast(p, n, MPI_BYTE, root, MPI_COMM_WORLD);
		if (rc != MPI_SUCCESS)
			return fail(rc, "MPI_Bcast");
		p += n;
		bytes -= (size_t)n;
	}
	return V_OK;
}

static int
shim_alltoall_f32(const float *send, float *recv, size_t n)
{
	if (!count_ok(n, "MPI_Alltoall"))
		return V_ERR_RANGE;
	int rc = MPI_Alltoall(send, (int)n, MPI_FLOAT, recv, (int)n, MPI_FLOAT,
	    MPI_COMM_WORLD);
	return rc == MPI_SUCCESS ? V_OK : fail(rc, "MPI_Alltoall");
}

static int
shim_allgather_f32(const float *send, float *recv, size_t n)
{
	if (!count_ok(n, "MPI_Allgather"))
		return V_ERR_RANGE;
	int rc = MPI_Allgather(send, (int)n, MPI_FLOAT, recv, (int)n, MPI_FLOAT,
	    MPI_COMM_WORLD);
	return rc == MPI_SUCCESS ? V_OK : fail(rc, "MPI_Allgather");
}

static int
shim_allgather_f64(const double *send, double *recv, size_t n)
{
	if (!count_ok(n, "MPI_Allgather"))
		return V_ERR_RANGE;
	int rc = MPI_Allgather(send, (int)n, MPI_DOUBLE, recv, (int)n,
	    MPI_DOUBLE, MPI_COMM_WORLD);
	return rc == MPI_SUCCESS ? V_OK : fail(rc, "MPI_Allgather");
}

static int
shim_barrier(void)
{
	int rc = MPI_Barrier(MPI_COMM_WORLD);
	return rc == MPI_SUCCESS ? V_OK : fail(rc, "MPI_Barrier");
}

static const char *
shim_last_error(void)
{
	return last;
}

static const char *
shim_library(void)
{
	static char v[MPI_MAX_LIBRARY_VERSION_STRING];
	int len = 0;

	if (v[0] == '\0' && MPI_Get_library_version(v, &len) == MPI_SUCCESS) {
		/* The first line is enough to name it. */
		char *nl = strchr(v, '\n');
		if (nl != NULL)
			*nl = '\0';
		nl = strchr(v, ',');
		if (nl != NULL)
			*nl = '\0';
	}
	return v;
}

static const struct dp_mpi_api api = {
	.abi = DP_MPI_ABI,
	.init = shim_init,
	.finalize = shim_finalize,
	.abort = shim_abort,
	.bcast = shim_bcast,
	.alltoall_f32 = shim_alltoall_f32,
	.allgather_f32 = shim_allgather_f32,
	.allgather_f64 = shim_allgather_f64,
	.barrier = shim_barrier,
	.last_error = shim_last_error,
	.library = shim_library,
};

const struct dp_mpi_api *vesper_mpi_api(int abi);

const struct dp_mpi_api *
vesper_mpi_api(int abi)
{
	return abi == DP_MPI_ABI ? &api : NULL;
}
