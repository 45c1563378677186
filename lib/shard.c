/* shard.c: shard files and the manifest. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>
#include <xxhash.h>
#include <zstd.h>

#include "shard.h"
#include "verr.h"
#include "vio.h"
#include "vjson.h"
#include "vhash.h"

const char *
shard_split_name(int split)
{
	return split == 1 ? "val" : "train";
}

char *
shard_path(const char *dir, const char *name)
{
	size_t a = strlen(dir), b = strlen(name);
	char *p = malloc(a + b + 2);

	if (p == NULL)
		return NULL;
	memcpy(p, dir, a);
	size_t k = a;
	if (a > 0 && dir[a - 1] != '/')
		p[k++] = '/';
	memcpy(p + k, name, b + 1);
	return p;
}

void
shard_header_encode(const struct shard_header *h, unsigned char o[SHARD_HEADER_SIZE])
{
	memset(o, 0, SHARD_HEADER_SIZE);
	memcpy(o, SHARD_MAGIC, 4);
	v_put_u16(o + 4, SHARD_VERSION);
	v_put_u16(o + 6, h->width);
	v_put_u32(o + 8, h->vocab);
	v_put_u32(o + 12, h->flags);
	v_put_u64(o + 16, h->pieces);
	v_put_u64(o + 24, h->tokens);
	v_put_u64(o + 32, h->body_bytes);
	v_put_u64(o + 40, h->body_xxh3);
	memcpy(o + 48, h->tokenizer, 32);
	v_put_u32(o + 80, h->split);
	v_put_u32(o + 84, h->index);
	v_put_u64(o + 88, XXH3_64bits(o, 88));
}

int
shard_header_decode(struct shard_header *h, const unsigned char in[SHARD_HEADER_SIZE],
    const char *name)
{
	if (memcmp(in, SHARD_MAGIC, 4) != 0)
		return v_error(V_ERR_FORMAT, "%s: not a shard (bad magic)", name);
	if (v_get_u16(in + 4) != SHARD_VERSION)
		return v_error(V_ERR_UNSUPPORTED, "%s: shard version %u (this is %d)",
		    name, v_get_u16(in + 4), SHARD_VERSION);
	if (v_get_u64(in + 88) != XXH3_64bits(in, 88))
		return v_error(V_ERR_CHECKSUM, "%s: shard header checksum mismatch "
		    "(the header is corrupt)", name);
	h->width = v_get_u16(in + 6);
	h->vocab = v_get_u32(in + 8);
	h->flags = v_get_u32(in + 12);
	h->pieces = v_get_u64(in + 16);
	h->tokens = v_get_u64(in + 24);
	h->body_bytes = v_get_u64(in + 32);
	h->body_xxh3 = v_get_u64(in + 40);
	memcpy(h->tokenizer, in + 48, 32);
	h->split = v_get_u32(in + 80);
	h->index = v_get_u32(in + 84);
	if ((h->width != 2 && h->width != 4) || h->vocab == 0 ||
	    (h->width == 2 && h->vocab > 65536) || h->split > 1 ||
	    (h->flags & ~3u) != 0)
		return v_error(V_ERR_FORMAT, "%s: bad shard header (width %u, vocabulary "
		    "%u, split %u, flags %#x)", name, h->width, h->vocab, h->split, h->flags);
	/* Bounds that keep size arithmetic far from overflow. */
	if (h->pieces > (1ull << 32) || h->tokens > (1ull << 32) ||
	    h->body_bytes > (1ull << 40))
		return v_error(V_ERR_FORMAT, "%s: implausible shard sizes", name);
	return V_OK;
}

int
shard_file_write(const char *path, struct shard_header *h, const void *raw,
    size_t raw_len, int level, int threads, void *zctx)
{
	ZSTD_CCtx *cc = zctx ? zctx : ZSTD_createCCtx();
	const size_t outlen = ZSTD_CStreamOutSize();
	unsigned char *out = malloc(outlen);
	unsigned char hdr[SHARD_HEADER_SIZE];
	XXH3_state_t *xs = XXH3_createState();
	struct v_atomic a;
	int err, opened = 0;

	if (cc == NULL || out == NULL || xs == NULL) {
		err = v_error(V_ERR_NOMEM, "%s: out of memory", path);
		goto done;
	}
	ZSTD_CCtx_reset(cc, ZSTD_reset_session_and_parameters);
	ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, level);
	ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);
	if (threads > 0) {
		size_t r = ZSTD_CCtx_setParameter(cc, ZSTD_c_nbWorkers, threads);
		if (ZSTD_isError(r)) {
			err = v_error(V_ERR_UNSUPPORTED, "%s: this libzstd cannot use "
			    "threads (%s)", path, ZSTD_getErrorName(r));
			goto done;
		}
	}
	ZSTD_CCtx_setPledgedSrcSize(cc, raw_len);
	XXH3_64bits_reset(xs);
	if ((err = v_atomic_open(&a, path)))
		goto done;
	opened = 1;
	/* The body streams out behind a placeholder header, which is
	 * rewritten once the body's size and hash are known. */
	memset(hdr, 0, sizeof hdr);
	if ((err = v_write_all(a.fp, hdr, sizeof hdr, path)))
		goto done;
	ZSTD_inBuffer ib = { raw, raw_len, 0 };
	uint64_t body = 0;
	size_t r;
	do {
		ZSTD_outBuffer ob = { out, outlen, 0 };
		r = ZSTD_compressStream2(cc, &ob, &ib, ZSTD_e_end);
		if (ZSTD_isError(r)) {
			err = v_error(V_ERR_IO, "%s: zstd: %s", path, ZSTD_getErrorName(r));
			goto done;
		}
		if ((err = v_write_all(a.fp, out, ob.pos, path)))
			goto done;
		XXH3_64bits_update(xs, out, ob.pos);
		body += ob.pos;
	} while (r != 0);
	h->body_bytes = body;
	h->body_xxh3 = XXH3_64bits_digest(xs);
	shard_header_encode(h, hdr);
	if (fseek(a.fp, 0, SEEK_SET) != 0) {
		err = v_error_errno(V_ERR_IO, "%s: seek", path);
		goto done;
	}
	if ((err = v_write_all(a.fp, hdr, sizeof hdr, path)))
		goto done;
	opened = 0;
	err = v_atomic_commit(&a);
done:
	if (opened)
		v_atomic_abort(&a);
	free(out);
	XXH3_freeState(xs);
	if (zctx == NULL)
		ZSTD_freeCCtx(cc);
	return err;
}

static int
read_header_fp(FILE *fp, const char *path, struct shard_header *h, uint64_t *fsize)
{
	unsigned char b[SHARD_HEADER_SIZE];
	struct stat st;
	int err;

	if (fstat(fileno(fp), &st) != 0)
		return v_error_errno(V_ERR_IO, "%s", path);
	err = v_read_exact(fp, b, sizeof b, path);
	if (err == V_ERR_TRUNCATED)
		return v_error(V_ERR_TRUNCATED, "%s: shard too short for its header", path);
	if (err)
		return err;
	err = shard_header_decode(h, b, path);
	if (err)
		return err;
	if ((uint64_t)st.st_size != SHARD_HEADER_SIZE + h->body_bytes)
		return v_error((uint64_t)st.st_size < SHARD_HEADER_SIZE + h->body_bytes ?
		    V_ERR_TRUNCATED : V_ERR_FORMAT,
		    "%s: shard is %llu bytes, its header says %llu (truncated or "
		    "overwritten?)", path, (unsigned long long)st.st_size,
		    (unsigned long long)(SHARD_HEADER_SIZE + h->body_bytes));
	*fsize = (uint64_t)st.st_size;
	return V_OK;
}

int
shard_file_header(const char *path, struct shard_header *h)
{
	FILE *fp = fopen(path, "rb");
	uint64_t fsize;

	if (fp == NULL)
		return v_error_errno(errno == ENOENT ? V_ERR_NOTFOUND : V_ERR_IO, "%s", path);
	int err = read_header_fp(fp, path, h, &fsize);
	fclose(fp);
	return err;
}

int
shard_file_load(const char *path, struct shard_data *d)
{
	FILE *fp = fopen(path, "rb");
	unsigned char *body = NULL, *raw = NULL;
	uint64_t fsize;
	int err;

	memset(d, 0, sizeof *d);
	if (fp == NULL)
		return v_error_errno(errno == ENOENT ? V_ERR_NOTFOUND : V_ERR_IO, "%s", path);
	err = read_header_fp(fp, path, &d->h, &fsize);
	if (err)
		goto fail;
	struct shard_header *h = &d->h;
	size_t raw_len = (size_t)(4 * h->pieces + (uint64_t)h->width * h->tokens);
	/* The body is read and checked before the (possibly large) buffers
	 * its header asks for are allocated. */
	body = malloc(h->body_bytes ? h->body_bytes : 1);
	if (body == NULL) {
		err = v_error(V_ERR_NOMEM, "%s: out of memory", path);
		goto fail;
	}
	err = v_read_exact(fp, body, h->body_bytes, path);
	if (err)
		goto fail;
	if (XXH3_64bits(body, h->body_bytes) != h->body_xxh3) {
		err = v_error(V_ERR_CHECKSUM, "%s: shard body checksum mismatch (the "
		    "file is corrupt)", path);
		goto fail;
	}
	unsigned long long want = ZSTD_getFrameContentSize(body, h->body_bytes);
	if (want != raw_len) {
		err = v_error(V_ERR_FORMAT, "%s: compressed body holds %lld bytes, the "
		    "header implies %zu", path, (long long)want, raw_len);
		goto fail;
	}
	raw = malloc(raw_len ? raw_len : 1);
	d->lengths = malloc((h->pieces ? h->pieces : 1) * sizeof *d->lengths);
	d->ids = malloc((h->tokens ? h->tokens : 1) * sizeof *d->ids);
	if (raw == NULL || d->lengths == NULL || d->ids == NULL) {
		err = v_error(V_ERR_NOMEM, "%s: out of memory", path);
		goto fail;
	}
	size_t got = ZSTD_decompress(raw, raw_len, body, h->body_bytes);
	if (ZSTD_isError(got) || got != raw_len) {
		err = v_error(V_ERR_FORMAT, "%s: cannot decompress the body: %s", path,
		    ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short");
		goto fail;
	}
	uint64_t sum = 0;
	for (uint64_t i = 0; i < h->pieces; i++) {
		d->lengths[i] = v_get_u32(raw + 4 * i);
		sum += d->lengths[i];
	}
	if (sum != h->tokens) {
		err = v_error(V_ERR_FORMAT, "%s: piece lengths sum to %llu tokens, the "
		    "header says %llu", path, (unsigned long long)sum,
		    (unsigned long long)h->tokens);
		goto fail;
	}
	const unsigned char *p = raw + 4 * h->pieces;
	uint32_t bad = 0;
	if (h->width == 2) {
		for (uint64_t i = 0; i < h->tokens; i++)
			d->ids[i] = v_get_u16(p + 2 * i);
	} else {
		for (uint64_t i = 0; i < h->tokens; i++)
			d->ids[i] = v_get_u32(p + 4 * i);
	}
	/* One pass with no branch in the loop body; the slow search for the
	 * culprit happens only on failure. */
	for (uint64_t i = 0; i < h->tokens; i++)
		bad |= d->ids[i] >= h->vocab;
	if (bad) {
		for (uint64_t i = 0; i < h->tokens; i++)
			if (d->ids[i] >= h->vocab) {
				err = v_error(V_ERR_RANGE, "%s: token %llu: id %u beyond "
				    "vocabulary %u", path, (unsigned long long)i,
				    d->ids[i], h->vocab);
				goto fail;
			}
	}
	free(body);
	free(raw);
	fclose(fp);
	return V_OK;
fail:
	free(body);
	free(raw);
	fclose(fp);
	shard_data_free(d);
	return err;
}

/* The streaming check of a decompressed body: piece lengths, then ids. */
struct body_check {
	const struct shard_header *h;
	uint64_t pos;		/* decompressed bytes seen */
	uint64_t sum;		/* of the piece lengths */
	uint64_t bad_at;	/* index of the first id beyond the vocabulary + 1 */
	uint32_t bad_id;
	unsigned char carry[4];
	size_t ncarry;
};

static void
check_unit(struct body_check *c, const unsigned char *u, size_t unit)
{
	uint64_t lbytes = 4 * c->h->pieces;

	if (c->pos < lbytes) {
		c->sum += v_get_u32(u);
	} else {
		uint32_t id = unit == 2 ? v_get_u16(u) : v_get_u32(u);
		if (id >= c->h->vocab && c->bad_at == 0) {
			c->bad_at = (c->pos - lbytes) / unit + 1;
			c->bad_id = id;
		}
	}
	c->pos += unit;
}

static void
check_bytes(struct body_check *c, const unsigned char *p, size_t n)
{
	const uint64_t lbytes = 4 * c->h->pieces;

	while (n > 0) {
		size_t unit = c->pos < lbytes ? 4 : c->h->width;
		if (c->ncarry > 0 || n < unit) {
			size_t k = unit - c->ncarry < n ? unit - c->ncarry : n;
			memcpy(c->carry + c->ncarry, p, k);
			c->ncarry += k;
			p += k;
			n -= k;
			if (c->ncarry == unit) {
				check_unit(c, c->carry, unit);
				c->ncarry = 0;
			}
			continue;
		}
		/* Whole units straight from the buffer, up to the end of the
		 * region (lengths are 4-aligned, so ids start on a unit). */
		uint64_t region_left = c->pos < lbytes ? lbytes - c->pos : UINT64_MAX;
		size_t units = n / unit;
		if ((uint64_t)units * unit > region_left)
			units = (size_t)(region_left / unit);
		if (c->pos >= lbytes && unit == 2 && c->bad_at == 0) {
			/* The common case, without a branch a token. */
			uint32_t mx = 0;
			for (size_t i = 0; i < units; i++) {
				uint32_t id = v_get_u16(p + 2 * i);
				mx = id > mx ? id : mx;
			}
			if (mx >= c->h->vocab) {
				for (size_t i = 0; i < units; i++)
					check_unit(c, p + 2 * i, 2);
			} else {
				c->pos += 2 * (uint64_t)units;
			}
		} else {
			for (size_t i = 0; i < units; i++)
				check_unit(c, p + unit * i, unit);
		}
		p += units * unit;
		n -= units * unit;
	}
}

int
shard_file_verify(const char *path, struct shard_header *h)
{
	FILE *fp = fopen(path, "rb");
	ZSTD_DCtx *dc = NULL;
	XXH3_state_t *xs = NULL;
	unsigned char *in = NULL, *out = NULL;
	const size_t inlen = ZSTD_DStreamInSize(), outlen = ZSTD_DStreamOutSize();
	struct body_check c;
	uint64_t fsize, left;
	size_t zr = 1;
	int err;

	if (fp == NULL)
		return v_error_errno(errno == ENOENT ? V_ERR_NOTFOUND : V_ERR_IO, "%s", path);
	if ((err = read_header_fp(fp, path, h, &fsize)))
		goto done;
	dc = ZSTD_createDCtx();
	xs = XXH3_createState();
	in = malloc(inlen);
	out = malloc(outlen);
	if (dc == NULL || xs == NULL || in == NULL || out == NULL) {
		err = v_error(V_ERR_NOMEM, "out of memory");
		goto done;
	}
	XXH3_64bits_reset(xs);
	memset(&c, 0, sizeof c);
	c.h = h;
	const uint64_t raw_len = 4 * h->pieces + (uint64_t)h->width * h->tokens;
	int first = 1;
	/* A decompression failure is reported only after the whole body is
	 * hashed: damage is then named as what it is, a checksum mismatch. */
	int zerr = V_OK;
	char zmsg[256] = "";
	for (left = h->body_bytes; left > 0; ) {
		size_t k = left < inlen ? (size_t)left : inlen;
		if ((err = v_read_exact(fp, in, k, path)))
			goto done;
		left -= k;
		XXH3_64bits_update(xs, in, k);
		if (zerr)
			continue;
		if (first) {
			first = 0;
			unsigned long long want = ZSTD_getFrameContentSize(in, k);
			if (want != raw_len) {
				zerr = V_ERR_FORMAT;
				snprintf(zmsg, sizeof zmsg, "compressed body holds %lld bytes, "
				    "the header implies %llu", (long long)want,
				    (unsigned long long)raw_len);
				continue;
			}
		}
		ZSTD_inBuffer ib = { in, k, 0 };
		while (ib.pos < ib.size && !zerr) {
			if (zr == 0) {
				zerr = V_ERR_FORMAT;
				snprintf(zmsg, sizeof zmsg, "bytes after the compressed body");
				break;
			}
			ZSTD_outBuffer ob = { out, outlen, 0 };
			zr = ZSTD_decompressStream(dc, &ob, &ib);
			if (ZSTD_isError(zr)) {
				zerr = V_ERR_FORMAT;
				snprintf(zmsg, sizeof zmsg, "cannot decompress the body: %s",
				    ZSTD_getErrorName(zr));
			} else if (c.pos + ob.pos > raw_len) {
				zerr = V_ERR_FORMAT;
				snprintf(zmsg, sizeof zmsg, "the body is longer than its header says");
			} else {
				check_bytes(&c, out, ob.pos);
			}
		}
	}
	/* Output still held inside zstd. */
	while (!zerr && zr != 0) {
		ZSTD_inBuffer ib = { in, 0, 0 };
		ZSTD_outBuffer ob = { out, outlen, 0 };
		zr = ZSTD_decompressStream(dc, &ob, &ib);
		if (ZSTD_isError(zr) || (ob.pos == 0 && zr != 0)) {
			zerr = V_ERR_FORMAT;
			snprintf(zmsg, sizeof zmsg, "the compressed body is cut short");
		} else if (c.pos + ob.pos > raw_len) {
			zerr = V_ERR_FORMAT;
			snprintf(zmsg, sizeof zmsg, "the body is longer than its header says");
		} else {
			check_bytes(&c, out, ob.pos);
		}
	}
	if (XXH3_64bits_digest(xs) != h->body_xxh3) {
		err = v_error(V_ERR_CHECKSUM, "%s: shard body checksum mismatch (the file "
		    "is corrupt)", path);
		goto done;
	}
	if (zerr) {
		err = v_error(zerr, "%s: %s", path, zmsg);
		goto done;
	}
	if (c.pos != raw_len) {
		err = v_error(V_ERR_FORMAT, "%s: the body holds %llu bytes, the header "
		    "implies %llu", path, (unsigned long long)c.pos,
		    (unsigned long long)raw_len);
		goto done;
	}
	if (c.sum != h->tokens) {
		err = v_error(V_ERR_FORMAT, "%s: piece lengths sum to %llu tokens, the "
		    "header says %llu", path, (unsigned long long)c.sum,
		    (unsigned long long)h->tokens);
		goto done;
	}
	if (c.bad_at != 0)
		err = v_error(V_ERR_RANGE, "%s: token %llu: id %u beyond vocabulary %u",
		    path, (unsigned long long)(c.bad_at - 1), c.bad_id, h->vocab);
done:
	ZSTD_freeDCtx(dc);
	XXH3_freeState(xs);
	free(in);
	free(out);
	fclose(fp);
	return err;
}

void
shard_data_free(struct shard_data *d)
{
	free(d->lengths);
	free(d->ids);
	d->lengths = NULL;
	d->ids = NULL;
}

static void
u64_hex(char out[17], uint64_t v)
{
	unsigned char b[8];

	for (int i = 0; i < 8; i++)
		b[i] = (unsigned char)(v >> (56 - 8 * i));
	v_hex_encode(b, 8, out);
}

static int
hex_u64(const char *s, uint64_t *v)
{
	unsigned char b[8];

	if (v_hex_decode(s, b, 8, 0) != 0)
		return -1;
	*v = 0;
	for (int i = 0; i < 8; i++)
		*v = (*v << 8) | b[i];
	return 0;
}

int
shard_manifest_write(const struct shard_manifest *m, const char *dir)
{
	char hex[65], h16[17];
	json_t *root = json_object();
	json_t *splits = json_object();
	int err = V_OK;

	if (root == NULL || splits == NULL) {
		json_decref(root);
		json_decref(splits);
		return v_error(V_ERR_NOMEM, "out of memory");
	}
	v_hex_encode(m->tokenizer, 32, hex);
	json_object_set_new(root, "format", json_string(SHARD_FORMAT_NAME));
	json_object_set_new(root, "version", json_integer(SHARD_VERSION));
	json_object_set_new(root, "vocab_size", json_integer(m->vocab));
	json_object_set_new(root, "token_width", json_integer(m->width));
	json_object_set_new(root, "tokenizer_sha256", json_string(hex));
	json_object_set_new(root, "shard_tokens", json_integer((json_int_t)m->shard_tokens));
	json_object_set_new(root, "seed", json_integer((json_int_t)m->seed));
	json_object_set_new(root, "val_fraction", json_real(m->val_fraction));
	json_object_set_new(root, "shuffle", json_boolean(m->shuffle));
	for (int s = 0; s < 2; s++) {
		const struct shard_split_info *si = &m->split[s];
		json_t *o = json_object(), *list = json_array();
		json_object_set_new(o, "docs", json_integer((json_int_t)si->docs));
		json_object_set_new(o, "tokens", json_integer((json_int_t)si->tokens));
		for (size_t i = 0; i < si->n; i++) {
			const struct shard_entry *e = &si->shards[i];
			json_t *je = json_object();
			u64_hex(h16, e->body_xxh3);
			json_object_set_new(je, "file", json_string(e->file));
			json_object_set_new(je, "bytes", json_integer((json_int_t)e->bytes));
			json_object_set_new(je, "tokens", json_integer((json_int_t)e->tokens));
			json_object_set_new(je, "pieces", json_integer((json_int_t)e->pieces));
			json_object_set_new(je, "flags", json_integer(e->flags));
			json_object_set_new(je, "xxh3", json_string(h16));
			json_array_append_new(list, je);
		}
		json_object_set_new(o, "shards", list);
		json_object_set_new(splits, shard_split_name(s), o);
	}
	json_object_set_new(root, "splits", splits);
	char *text = json_dumps(root, JSON_INDENT(1) | JSON_PRESERVE_ORDER);
	json_decref(root);
	char *path = shard_path(dir, SHARD_MANIFEST);
	if (text == NULL || path == NULL) {
		free(text);
		free(path);
		return v_error(V_ERR_NOMEM, "out of memory");
	}
	struct v_atomic a;
	err = v_atomic_open(&a, path);
	if (err == V_OK) {
		err = v_write_all(a.fp, text, strlen(text), path);
		if (err == V_OK)
			err = v_write_all(a.fp, "\n", 1, path);
		if (err == V_OK)
			err = v_atomic_commit(&a);
		else
			v_atomic_abort(&a);
	}
	free(text);
	free(path);
	return err;
}

void
shard_manifest_free(struct shard_manifest *m)
{
	for (int s = 0; s < 2; s++) {
		for (size_t i = 0; i < m->split[s].n; i++)
			free(m->split[s].shards[i].file);
		free(m->split[s].shards);
		m->split[s].shards = NULL;
		m->split[s].n = 0;
	}
}

/* A non-negative integer member; errors name the manifest and the key. */
static int
get_u64(const json_t *o, const char *key, const char *path, uint64_t max, uint64_t *v)
{
	long long x;
	int err = v_json_int(o, key, &x);

	if (err)
		return v_error(V_ERR_FORMAT, "%s: \"%s\" missing or not an integer",
		    path, key);
	if (x < 0 || (uint64_t)x > max)
		return v_error(V_ERR_FORMAT, "%s: \"%s\" out of range (%lld)", path, key, x);
	*v = (uint64_t)x;
	return V_OK;
}

/* A file name that stays inside the directory. */
static int
safe_name(const char *s)
{
	if (*s == '\0' || *s == '.' || strlen(s) > 200)
		return 0;
	for (; *s; s++)
		if (*s == '/' || *s == '\\')
			return 0;
	return 1;
}

static int
load_split(struct shard_split_info *si, const json_t *o, const char *path,
    const char *sname)
{
	uint64_t v;
	int err;

	if (!json_is_object(o))
		return v_error(V_ERR_FORMAT, "%s: split \"%s\" missing", path, sname);
	if ((err = get_u64(o, "docs", path, 1ull << 50, &si->docs)) ||
	    (err = get_u64(o, "tokens", path, 1ull << 50, &si->tokens)))
		return err;
	json_t *list = json_object_get(o, "shards");
	if (!json_is_array(list))
		return v_error(V_ERR_FORMAT, "%s: split \"%s\" has no shard list", path, sname);
	size_t n = json_array_size(list);
	si->shards = calloc(n ? n : 1, sizeof *si->shards);
	if (si->shards == NULL)
		return v_error(V_ERR_NOMEM, "out of memory");
	uint64_t tok = 0;
	for (size_t i = 0; i < n; i++) {
		json_t *je = json_array_get(list, i);
		struct shard_entry *e = &si->shards[i];
		const char *s;
		if (v_json_str(je, "file", &s, NULL) || !safe_name(s))
			return v_error(V_ERR_FORMAT, "%s: %s shard %zu: missing or unsafe "
			    "file name", path, sname, i);
		e->file = strdup(s);
		if (e->file == NULL)
			return v_error(V_ERR_NOMEM, "out of memory");
		si->n = i + 1;
		if ((err = get_u64(je, "bytes", path, 1ull << 50, &e->bytes)) ||
		    (err = get_u64(je, "tokens", path, 1ull << 40, &e->tokens)) ||
		    (err = get_u64(je, "pieces", path, 1ull << 40, &e->pieces)) ||
		    (err = get_u64(je, "flags", path, 3, &v)))
			return err;
		e->flags = (uint32_t)v;
		if (v_json_str(je, "xxh3", &s, NULL) || hex_u64(s, &e->body_xxh3))
			return v_error(V_ERR_FORMAT, "%s: %s: bad \"xxh3\"", path, e->file);
		tok += e->tokens;
	}
	si->n = n;
	if (tok != si->tokens)
		return v_error(V_ERR_MISMATCH, "%s: split \"%s\" says %llu tokens, its "
		    "shards hold %llu", path, sname, (unsigned long long)si->tokens,
		    (unsigned long long)tok);
	return V_OK;
}

int
shard_manifest_load(struct shard_manifest *m, const char *dir)
{
	char *path = shard_path(dir, SHARD_MANIFEST);
	char *text = NULL;
	size_t len;
	json_t *root = NULL;
	const char *s;
	uint64_t v;
	int err;

	memset(m, 0, sizeof *m);
	if (path == NULL)
		return v_error(V_ERR_NOMEM, "out of memory");
	err = v_slurp(path, 64u << 20, &text, &len);
	if (err == V_ERR_NOTFOUND) {
		err = v_error(V_ERR_NOTFOUND, "%s: no manifest (not a shard directory, "
		    "or vshard did not finish)", path);
		goto done;
	}
	if (err)
		goto done;
	m->fingerprint = XXH3_64bits(text, len);
	if (v_json_parse(text, len, path, 0, &root) != V_OK) {
		err = V_ERR_FORMAT;	/* the parse detail names the file */
		goto done;
	}
	err = V_ERR_FORMAT;
	if (v_json_str(root, "format", &s, NULL) || strcmp(s, SHARD_FORMAT_NAME) != 0) {
		err = v_error(V_ERR_FORMAT, "%s: not a %s manifest", path, SHARD_FORMAT_NAME);
		goto done;
	}
	if ((err = get_u64(root, "version", path, 1000, &v)))
		goto done;
	if (v != SHARD_VERSION) {
		err = v_error(V_ERR_UNSUPPORTED, "%s: manifest version %llu (this is %d)",
		    path, (unsigned long long)v, SHARD_VERSION);
		goto done;
	}
	if ((err = get_u64(root, "vocab_size", path, UINT32_MAX, &v)))
		goto done;
	m->vocab = (uint32_t)v;
	if ((err = get_u64(root, "token_width", path, 4, &v)))
		goto done;
	m->width = (int)v;
	if (m->vocab == 0 || (m->width != 2 && m->width != 4) ||
	    (m->width == 2 && m->vocab > 65536)) {
		err = v_error(V_ERR_FORMAT, "%s: bad vocabulary %u or width %d", path,
		    m->vocab, m->width);
		goto done;
	}
	if (v_json_str(root, "tokenizer_sha256", &s, NULL) ||
	    v_hex_decode(s, m->tokenizer, 32, 0)) {
		err = v_error(V_ERR_FORMAT, "%s: bad \"tokenizer_sha256\"", path);
		goto done;
	}
	if ((err = get_u64(root, "shard_tokens", path, 1ull << 40, &m->shard_tokens)) ||
	    (err = get_u64(root, "seed", path, UINT64_MAX >> 1, &m->seed)))
		goto done;
	if (v_json_num(root, "val_fraction", &m->val_fraction) ||
	    !(m->val_fraction >= 0 && m->val_fraction < 1)) {
		err = v_error(V_ERR_FORMAT, "%s: bad \"val_fraction\"", path);
		goto done;
	}
	m->shuffle = json_is_true(json_object_get(root, "shuffle"));
	json_t *splits = json_object_get(root, "splits");
	for (int sp = 0; sp < 2; sp++) {
		err = load_split(&m->split[sp], json_object_get(splits,
		    shard_split_name(sp)), path, shard_split_name(sp));
		if (err)
			goto done;
	}
	err = V_OK;
done:
	json_decref(root);
	free(text);
	free(path);
	if (err)
		shard_manifest_free(m);
	return err;
}

int
shard_check_entry(const struct shard_manifest *m, int sp, size_t i,
    const struct shard_header *h, const char *path)
{
	const struct shard_entry *e = &m->split[sp].shards[i];

	if (h->vocab != m->vocab || h->width != m->width ||
	    memcmp(h->tokenizer, m->tokenizer, 32) != 0)
		return v_error(V_ERR_MISMATCH, "%s: vocabulary, width or tokenizer differ "
		    "from the manifest", path);
	if (h->split != (uint32_t)sp || h->index != i)
		return v_error(V_ERR_MISMATCH, "%s: shard says it is %s shard %u, the "
		    "manifest lists it as %s shard %zu", path, shard_split_name((int)h->split),
		    h->index, shard_split_name(sp), i);
	if (h->tokens != e->tokens || h->pieces != e->pieces || h->flags != e->flags ||
	    h->body_xxh3 != e->body_xxh3 || SHARD_HEADER_SIZE + h->body_bytes != e->bytes)
		return v_error(V_ERR_MISMATCH, "%s: shard disagrees with the manifest "
		    "(tokens %llu vs %llu, pieces %llu vs %llu, bytes %llu vs %llu, or "
		    "checksum)", path, (unsigned long long)h->tokens,
		    (unsigned long long)e->tokens, (unsigned long long)h->pieces,
		    (unsigned long long)e->pieces,
		    (unsigned long long)(SHARD_HEADER_SIZE + h->body_bytes),
		    (unsigned long long)e->bytes);
	return V_OK;
}

static int verify_splits(const char *dir, struct shard_manifest *m);

int
shard_verify_dir(const char *dir, struct shard_manifest *m)
{
	int err = shard_manifest_load(m, dir);

	if (err)
		return err;
	err = verify_splits(dir, m);
	if (err)
		shard_manifest_free(m);
	return err;
}

static int
verify_splits(const char *dir, struct shard_manifest *m)
{
	int err = V_OK;
	size_t total = m->split[0].n + m->split[1].n;

	/* Headers first, in order: they are small, and they settle the
	 * manifest's counts and the continuation of documents. */
	for (int sp = 0; sp < 2; sp++) {
		uint64_t docs = 0;
		int open_doc = 0;
		for (size_t i = 0; i < m->split[sp].n; i++) {
			char *path = shard_path(dir, m->split[sp].shards[i].file);
			struct shard_header h;
			if (path == NULL)
				return v_error(V_ERR_NOMEM, "out of memory");
			err = shard_file_header(path, &h);
			if (err == V_OK)
				err = shard_check_entry(m, sp, i, &h, path);
			if (err == V_OK && ((h.flags & SHARD_F_CONT_FIRST) != 0) != open_doc)
				err = v_error(V_ERR_MISMATCH, "%s: continuation flags disagree "
				    "with the previous shard", path);
			if (err == V_OK) {
				docs += h.pieces - ((h.flags & SHARD_F_CONT_FIRST) ? 1 : 0);
				open_doc = (h.flags & SHARD_F_CONT_LAST) != 0;
			}
			free(path);
			if (err)
				return err;
		}
		if (open_doc)
			return v_error(V_ERR_MISMATCH, "%s: the last %s shard continues into "
			    "a shard that does not exist", dir, shard_split_name(sp));
		if (docs != m->split[sp].docs)
			return v_error(V_ERR_MISMATCH, "%s: the manifest says %llu %s documents, "
			    "the shards hold %llu", dir, (unsigned long long)m->split[sp].docs,
			    shard_split_name(sp), (unsigned long long)docs);
	}
	if (total == 0)
		return V_OK;

	/* Then the bodies, on every core.  Error details are per thread, so
	 * each shard's message is kept and the first failing shard (in
	 * split and index order, whatever the threads did) is reported. */
	int *errs = calloc(total, sizeof *errs);
	char (*msgs)[256] = calloc(total, sizeof *msgs);
	if (errs == NULL || msgs == NULL) {
		free(errs);
		free(msgs);
		return v_error(V_ERR_NOMEM, "out of memory");
	}
	#pragma omp parallel for schedule(dynamic, 1)
	for (size_t k = 0; k < total; k++) {
		int sp = k < m->split[0].n ? 0 : 1;
		size_t i = sp == 0 ? k : k - m->split[0].n;
		char *path = shard_path(dir, m->split[sp].shards[i].file);
		struct shard_header h;
		int e = path ? shard_file_verify(path, &h) :
		    v_error(V_ERR_NOMEM, "out of memory");
		if (e != V_OK)
			snprintf(msgs[k], sizeof msgs[k], "%s", v_errmsg(e));
		errs[k] = e;
		free(path);
	}
	for (size_t k = 0; k < total && err == V_OK; k++)
		if (errs[k] != V_OK)
			err = v_error(errs[k], "%s", msgs[k]);
	free(errs);
	free(msgs);
	return err;
}
