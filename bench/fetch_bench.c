/* fetch_bench.c: time one verified download with http_download (the part
 * of vfetch that bench/fetch.sh compares with curl).
 *   fetch_bench URL DEST SIZE SHA256HEX */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/http.h"
#include "../lib/verr.h"
#include "../lib/vio.h"
#include "../lib/vprogress.h"

int
main(int argc, char **argv)
{
	struct http_opts o;
	unsigned char sha[32];

	if (argc != 5 || strlen(argv[4]) != 64)
		return 2;
	for (int i = 0; i < 32; i++)
		sscanf(argv[4] + 2 * i, "%2hhx", &sha[i]);
	http_opts_default(&o);
	o.progress = V_PROGRESS_OFF;
	double t0 = v_now();
	int err = http_download(&o, argv[1], argv[2], atoll(argv[3]), sha, NULL, "bench");
	double t1 = v_now();
	if (err) {
		fprintf(stderr, "fetch_bench: %s\n", v_errmsg(err));
		return 1;
	}
	printf("%.4f\n", t1 - t0);
	return 0;
}
