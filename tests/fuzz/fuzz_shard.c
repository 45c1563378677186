/* fuzz_shard.c: libFuzzer target for the shard file and manifest readers.
 * The first byte picks the reader; the rest is the file.  A shard that
 * loads must also pass the streaming check and hold what its header says;
 * one that does not load must fail that check too. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../lib/shard.h"
#include "../../lib/verr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];

static void
put(const char *path, const uint8_t *p, size_t n)
{
	FILE *f = fopen(path, "wb");
	if (f == NULL)
		abort();
	if (n > 0 && fwrite(p, 1, n, f) != n)
		abort();
	fclose(f);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[128];

	if (dir[0] == '\0') {
		snprintf(dir, sizeof dir, "/tmp/vesper-fuzz-shard.%ld", (long)getpid());
		if (mkdir(dir, 0700) != 0 && access(dir, W_OK) != 0)
			abort();
	}
	if (size < 1)
		return 0;
	if (data[0] & 1) {
		struct shard_manifest m;
		snprintf(path, sizeof path, "%s/%s", dir, SHARD_MANIFEST);
		put(path, data + 1, size - 1);
		if (shard_manifest_load(&m, dir) == V_OK) {
			for (int s = 0; s < 2; s++) {
				uint64_t t = 0;
				for (size_t i = 0; i < m.split[s].n; i++) {
					if (strchr(m.split[s].shards[i].file, '/') != NULL)
						abort();
					t += m.split[s].shards[i].tokens;
				}
				if (t != m.split[s].tokens)
					abort();
			}
			shard_manifest_free(&m);
		}
		return 0;
	}
	snprintf(path, sizeof path, "%s/x.vsh", dir);
	put(path, data + 1, size - 1);
	struct shard_data d;
	struct shard_header h;
	int a = shard_file_load(path, &d);
	int b = shard_file_verify(path, &h);
	if ((a == V_OK) != (b == V_OK))
		abort();
	if (a == V_OK) {
		uint64_t sum = 0;
		for (uint64_t i = 0; i < d.h.pieces; i++)
			sum += d.lengths[i];
		if (sum != d.h.tokens)
			abort();
		for (uint64_t i = 0; i < d.h.tokens; i++)
			if (d.ids[i] >= d.h.vocab)
				abort();
		shard_data_free(&d);
	}
	return 0;
}
