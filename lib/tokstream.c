/* tokstream.c: reading and writing the token stream. */
#include <stdlib.h>
#include <string.h>

#include "tokstream.h"
#include "verr.h"
#include "vio.h"

static int
grow(void **buf, size_t *cap, size_t need)
{
	if (need <= *cap)
		return V_OK;
	size_t ncap = *cap ? *cap : 4096;
	while (ncap < need)
		ncap *= 2;
	void *nb = realloc(*buf, ncap);
	if (nb == NULL)
		return v_error(V_ERR_NOMEM, "out of memory for a %zu-byte document", need);
	*buf = nb;
	*cap = ncap;
	return V_OK;
}

int
ts_writer_open(struct ts_writer *w, FILE *fp, const char *name, uint32_t vocab,
    int width, const unsigned char tokenizer[32])
{
	unsigned char h[TS_HEADER_SIZE];

	memset(w, 0, sizeof *w);
	if (width == 0)
		width = vocab <= 65536 ? 2 : 4;
	if (width != 2 && width != 4)
		return v_error(V_ERR_ARG, "token width must be 2 or 4, not %d", width);
	if (vocab == 0 || (width == 2 && vocab > 65536))
		return v_error(V_ERR_RANGE, "vocabulary of %u does not fit %d-byte tokens",
		    vocab, width);
	w->fp = fp;
	w->name = name;
	w->vocab = vocab;
	w->width = width;
	memcpy(h, TS_MAGIC, 4);
	v_put_u16(h + 4, TS_VERSION);
	v_put_u16(h + 6, (uint16_t)width);
	v_put_u32(h + 8, vocab);
	v_put_u32(h + 12, 0);
	if (tokenizer != NULL)
		memcpy(w->tokenizer, tokenizer, 32);
	memcpy(h + 16, w->tokenizer, 32);
	return v_write_all(fp, h, sizeof h, name);
}

int
ts_write_doc(struct ts_writer *w, const uint32_t *ids, size_t n)
{
	size_t bytes = 4 + n * (size_t)w->width;
	int err;

	if (n >= TS_MAX_DOC_TOKENS)
		return v_error(V_ERR_RANGE, "%s: document of %zu tokens is too long",
		    w->name, n);
	void *b = w->buf;
	err = grow(&b, &w->cap, bytes);
	w->buf = b;
	if (err)
		return err;
	v_put_u32(w->buf, (uint32_t)n);
	unsigned char *p = w->buf + 4;
	for (size_t i = 0; i < n; i++) {
		if (ids[i] >= w->vocab)
			return v_error(V_ERR_RANGE, "%s: token id %u beyond vocabulary %u",
			    w->name, ids[i], w->vocab);
		if (w->width == 2)
			v_put_u16(p + 2 * i, (uint16_t)ids[i]);
		else
			v_put_u32(p + 4 * i, ids[i]);
	}
	w->docs++;
	w->tokens += n;
	return v_write_all(w->fp, w->buf, bytes, w->name);
}

int
ts_writer_close(struct ts_writer *w)
{
	unsigned char end[20];
	int err;

	v_put_u32(end, TS_END);
	v_put_u64(end + 4, w->docs);
	v_put_u64(end + 12, w->tokens);
	err = v_write_all(w->fp, end, sizeof end, w->name);
	if (err == V_OK && fflush(w->fp) != 0)
		err = v_error_errno(V_ERR_IO, "%s: write error", w->name);
	ts_writer_free(w);
	return err;
}

void
ts_writer_free(struct ts_writer *w)
{
	free(w->buf);
	w->buf = NULL;
	w->cap = 0;
}

int
ts_reader_open(struct ts_reader *r, FILE *fp, const char *name)
{
	unsigned char h[TS_HEADER_SIZE];
	int err;

	memset(r, 0, sizeof *r);
	r->fp = fp;
	r->name = name;
	err = v_read_exact(fp, h, sizeof h, name);
	if (err == V_ERR_TRUNCATED)
		return v_error(V_ERR_FORMAT, "%s: not a token stream (too short for a header)",
		    name);
	if (err)
		return err;
	if (memcmp(h, TS_MAGIC, 4) != 0)
		return v_error(V_ERR_FORMAT, "%s: not a token stream (bad magic)", name);
	if (v_get_u16(h + 4) != TS_VERSION)
		return v_error(V_ERR_UNSUPPORTED, "%s: token stream version %u (this is %d)",
		    name, v_get_u16(h + 4), TS_VERSION);
	r->width = v_get_u16(h + 6);
	r->vocab = v_get_u32(h + 8);
	if ((r->width != 2 && r->width != 4) || r->vocab == 0 ||
	    (r->width == 2 && r->vocab > 65536))
		return v_error(V_ERR_FORMAT, "%s: bad header (width %d, vocabulary %u)",
		    name, r->width, r->vocab);
	if (v_get_u32(h + 12) != 0)
		return v_error(V_ERR_UNSUPPORTED, "%s: unknown flags %#x", name,
		    v_get_u32(h + 12));
	memcpy(r->tokenizer, h + 16, 32);
	return V_OK;
}

/* The next document's ids, checked against the vocabulary, left packed at
 * the stream's width in r->raw: 1 with *n set, 0 at the end record. */
static int
read_raw(struct ts_reader *r, size_t *n)
{
	unsigned char l[4];
	int err;

	if (r->ended)
		return 0;
	err = v_read_exact(r->fp, l, 4, r->name);
	if (err == V_ERR_TRUNCATED)
		return v_error(V_ERR_TRUNCATED,
		    "%s: token stream ends without its end record after %llu documents "
		    "(the writer stopped early?)", r->name, (unsigned long long)r->docs);
	if (err)
		return err;
	uint32_t len = v_get_u32(l);
	if (len == TS_END) {
		unsigned char e[16];
		err = v_read_exact(r->fp, e, 16, r->name);
		if (err)
			return err == V_ERR_TRUNCATED ? v_error(V_ERR_TRUNCATED,
			    "%s: truncated end record", r->name) : err;
		if (v_get_u64(e) != r->docs || v_get_u64(e + 8) != r->tokens)
			return v_error(V_ERR_FORMAT,
			    "%s: end record says %llu documents and %llu tokens, the stream "
			    "held %llu and %llu", r->name,
			    (unsigned long long)v_get_u64(e),
			    (unsigned long long)v_get_u64(e + 8),
			    (unsigned long long)r->docs, (unsigned long long)r->tokens);
		r->ended = 1;
		return 0;
	}
	if (len >= TS_MAX_DOC_TOKENS)
		return v_error(V_ERR_FORMAT, "%s: document %llu claims %u tokens",
		    r->name, (unsigned long long)r->docs, len);
	size_t bytes = (size_t)len * (size_t)r->width;
	void *raw = r->raw;
	err = grow(&raw, &r->rawcap, bytes ? bytes : 1);
	r->raw = raw;
	if (err)
		return err;
	err = v_read_exact(r->fp, r->raw, bytes, r->name);
	if (err == V_ERR_TRUNCATED)
		return v_error(V_ERR_TRUNCATED, "%s: document %llu is cut short",
		    r->name, (unsigned long long)r->docs);
	if (err)
		return err;
	/* The largest id first, without a branch a token; the culprit is
	 * looked for only when there is one. */
	uint32_t max = 0;
	if (r->width == 2)
		for (uint32_t i = 0; i < len; i++) {
			uint32_t id = v_get_u16(r->raw + 2 * (size_t)i);
			max = id > max ? id : max;
		}
	else
		for (uint32_t i = 0; i < len; i++) {
			uint32_t id = v_get_u32(r->raw + 4 * (size_t)i);
			max = id > max ? id : max;
		}
	if (max >= r->vocab) {
		for (uint32_t i = 0; i < len; i++) {
			uint32_t id = r->width == 2 ? v_get_u16(r->raw + 2 * (size_t)i)
			    : v_get_u32(r->raw + 4 * (size_t)i);
			if (id >= r->vocab)
				return v_error(V_ERR_RANGE,
				    "%s: document %llu: token id %u beyond vocabulary %u",
				    r->name, (unsigned long long)r->docs, id, r->vocab);
		}
	}
	r->docs++;
	r->tokens += len;
	*n = len;
	return 1;
}

int
ts_read_doc(struct ts_reader *r, const uint32_t **ids, size_t *n)
{
	size_t len;
	int got = read_raw(r, &len);

	if (got <= 0)
		return got;
	void *idbuf = r->ids;
	int err = grow(&idbuf, &r->cap, (len ? len : 1) * sizeof *r->ids);
	r->ids = idbuf;
	if (err)
		return err;
	for (size_t i = 0; i < len; i++)
		r->ids[i] = r->width == 2 ? v_get_u16(r->raw + 2 * i) : v_get_u32(r->raw + 4 * i);
	*ids = r->ids;
	*n = len;
	return 1;
}

int
ts_read_doc_raw(struct ts_reader *r, const unsigned char **raw, size_t *n)
{
	int got = read_raw(r, n);

	if (got == 1)
		*raw = r->raw;
	return got;
}

void
ts_reader_free(struct ts_reader *r)
{
	free(r->ids);
	free(r->raw);
	r->ids = NULL;
	r->raw = NULL;
	r->cap = r->rawcap = 0;
}
