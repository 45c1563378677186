/* fuzz_tok.c: libFuzzer target for the tokenizer's parsers.
 *
 * Each input is tried as a tokenizer file (tok_load must refuse it or load
 * it, never crash), normalised with the steps its first byte picks, and
 * encoded with a tokenizer trained on tests/tok/dialogue.txt, where
 * decode(encode(x)) must equal normalize(x).  `make fuzz` trains that
 * tokenizer first and names it in FUZZ_TOK.
 *
 * FUZZ_TOK names the tokenizer (default /tmp/fuzz-tok.tok). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../lib/tok.h"
#include "../../lib/verr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct tok *fz_tok;
static struct tok_enc *fz_enc;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (fz_tok == NULL) {
		const char *p = getenv("FUZZ_TOK");
		if (tok_load(p ? p : "/tmp/fuzz-tok.tok", &fz_tok) ||
		    tok_enc_new(fz_tok, &fz_enc))
			abort();
	}
	char path[64];
	snprintf(path, sizeof path, "/tmp/fuzz-tok-in.%d", (int)getpid());
	FILE *f = fopen(path, "wb");
	if (f == NULL)
		abort();
	fwrite(data, 1, size, f);
	fclose(f);
	struct tok *t = NULL;
	if (tok_load(path, &t) == V_OK)
		tok_free(t);

	unsigned steps = size ? (data[0] | (unsigned)data[0] << 8) & TOK_NORM_ALL
	    : TOK_NORM_ALL;
	struct tok_buf a = { 0 }, b = { 0 }, n = { 0 };
	struct tok_ids ids = { 0 };
	tok_normalize(steps, (const char *)data, size, &a, NULL);
	if (tok_encode(fz_enc, (const char *)data, size, &ids, NULL) == V_OK) {
		tok_normalize(tok_norm_steps(fz_tok), (const char *)data, size, &n, NULL);
		if (tok_decode(fz_tok, ids.v, ids.n, &b) != V_OK || n.n != b.n ||
		    (n.n && memcmp(n.p, b.p, n.n) != 0))
			abort();
	}
	tok_utf8_complete(data, size);
	tok_buf_free(&a);
	tok_buf_free(&b);
	tok_buf_free(&n);
	tok_ids_free(&ids);
	return 0;
}
