/* test_dp.c: the data-parallel layer.  Alone: the launcher's environment
 * (good, missing and hostile values), the slices, and the one-process
 * collectives.  Under `mpirun -np N` (tests/cli/dp.t): the sum of arrays
 * whose rounding depends on the order of the additions equals, bit for bit
 * and on every rank, the sum in rank order; broadcast and gather.  Both:
 * ZeRO-1's norm and step on slices equal velvet_norm and Velvet on the
 * whole arrays, bit for bit. */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/dp.h"
#include "../../lib/dp_zero.h"
#include "../../lib/velvet.h"
#include "../../lib/vlm_config.h"
#include "../../lib/verr.h"
#include "tap.h"

static const char *const vars[] = {
	"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "SLURM_PROCID",
	"SLURM_NTASKS", "PMI_RANK", "PMI_SIZE",
};

static void test_zero(struct dp *d);

static void
clear_env(void)
{
	for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
		unsetenv(vars[i]);
}

/* Set name=value pairs (NULL-terminated), read the environment back. */
static int
env_case(int *rank, int *size, const char **who, ...)
{
	va_list ap;
	const char *k;

	clear_env();
	va_start(ap, who);
	while ((k = va_arg(ap, const char *)) != NULL)
		setenv(k, va_arg(ap, const char *), 1);
	va_end(ap);
	*rank = *size = -7;
	return dp_launch_env(rank, size, who);
}

static void
test_env(void)
{
	int r, n, err;
	const char *who;

	err = env_case(&r, &n, &who, NULL);
	ok(err == V_OK && r == 0 && n == 1 && strcmp(who, "none") == 0,
	    "no launcher: rank 0 of 1");
	err = env_case(&r, &n, &who, "OMPI_COMM_WORLD_RANK", "3",
	    "OMPI_COMM_WORLD_SIZE", "4", NULL);
	ok(err == V_OK && r == 3 && n == 4 && strcmp(who, "mpirun") == 0,
	    "Open MPI's variables");
	err = env_case(&r, &n, &who, "SLURM_PROCID", "1", "SLURM_NTASKS", "2",
	    NULL);
	ok(err == V_OK && r == 1 && n == 2 && strcmp(who, "srun") == 0,
	    "Slurm's variables");
	err = env_case(&r, &n, &who, "PMI_RANK", "0", "PMI_SIZE", "5", NULL);
	ok(err == V_OK && r == 0 && n == 5 && strcmp(who, "pmi") == 0,
	    "PMI's variables");
	err = env_case(&r, &n, &who, "OMPI_COMM_WORLD_RANK", "1",
	    "OMPI_COMM_WORLD_SIZE", "2", "SLURM_PROCID", "0", "SLURM_NTASKS",
	    "8", NULL);
	ok(err == V_OK && r == 1 && n == 2,
	    "mpirun inside a Slurm allocation: mpirun's ranks win");

	static const char *const bad[][4] = {
		{ "OMPI_COMM_WORLD_RANK", "x", "OMPI_COMM_WORLD_SIZE", "2" },
		{ "OMPI_COMM_WORLD_RANK", "", "OMPI_COMM_WORLD_SIZE", "2" },
		{ "OMPI_COMM_WORLD_RANK", "1 ", "OMPI_COMM_WORLD_SIZE", "2" },
		{ "OMPI_COMM_WORLD_RANK", "-1", "OMPI_COMM_WORLD_SIZE", "2" },
		{ "OMPI_COMM_WORLD_RANK", "2", "OMPI_COMM_WORLD_SIZE", "2" },
		{ "OMPI_COMM_WORLD_RANK", "0", "OMPI_COMM_WORLD_SIZE", "0" },
		{ "SLURM_PROCID", "0", "SLURM_NTASKS", "99999999999999999999" },
		{ "SLURM_PROCID", "0", "SLURM_NTASKS", "0x10" },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err = env_case(&r, &n, &who, bad[i][0], bad[i][1], bad[i][2],
		    bad[i][3], NULL);
		const char *msg = v_errmsg(err);
		ok(err == V_ERR_FORMAT && (strstr(msg, bad[i][0]) != NULL ||
		    strstr(msg, bad[i][2]) != NULL),
		    "refused: %s='%s' %s='%s'", bad[i][0], bad[i][1], bad[i][2],
		    bad[i][3]);
	}
	err = env_case(&r, &n, &who, "SLURM_PROCID", "0", NULL);
	ok(err == V_ERR_FORMAT && strstr(v_errmsg(err), "SLURM_NTASKS"),
	    "a rank without a size is refused, naming the missing variable");
	clear_env();
}

static void
test_slices(void)
{
	static const size_t ns[] = { 0, 1, 2, 7, 8, 9, 1000, 26784 };
	int good = 1;

	for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++)
		for (int size = 1; size <= 9; size++) {
			size_t next = 0, lo, hi;
			for (int r = 0; r < size; r++) {
				dp_slice(ns[k], size, r, &lo, &hi);
				if (lo != next || hi < lo || hi - lo >
				    (ns[k] + (size_t)size - 1) / (size_t)size)
					good = 0;
				next = hi;
			}
			if (next != ns[k])
				good = 0;
		}
	ok(good, "slices cover every element once, in order, none too long");
}

static void
test_alone(void)
{
	struct dp d;
	float x[3] = { 1.5f, -2, 3 };
	double mine[2] = { 4, 5 }, all[2];
	int err;

	clear_env();
	setenv("VESPER_MPI_LIB", "/nonexistent/libvesper_mpi.so", 1);
	err = dp_open(&d);
	ok(err == V_OK && d.kind == DP_NONE && d.rank == 0 && d.size == 1,
	    "one process: no MPI, not even looked for");
	ok(dp_allreduce_sum(&d, x, 3) == V_OK && x[0] == 1.5f && x[1] == -2 &&
	    x[2] == 3, "one process: the sum is the array");
	ok(dp_allgather_f64(&d, mine, all, 2) == V_OK && all[0] == 4 &&
	    all[1] == 5, "one process: the gather is the array");
	ok(dp_bcast(&d, x, sizeof x) == V_OK && dp_barrier(&d) == V_OK,
	    "one process: broadcast and barrier");
	test_zero(&d);
	setenv("VESPER_CUDA_LIB", "/nonexistent/libvesper_cuda.so", 1);
	err = dp_nccl_open(&d);
	ok(err == V_ERR_UNSUPPORTED && strstr(v_errmsg(err), "not loaded") &&
	    d.nccl_comm == NULL, "NCCL without a loaded CUDA backend: refused");
	ok(dp_nccl_sum(&d, x, 3, NULL) == V_ERR_ARG,
	    "and no sum without a communicator");
	unsetenv("VESPER_CUDA_LIB");
	dp_close(&d);

	setenv("OMPI_COMM_WORLD_RANK", "0", 1);
	setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
	err = dp_open(&d);
	ok(err == V_ERR_NOTFOUND && strstr(v_errmsg(err), "/nonexistent/"),
	    "two ranks without the MPI shim: an error naming it");
	dp_close(&d);
	setenv("VESPER_MPI_LIB", "/etc/passwd", 1);
	err = dp_open(&d);
	ok(err == V_ERR_UNSUPPORTED && strstr(v_errmsg(err), "cannot load MPI"),
	    "a shim that is not a library: refused");
	dp_close(&d);
	clear_env();
	unsetenv("VESPER_MPI_LIB");
}

/* Rank r's value at i: magnitudes far apart, so that float addition in
 * another order rounds differently. */
static float
value(int r, size_t i)
{
	static const float big[] = { 1e8f, 1.0f, -1e8f, 0.75f, 3e-3f };
	return big[(r + (int)i) % 5] * (1 + 0.001f * (float)(i % 17)) +
	    (float)r * 1e-4f;
}

/* ZeRO-1 on d's ranks (one process: one slice) against Velvet on the
 * whole arrays, for a model small enough that slices cut tensors. */
static void
test_zero(struct dp *d)
{
	struct vlm_config c;
	struct dp_zero z;
	struct velvet_hparams h;
	struct velvet_step vs;
	int err;

	vlm_preset("tiny", 64, &c);
	c.layers = 1;
	c.dim = 8;
	c.heads = c.kv_heads = 2;
	c.hidden = 24;
	c.ctx = 8;
	if (!ok(vlm_config_check(&c) == V_OK && dp_zero_init(&z, d, &c) == V_OK,
	    "ZeRO-1: a slice of a %llu-parameter model",
	    (unsigned long long)vlm_param_count(&c)))
		return;
	size_t n = z.n;
	float *g = malloc(n * sizeof *g), *sum = malloc(n * sizeof *sum);
	float *p = malloc(n * sizeof *p), *pz = malloc(n * sizeof *p);
	float *m = malloc(n * sizeof *m), *v = malloc(n * sizeof *v);
	float *mz = malloc(n * sizeof *m), *vz = malloc(n * sizeof *v);
	for (size_t i = 0; i < n; i++) {
		p[i] = pz[i] = value(3, i) * 1e-8f;
		m[i] = value(1, i) * 1e-9f;
		v[i] = (float)(i % 7) * 1e-4f;
		sum[i] = value(0, i);
		for (int r = 1; r < d->size; r++)
			sum[i] += value(r, i);
		g[i] = value(d->rank, i);
	}
	/* Two rounds, as two micro-batches per rank. */
	for (size_t i = 0; i < n; i++)
		sum[i] += value(0, i) * 0.5f;
	for (int r = 1; r < d->size; r++)
		for (size_t i = 0; i < n; i++)
			sum[i] += value(r, i) * 0.5f;
	err = dp_sum_add(d, g, n);
	for (size_t i = 0; i < n; i++)
		g[i] *= 0.5f;
	if (!err)
		err = dp_sum_add(d, g, n);
	float norm = 0;
	if (!err)
		err = dp_zero_norm(d, &z, &norm);
	float want = (float)velvet_norm(sum, n);
	ok(!err && memcmp(&norm, &want, sizeof norm) == 0,
	    "ZeRO-1 on %d rank%s: the norm of velvet_norm, bit for bit (%.9g)",
	    d->size, d->size > 1 ? "s" : "", (double)norm);

	velvet_defaults(&h);
	h.weight_decay = 0.1f;
	float clip = velvet_clip_factor(want, 1e-6f);
	dp_zero_load(&z, m, v);
	if (!err)
		err = dp_zero_step(d, &z, &h, 1e-3f, 3, clip, pz);
	if (!err)
		err = dp_zero_gather(d, &z, mz, vz);
	velvet_prepare(&h, c.vocab_used, 1e-3f, 3, clip, &vs);
	for (int i = 0; i < z.ntens; i++) {
		const struct vlm_tensor *t = &z.tens[i];
		size_t k = t->offset;
		velvet_update(&vs, t->is_matrix ? h.weight_decay : 0, p + k, sum + k,
		    m + k, v + k, (size_t)t->rows * (size_t)t->cols);
	}
	ok(dp_zero_step(d, &z, &h, 1e-3f, 4, clip, pz) == V_ERR_ARG,
	    "ZeRO-1: no second step on the same sum");
	ok(!err && memcmp(p, pz, n * sizeof *p) == 0 &&
	    memcmp(m, mz, n * sizeof *m) == 0 && memcmp(v, vz, n * sizeof *v) == 0,
	    "ZeRO-1: the step on slices, gathered, is Velvet's on the whole model");
	dp_zero_free(&z);
	d->sum_chunk = 0;
	free(g);
	free(sum);
	free(p);
	free(pz);
	free(m);
	free(v);
	free(mz);
	free(vz);
}

static void
test_ranks(void)
{
	struct dp d;
	int err = dp_open(&d);

	/* Only rank 0 speaks TAP. */
	if (err == V_OK && d.rank != 0 && freopen("/dev/null", "w", stdout) == NULL)
		dp_abort(&d, 1);
	if (!ok(err == V_OK && d.kind == DP_MPI, "MPI opened")) {
		diag("%s", v_errmsg(err));
		return;
	}
	static const size_t ns[] = { 1, 2, 5, 1000, 4099 };
	for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
		size_t n = ns[k];
		float *x = malloc(n * sizeof *x), *want = malloc(n * sizeof *x);
		double *agree = malloc((size_t)d.size * sizeof *agree), h = 0, me;
		int exact = 1, same = 1;
		for (size_t i = 0; i < n; i++) {
			x[i] = value(d.rank, i);
			want[i] = value(0, i);
			for (int r = 1; r < d.size; r++)
				want[i] += value(r, i);
		}
		err = dp_allreduce_sum(&d, x, n);
		for (size_t i = 0; i < n; i++) {
			if (memcmp(&x[i], &want[i], sizeof x[i]) != 0)
				exact = 0;
			h = h * 31 + x[i];
		}
		me = h;
		if (!err)
			err = dp_allgather_f64(&d, &me, agree, 1);
		for (int r = 0; r < d.size; r++)
			if (memcmp(&agree[r], &me, sizeof me) != 0)
				same = 0;
		/* Rank 0 reports what every rank found. */
		double flags = exact ? 1 : 0, all[64];
		if (!err && d.size <= 64)
			err = dp_allgather_f64(&d, &flags, all, 1);
		for (int r = 0; !err && r < d.size && r < 64; r++)
			if (all[r] != 1)
				exact = 0;
		ok(!err && exact, "%d ranks, %zu floats: the sum in rank order, bit "
		    "for bit, on every rank", d.size, n);
		ok(!err && same, "%zu floats: every rank holds the same bits", n);
		free(x);
		free(want);
		free(agree);
	}
	unsigned char blob[1000];
	for (size_t i = 0; i < sizeof blob; i++)
		blob[i] = d.rank == 0 ? (unsigned char)(i * 7) : 0;
	err = dp_bcast(&d, blob, sizeof blob);
	int good = !err;
	for (size_t i = 0; i < sizeof blob; i++)
		if (blob[i] != (unsigned char)(i * 7))
			good = 0;
	double g = good, gall[64];
	if (!err && d.size <= 64)
		err = dp_allgather_f64(&d, &g, gall, 1);
	for (int r = 0; !err && r < d.size && r < 64; r++)
		if (gall[r] != 1)
			good = 0;
	ok(!err && good, "broadcast: rank 0's bytes everywhere");
	ok(dp_barrier(&d) == V_OK, "barrier");
	test_zero(&d);
	dp_close(&d);
}

int
main(void)
{
	const char *size = getenv("OMPI_COMM_WORLD_SIZE");

	if (size != NULL && atoi(size) > 1) {
		test_ranks();
		return done_testing();
	}
	test_env();
	test_slices();
	test_alone();
	return done_testing();
}
