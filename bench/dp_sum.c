/* dp_sum.c: the time of one round of lib/dp.h's fixed-order gradient sum
 * (an all-to-all and the additions of this rank's slice) and of the final
 * all-gather, for arrays of the sizes of the presets, under mpirun.  Run
 * by bench/dp.sh: it tells whether overlapping the sum with the next
 * micro-batch's backward pass could pay. */
#include <stdio.h>
#include <stdlib.h>

#include "../lib/dp.h"
#include "../lib/verr.h"
#include "../lib/vio.h"

int
main(int argc, char **argv)
{
	struct dp d;
	int err = dp_open(&d), reps = 20;

	if (err) {
		fprintf(stderr, "dp_sum: %s\n", v_errmsg(err));
		return 1;
	}
	for (int a = 1; a < argc; a++) {
		size_t n = strtoull(argv[a], NULL, 10);
		float *x = calloc(n ? n : 1, sizeof *x);
		if (x == NULL)
			dp_abort(&d, 1);
		for (size_t i = 0; i < n; i++)
			x[i] = (float)(i % 1000) * 1e-3f;
		/* Warm the scratch and the transport first. */
		if (dp_sum_add(&d, x, n) || dp_sum_end(&d, x, n))
			dp_abort(&d, 1);
		double t0 = v_now();
		for (int r = 0; r < reps; r++)
			if (dp_sum_add(&d, x, n))
				dp_abort(&d, 1);
		double t1 = v_now();
		if (dp_sum_end(&d, x, n))
			dp_abort(&d, 1);
		double t2 = v_now();
		if (d.rank == 0)
			printf("| %d | %zu | %.2f | %.2f |\n", d.size, n,
			    (t1 - t0) / reps * 1e3, (t2 - t1) * 1e3);
		free(x);
	}
	dp_close(&d);
	return 0;
}
