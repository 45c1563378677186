/* dp.h: data parallelism: one process per device (or per CPU share), each
 * working on its own part of every global batch, gradients summed over all
 * of them before each optimizer step.
 *
 * Processes are started by an existing launcher, never by us: Open MPI's
 * `mpirun -np N` (OMPI_COMM_WORLD_RANK/SIZE), Slurm's `srun`
 * (SLURM_PROCID/SLURM_NTASKS), or an MPICH-style PMI launcher
 * (PMI_RANK/PMI_SIZE).  dp_open reads rank and size from there; a process
 * that no launcher started is rank 0 of 1 and needs no MPI at all.
 *
 * MPI is reached through a small shim, libvesper_mpi.so, compiled by mpicc
 * and loaded with dlopen only when the size is above 1 (beside the program
 * in ../lib/vesper/, or $VESPER_MPI_LIB): vtrain starts on machines without
 * Open MPI (the GPU machine, a bare container), and no MPI type or ABI
 * detail leaks into the rest of the code, which is built by cc alone.
 *
 * The sum is done in a fixed order, the same on every rank and in every
 * run: each rank owns a slice of the array (dp_slice), receives that slice
 * from every rank (all-to-all), adds the contributions in rank order 0, 1,
 * ..., N-1, and the slices are gathered back (all-gather).  So every rank
 * ends with bit-identical gradients (their weights never drift apart), a
 * run repeats bit for bit, and the traffic is that of a ring all-reduce,
 * 2 (N-1)/N of the array per rank.  This is the reduce-scatter plus
 * all-gather shape that ZeRO-1 splits in two. */
#ifndef VESPER_DP_H
#define VESPER_DP_H

#include <stddef.h>

/* The shim's table: plain C types only (the shim alone sees mpi.h).  Every
 * function returns 0 or a V_ERR_* value with the reason in last_error. */
#define DP_MPI_ABI 1

struct dp_mpi_api {
	int abi;
	/* MPI_Init (threads funneled) and the world's rank and size. */
	int (*init)(int *rank, int *size);
	int (*finalize)(void);
	/* MPI_Abort of the world: every rank dies, none waits forever. */
	void (*abort)(int status);
	int (*bcast)(void *buf, size_t bytes, int root);
	/* Rank r sends send[j*n, (j+1)*n) to rank j and receives rank j's
	 * part for r into recv[j*n, (j+1)*n). */
	int (*alltoall_f32)(const float *send, float *recv, size_t n);
	/* recv[j*n, (j+1)*n) = rank j's send[0, n). */
	int (*allgather_f32)(const float *send, float *recv, size_t n);
	int (*allgather_f64)(const double *send, double *recv, size_t n);
	int (*barrier)(void);
	const char *(*last_error)(void);
	const char *(*library)(void);	/* "Open MPI v4.1.4, ..." */
};

typedef const struct dp_mpi_api *(*dp_mpi_api_fn)(int abi);

/* NCCL, for a backend whose gradients live on the GPU: the CUDA backend
 * exports this table as vesper_nccl_api (kernels/dp_nccl.cu), and loads
 * libnccl.so.2 itself, with dlopen, when asked for a communicator.  MPI
 * stays the bootstrap: rank 0's NCCL id reaches the others by dp_bcast.
 * The sum is NCCL's (a ring or tree whose order depends on the number of
 * GPUs): equal to one process's up to float rounding, not bit for bit. */
#define DP_NCCL_ABI 1
#define DP_NCCL_ID_BYTES 128

struct dp_nccl_api {
	int abi;
	/* ncclGetUniqueId: rank 0's, for every rank. */
	int (*unique_id)(unsigned char id[DP_NCCL_ID_BYTES]);
	/* ncclCommInitRank on the current device. */
	int (*comm_init)(const unsigned char id[DP_NCCL_ID_BYTES], int rank,
	    int size, void **comm);
	/* In place: dev (n floats in device memory) becomes the sum over the
	 * ranks; queued on stream (a cudaStream_t), waited for. */
	int (*allreduce_sum)(void *comm, float *dev, size_t n, void *stream);
	void (*comm_destroy)(void *comm);
	const char *(*last_error)(void);
	const char *(*version)(void);	/* "NCCL 2.21.5" once loaded */
};

typedef const struct dp_nccl_api *(*dp_nccl_api_fn)(int abi);

enum dp_kind { DP_NONE, DP_MPI };

struct dp {
	int rank, size;
	enum dp_kind kind;
	const char *launcher;		/* "mpirun", "srun", "pmi", "none" */
	const struct dp_mpi_api *mpi;	/* DP_MPI */
	int closed;
	float *send, *recv, *acc;	/* the sum's scratch, (size * chunk) */
	size_t cap;
	size_t sum_n;			/* dp_sum_*: the terms' length */
	size_t sum_chunk;		/* elements per rank's slice; 0: ceil(n/size) */
	long sum_rounds;		/* rounds added so far */
	const struct dp_nccl_api *nccl;	/* after dp_nccl_open */
	void *nccl_comm;
};

/* Rank and size from the launcher's environment (the variables above, in
 * that order).  No launcher: 0 of 1, *launcher "none".  Values that are not
 * numbers, a size below 1 or a rank outside [0, size) are V_ERR_FORMAT. */
int dp_launch_env(int *rank, int *size, const char **launcher);

/* Join the run the environment describes: size 1 is DP_NONE (no MPI
 * loaded); above 1, the MPI shim is loaded and MPI initialised, and its
 * rank and size must agree with the environment's. */
int dp_open(struct dp *d);
/* MPI_Finalize (and free the scratch); the dp is DP_NONE afterwards. */
void dp_close(struct dp *d);
/* Kill the whole run (MPI_Abort); with DP_NONE, nothing. */
void dp_abort(struct dp *d, int status);

/* Rank 0's bytes to every rank. */
int dp_bcast(struct dp *d, void *buf, size_t bytes);
/* x (n floats, every rank) becomes the sum over the ranks, added in rank
 * order, bit-identical on every rank. */
int dp_allreduce_sum(struct dp *d, float *x, size_t n);

/* A sum of several terms per rank in one global order, the same whatever
 * the number of ranks: call dp_sum_add once per round a = 0, 1, ... with
 * this rank's term (n floats); rank r's term of round a is term
 * a * size + r, and the terms are added in that order, the first one
 * copied.  dp_sum_end then writes the total to out on every rank.  One
 * process: the terms in the order given.  So micro-batch j of a step,
 * read by rank j % size (shard_reader_set_stride), is added j-th: the
 * gradients of N ranks equal one process's bit for bit.  Each round is
 * one all-to-all (a reduce-scatter's traffic); the end one all-gather. */
int dp_sum_add(struct dp *d, const float *x, size_t n);
int dp_sum_end(struct dp *d, float *out, size_t n);
/* Or end it without the all-gather (ZeRO-1, lib/dp_zero.h): this rank's
 * slice [*lo, *hi) of the total, valid until the next sum. */
const float *dp_sum_own(struct dp *d, size_t *lo, size_t *hi);
/* all[j*n, (j+1)*n) = rank j's mine[0, n). */
int dp_allgather_f64(struct dp *d, const double *mine, double *all,
    size_t n);
int dp_barrier(struct dp *d);

/* A communicator of NCCL over the same ranks (any size, 1 included),
 * from the CUDA backend already loaded in this process (lib/backend.h),
 * each rank on its current device.  dp_close destroys it. */
int dp_nccl_open(struct dp *d);
/* dev (n floats on the device) becomes the sum over the ranks, in place. */
int dp_nccl_sum(struct dp *d, float *dev, size_t n, void *stream);

/* Rank r's slice [lo, hi) of an array of n elements cut in size parts of
 * ceil(n / size) (the last ones shorter or empty). */
void dp_slice(size_t n, int size, int r, size_t *lo, size_t *hi);

#endif
