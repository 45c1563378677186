/* test_tokstream.c: the token stream round trip and every way a stream can
 * be broken: foreign, truncated, ids beyond the vocabulary, bad counts. */
#include <stdint.h>
#include <stdlib.h>

#include "../../lib/tokstream.h"
#include "../../lib/verr.h"
#include "../../lib/vio.h"
#include "tap.h"

/* Write docs of random ids to a memory stream; return its bytes. */
static char *
make_stream(uint32_t vocab, int width, int ndocs, size_t *len, uint32_t **all,
    size_t *ntok)
{
	char *buf = NULL;
	FILE *fp = open_memstream(&buf, len);
	struct ts_writer w;
	unsigned char sha[32];

	for (int i = 0; i < 32; i++)
		sha[i] = (unsigned char)(i * 7 + 1);
	*all = malloc(100000 * sizeof **all);
	*ntok = 0;
	ts_writer_open(&w, fp, "mem", vocab, width, sha);
	for (int d = 0; d < ndocs; d++) {
		size_t n = (size_t)(rand() % 300);	/* empty documents too */
		uint32_t *ids = *all + *ntok;
		for (size_t i = 0; i < n; i++)
			ids[i] = (uint32_t)rand() % vocab;
		ts_write_doc(&w, ids, n);
		*ntok += n;
	}
	ts_writer_close(&w);
	fclose(fp);
	return buf;
}

/* Read the whole stream; return the first error or 0, and the tokens. */
static int
read_all(const char *buf, size_t len, uint32_t *out, size_t *n, uint64_t *docs,
    unsigned char sha[32])
{
	FILE *fp = fmemopen((void *)buf, len, "rb");
	struct ts_reader r;
	const uint32_t *ids;
	size_t k;
	int err = ts_reader_open(&r, fp, "mem");

	*n = 0;
	if (err == V_OK) {
		memcpy(sha, r.tokenizer, 32);
		while ((err = ts_read_doc(&r, &ids, &k)) == 1) {
			if (out != NULL)
				memcpy(out + *n, ids, k * sizeof *ids);
			*n += k;
		}
		*docs = r.docs;
	}
	ts_reader_free(&r);
	fclose(fp);
	return err;
}

int
main(void)
{
	uint32_t *all, *back = malloc(100000 * sizeof *back);
	size_t len, ntok, n;
	uint64_t docs;
	unsigned char sha[32];

	srand(12345);
	for (int width = 2; width <= 4; width += 2) {
		uint32_t vocab = width == 2 ? 4096 : 100000;
		char *buf = make_stream(vocab, width, 50, &len, &all, &ntok);
		is_int(read_all(buf, len, back, &n, &docs, sha), 0,
		    "width %d: the stream reads back", width);
		ok(n == ntok && memcmp(back, all, n * sizeof *all) == 0,
		    "width %d: every id comes back (%zu)", width, n);
		is_int(docs, 50, "width %d: every document, empty ones included", width);
		ok(sha[0] == 1 && sha[31] == (unsigned char)(31 * 7 + 1),
		    "width %d: the tokenizer hash comes back", width);

		/* Every truncation point is an error, never a shorter corpus. */
		int bad = 0;
		for (size_t cut = 0; cut < len; cut += 1 + cut / 50) {
			if (read_all(buf, cut, NULL, &n, &docs, sha) >= 0)
				bad++;
		}
		is_int(bad, 0, "width %d: a stream cut anywhere is an error", width);
		free(buf);
		free(all);
	}

	char *buf = make_stream(300, 2, 5, &len, &all, &ntok);
	buf[0] = 'X';
	is_int(read_all(buf, len, NULL, &n, &docs, sha), V_ERR_FORMAT, "bad magic");
	ok(strstr(v_errmsg(V_ERR_FORMAT), "not a token stream") != NULL,
	    "and the message says what it is not");
	buf[0] = 'V';
	buf[4] = 9;
	is_int(read_all(buf, len, NULL, &n, &docs, sha), V_ERR_UNSUPPORTED,
	    "an unknown version");
	buf[4] = 1;
	/* The first document's first id, made 300 = the vocabulary size. */
	size_t first = TS_HEADER_SIZE;
	while (v_get_u32((unsigned char *)buf + first) == 0)
		first += 4;
	v_put_u16((unsigned char *)buf + first + 4, 300);
	is_int(read_all(buf, len, NULL, &n, &docs, sha), V_ERR_RANGE,
	    "an id beyond the vocabulary");
	v_put_u16((unsigned char *)buf + first + 4, 1);
	v_put_u64((unsigned char *)buf + len - 8, 999999);
	is_int(read_all(buf, len, NULL, &n, &docs, sha), V_ERR_FORMAT,
	    "an end record that disagrees with the stream");
	v_put_u32((unsigned char *)buf + first, 0x7FFFFFFF);
	is_int(read_all(buf, len, NULL, &n, &docs, sha), V_ERR_FORMAT,
	    "an absurd document length");
	free(buf);
	free(all);

	struct ts_writer w;
	FILE *fp = tmpfile();
	is_int(ts_writer_open(&w, fp, "t", 70000, 2, NULL), V_ERR_RANGE,
	    "a vocabulary too large for 2-byte ids is refused");
	is_int(ts_writer_open(&w, fp, "t", 100, 0, NULL), V_OK, "width chosen");
	is_int(w.width, 2, "2 bytes for a small vocabulary");
	uint32_t big = 100;
	is_int(ts_write_doc(&w, &big, 1), V_ERR_RANGE, "the writer refuses an id beyond");
	ts_writer_free(&w);
	fclose(fp);
	free(back);
	return done_testing();
}
