/* fuzz_safetensors.c: libFuzzer target for the safetensors reader.
 * Whatever the bytes, st_open_mem either refuses them or returns tensors
 * whose data lies inside the buffer; touching every byte of every tensor
 * (and converting the float ones) lets AddressSanitizer check that.  A
 * configuration it accepts from the metadata must pass vlm_config_check. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/quant.h"
#include "../../lib/safetensors.h"
#include "../../lib/verr.h"
#include "../../lib/vlm_config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reading every byte into a volatile keeps the reads from being optimised
 * away, so AddressSanitizer sees each one. */
static volatile unsigned fuzz_sink;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct st_file f;


	if (st_open_mem(&f, data, size, "fuzz") != V_OK)
		return 0;
	for (size_t i = 0; i < f.n; i++) {
		const struct st_tensor *t = &f.t[i];
		const unsigned char *p = t->data;
		if (p < data || (size_t)(p - data) > size || t->nbytes > size - (size_t)(p - data))
			abort();
		for (uint64_t k = 0; k < t->nbytes; k++)
			fuzz_sink += p[k];
		if (st_find(&f, t->name) == NULL)
			abort();
		/* Dequantising goes through the scale tensor's checks. */
		uint64_t n;
		vq_tensor_numel(&f, t, &n);
		if (n <= (1u << 20)) {
			float *x = malloc(n * sizeof *x + 1);
			if (x != NULL)
				(void)vq_tensor_f32(&f, t, x);
			free(x);
		}
	}
	for (size_t i = 0; i < f.n_meta; i++)
		fuzz_sink += (unsigned)strlen(f.meta[i].key) + (unsigned)strlen(f.meta[i].value);
	/* The model configuration in the metadata is a parser too. */
	struct vlm_config c;
	if (st_vesper_config(&f, &c) == V_OK && vlm_config_check(&c) != V_OK)
		abort();
	st_close(&f);
	return 0;
}
