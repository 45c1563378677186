/* fuzz_gguf.c: libFuzzer target for the GGUF reader.  An accepted file's
 * keys, strings and tensor data must lie inside the buffer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/gguf.h"
#include "../../lib/verr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reading every byte into a volatile keeps the reads from being optimised
 * away, so AddressSanitizer sees each one. */
static volatile unsigned fuzz_sink;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gguf_file f;

	uint64_t v;

	if (gguf_open_mem(&f, data, size, "fuzz") != V_OK)
		return 0;
	for (size_t i = 0; i < f.n_kv; i++) {
		const struct gguf_kv *kv = &f.kv[i];
		if (kv->val < data || kv->val_len > size - (size_t)(kv->val - data))
			abort();
		for (uint64_t k = 0; k < kv->val_len; k++)
			fuzz_sink += kv->val[k];
		if (kv->str != NULL)
			fuzz_sink += (unsigned)strlen(kv->str);
		(void)gguf_kv_uint(&f, kv->key, &v);
		if (gguf_find_kv(&f, kv->key) != kv)
			abort();
	}
	for (size_t i = 0; i < f.n_t; i++) {
		const struct gguf_tensor *t = &f.t[i];
		const unsigned char *p = t->data;
		if (t->nbytes > 0 && (p < data || t->nbytes > size - (size_t)(p - data)))
			abort();
		for (uint64_t k = 0; k < t->nbytes; k++)
			fuzz_sink += p[k];
	}
	gguf_close(&f);
	return 0;
}
