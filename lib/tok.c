/* tok.c: the tokenizer file, byte-level BPE encoding and decoding.
 *
 * Encoding is dominated by the same words coming back, so each thread keeps
 * a cache from a pre-token's bytes to its ids; a miss runs BPE, which for
 * the usual short word scans the few adjacent pairs for the lowest rank,
 * and for a long one (beyond BPE_SMALL symbols) keeps the pairs in a heap
 * over a linked list of symbols, O(n log n).  Both merge the lowest-ranked
 * pair first and, among equals, the leftmost: the rule Hugging Face's BPE
 * follows, so the two give the same ids. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "tok_impl.h"
#include "verr.h"
#include "vio.h"
#include "vhash.h"

#define BPE_SMALL 48
#define CACHE_PIECE_MAX 1024	/* longer pre-tokens are not cached */
#define CACHE_MAX_ENTRIES (1u << 20)
#define NO_RANK UINT32_MAX

static inline uint64_t
mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

static inline uint32_t
pair_rank(const struct tok *t, uint32_t a, uint32_t b)
{
	uint64_t key = (((uint64_t)a << 32) | b) + 1;
	size_t i = (size_t)mix64(key) & t->pair_mask;

	for (;;) {
		uint64_t k = t->pair_keys[i];
		if (k == key)
			return t->pair_rank[i];
		if (k == 0)
			return NO_RANK;
		i = (i + 1) & t->pair_mask;
	}
}

int
tok_ids_push(struct tok_ids *ids, uint32_t id)
{
	if (ids->n == ids->cap) {
		size_t ncap = ids->cap ? ids->cap * 2 : 256;
		uint32_t *v = realloc(ids->v, ncap * sizeof *v);
		if (v == NULL)
			return v_error(V_ERR_NOMEM, "out of memory for %zu token ids", ncap);
		ids->v = v;
		ids->cap = ncap;
	}
	ids->v[ids->n++] = id;
	return V_OK;
}

static int
ids_reserve(struct tok_ids *ids, size_t extra)
{
	if (ids->cap - ids->n >= extra)
		return V_OK;
	size_t ncap = ids->cap ? ids->cap : 256;
	while (ncap - ids->n < extra)
		ncap *= 2;
	uint32_t *v = realloc(ids->v, ncap * sizeof *v);
	if (v == NULL)
		return v_error(V_ERR_NOMEM, "out of memory for %zu token ids", ncap);
	ids->v = v;
	ids->cap = ncap;
	return V_OK;
}

void
tok_ids_free(struct tok_ids *ids)
{
	free(ids->v);
	ids->v = NULL;
	ids->n = ids->cap = 0;
}

void
tok_free(struct tok *t)
{
	if (t == NULL)
		return;
	free(t->merges);
	free(t->merge_result);
	free(t->bytes);
	free(t->tok_off);
	free(t->pair_keys);
	free(t->pair_rank);
	free(t);
}

/* Token bytes -> id while building: open addressing over ids. */
struct bytes_map {
	uint32_t *slot;		/* id + 1, 0: empty */
	size_t mask;
};

static uint32_t
bytes_find(const struct bytes_map *m, const struct tok *t, const void *p,
    size_t n, size_t *where)
{
	size_t i = (size_t)XXH3_64bits(p, n) & m->mask;

	for (;; i = (i + 1) & m->mask) {
		uint32_t s = m->slot[i];
		if (s == 0) {
			*where = i;
			return UINT32_MAX;
		}
		uint32_t id = s - 1;
		size_t len = (size_t)(t->tok_off[id + 1] - t->tok_off[id]);
		if (len == n && memcmp(t->bytes + t->tok_off[id], p, n) == 0)
			return id;
	}
}

int
tok_build(unsigned steps, uint32_t (*merges)[2], uint32_t nmerges,
    const char *name, struct tok **out)
{
	struct tok *t = calloc(1, sizeof *t);
	struct bytes_map bm = { 0 };
	size_t max_vocab = (size_t)TOK_FIRST_MERGE + nmerges, cap = 1 << 16, used = 0;
	int err = V_OK;

	*out = NULL;
	if (t == NULL) {
		free(merges);
		return v_error(V_ERR_NOMEM, "out of memory for a tokenizer");
	}
	t->steps = steps;
	t->merges = merges;
	t->nmerges = nmerges;
	t->merge_result = malloc((nmerges ? nmerges : 1) * sizeof *t->merge_result);
	t->tok_off = malloc((max_vocab + 1) * sizeof *t->tok_off);
	t->bytes = malloc(cap);
	size_t psize = 16;
	while (psize < 2 * (size_t)nmerges + 2)
		psize *= 2;
	t->pair_mask = psize - 1;
	t->pair_keys = calloc(psize, sizeof *t->pair_keys);
	t->pair_rank = malloc(psize * sizeof *t->pair_rank);
	size_t bsize = 16;
	while (bsize < 2 * max_vocab)
		bsize *= 2;
	bm.mask = bsize - 1;
	bm.slot = calloc(bsize, sizeof *bm.slot);
	if (!t->merge_result || !t->tok_off || !t->bytes || !t->pair_keys ||
	    !t->pair_rank || !bm.slot) {
		err = v_error(V_ERR_NOMEM, "out of memory for a tokenizer of %zu tokens",
		    max_vocab);
		goto fail;
	}

	uint32_t id = 0;
	for (; id < TOK_N_SPECIAL; id++) {
		const char *s = id < TOK_PII ? "" : tok_special_name(id);
		size_t n = strlen(s);
		t->tok_off[id] = used;
		memcpy(t->bytes + used, s, n);
		used += n;
	}
	for (int b = 0; b < 256; b++, id++) {
		size_t where;
		t->tok_off[id] = used;
		t->bytes[used++] = (unsigned char)b;
		t->tok_off[id + 1] = used;
		bytes_find(&bm, t, t->bytes + used - 1, 1, &where);
		bm.slot[where] = id + 1;
	}
	t->tok_off[id] = used;
	for (uint32_t m = 0; m < nmerges; m++) {
		uint32_t a = merges[m][0], b = merges[m][1];
		if (a < TOK_BYTE_0 || a >= id || b < TOK_BYTE_0 || b >= id) {
			err = v_error(V_ERR_FORMAT, "%s: merge %u joins %u and %u, "
			    "but only ids %d to %u exist at that point", name, m + 1,
			    a, b, TOK_BYTE_0, id - 1);
			goto fail;
		}
		uint64_t key = (((uint64_t)a << 32) | b) + 1;
		size_t i = (size_t)mix64(key) & t->pair_mask;
		while (t->pair_keys[i] != 0 && t->pair_keys[i] != key)
			i = (i + 1) & t->pair_mask;
		if (t->pair_keys[i] == key) {
			err = v_error(V_ERR_FORMAT, "%s: merge %u repeats the pair %u %u",
			    name, m + 1, a, b);
			goto fail;
		}
		t->pair_keys[i] = key;
		t->pair_rank[i] = m;

		size_t la = (size_t)(t->tok_off[a + 1] - t->tok_off[a]);
		size_t lb = (size_t)(t->tok_off[b + 1] - t->tok_off[b]);
		if (used + la + lb > cap) {
			while (used + la + lb > cap)
				cap *= 2;
			unsigned char *nb = realloc(t->bytes, cap);
			if (nb == NULL) {
				err = v_error(V_ERR_NOMEM, "out of memory for token bytes");
				goto fail;
			}
			t->bytes = nb;
		}
		memcpy(t->bytes + used, t->bytes + t->tok_off[a], la);
		memcpy(t->bytes + used + la, t->bytes + t->tok_off[b], lb);
		size_t where;
		uint32_t have = bytes_find(&bm, t, t->bytes + used, la + lb, &where);
		if (have != UINT32_MAX) {
			/* Another split of the same bytes made this token already. */
			t->merge_result[m] = have;
			continue;
		}
		t->merge_result[m] = id;
		used += la + lb;
		t->tok_off[id + 1] = used;
		bm.slot[where] = id + 1;
		id++;
	}
	t->vocab = id;
	free(bm.slot);
	*out = t;
	return V_OK;
fail:
	free(bm.slot);
	tok_free(t);
	return err;
}

/* A decimal number that is the whole of s[0..n). */
static int
parse_u32(const char *s, size_t n, uint32_t *v)
{
	uint64_t x = 0;

	if (n == 0 || n > 10 || (n > 1 && s[0] == '0'))
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		x = x * 10 + (uint64_t)(s[i] - '0');
	}
	if (x > UINT32_MAX)
		return -1;
	*v = (uint32_t)x;
	return 0;
}

/* The next line of buf[*at..len) (without its LF) into *p, *n; -1 at the end
 * of the buffer. */
static int
next_line(const char *buf, size_t len, size_t *at, const char **p, size_t *n)
{
	if (*at >= len)
		return -1;
	const char *s = buf + *at;
	const char *nl = memchr(s, '\n', len - *at);
	*p = s;
	*n = nl ? (size_t)(nl - s) : len - *at;
	*at += *n + (nl != NULL);
	return 0;
}

/* "key value" with key given: value in *v, *vn. */
static int
keyed(const char *p, size_t n, const char *key, const char **v, size_t *vn)
{
	size_t k = strlen(key);
	if (n <= k + 1 || memcmp(p, key, k) != 0 || p[k] != ' ')
		return -1;
	*v = p + k + 1;
	*vn = n - k - 1;
	return 0;
}

static int
tok_parse(const char *buf, size_t len, const char *path, struct tok **out)
{
	const char *p, *v;
	size_t n, vn, at = 0;
	long line = 1;
	unsigned steps;
	uint32_t nmerges, vocab;
	int err;

	if (next_line(buf, len, &at, &p, &n) ||
	    n != strlen(TOK_FILE_MAGIC) || memcmp(p, TOK_FILE_MAGIC, n) != 0)
		return v_error(V_ERR_FORMAT, "%s: not a Vesper tokenizer file "
		    "(its first line is not '%s')", path, TOK_FILE_MAGIC);
	line++;
	if (next_line(buf, len, &at, &p, &n) || keyed(p, n, "normalize", &v, &vn))
		return v_error(V_ERR_FORMAT, "%s:%ld: expected 'normalize STEPS'",
		    path, line);
	char list[256];
	if (vn >= sizeof list || memchr(v, '\0', vn))
		return v_error(V_ERR_FORMAT, "%s:%ld: bad normalisation list", path, line);
	memcpy(list, v, vn);
	list[vn] = '\0';
	if ((err = tok_norm_parse(list, &steps))) {
		char why[256];
		snprintf(why, sizeof why, "%s", v_errmsg(err));
		return v_error(V_ERR_FORMAT, "%s:%ld: %s", path, line, why);
	}
	line++;
	if (next_line(buf, len, &at, &p, &n) || keyed(p, n, "vocab", &v, &vn) ||
	    parse_u32(v, vn, &vocab) || vocab < TOK_FIRST_MERGE)
		return v_error(V_ERR_FORMAT, "%s:%ld: expected 'vocab N' with N >= %d",
		    path, line, TOK_FIRST_MERGE);
	line++;
	if (next_line(buf, len, &at, &p, &n) || keyed(p, n, "merges", &v, &vn) ||
	    parse_u32(v, vn, &nmerges) || nmerges > (1u << 24))
		return v_error(V_ERR_FORMAT, "%s:%ld: expected 'merges N' with N <= %u",
		    path, line, 1u << 24);
	if ((uint64_t)nmerges * 4 > len)
		return v_error(V_ERR_TRUNCATED, "%s: %u merges cannot fit in %zu bytes",
		    path, nmerges, len);
	uint32_t (*merges)[2] = malloc((nmerges ? nmerges : 1) * sizeof *merges);
	if (merges == NULL)
		return v_error(V_ERR_NOMEM, "out of memory for %u merges", nmerges);
	for (uint32_t m = 0; m < nmerges; m++) {
		line++;
		if (next_line(buf, len, &at, &p, &n)) {
			free(merges);
			return v_error(V_ERR_TRUNCATED, "%s: ends after %u of %u merges",
			    path, m, nmerges);
		}
		const char *sp = memchr(p, ' ', n);
		if (sp == NULL || parse_u32(p, (size_t)(sp - p), &merges[m][0]) ||
		    parse_u32(sp + 1, n - (size_t)(sp - p) - 1, &merges[m][1])) {
			free(merges);
			return v_error(V_ERR_FORMAT, "%s:%ld: expected a merge 'LEFT RIGHT'",
			    path, line);
		}
	}
	line++;
	if (next_line(buf, len, &at, &p, &n) || n != 3 || memcmp(p, "end", 3) != 0 ||
	    at != len) {
		free(merges);
		return v_error(V_ERR_FORMAT, "%s:%ld: expected 'end' as the last line",
		    path, line);
	}
	struct tok *t;
	if ((err = tok_build(steps, merges, nmerges, path, &t)))
		return err;
	if (t->vocab != vocab) {
		uint32_t made = t->vocab;
		tok_free(t);
		return v_error(V_ERR_FORMAT, "%s: says vocab %u, its merges make %u",
		    path, vocab, made);
	}
	*out = t;
	return V_OK;
}

static void
set_sha(struct tok *t, const void *buf, size_t len)
{
	unsigned int n = 32;
	EVP_Digest(buf, len, t->sha, &n, EVP_sha256(), NULL);
	v_hex_encode(t->sha, 32, t->sha_hex);
}

int
tok_load(const char *path, struct tok **out)
{
	char *buf;
	size_t len;
	int err;

	*out = NULL;
	if ((err = v_slurp(path, (size_t)1 << 30, &buf, &len)))
		return err;
	err = tok_parse(buf, len, path, out);
	if (err == V_OK)
		set_sha(*out, buf, len);
	free(buf);
	return err;
}

uint32_t tok_vocab_size(const struct tok *t) { return t->vocab; }
unsigned tok_norm_steps(const struct tok *t) { return t->steps; }
const unsigned char *tok_sha256(const struct tok *t) { return t->sha; }
const char *tok_sha256_hex(const struct tok *t) { return t->sha_hex; }

const unsigned char *
tok_token_bytes(const struct tok *t, uint32_t id, size_t *len)
{
	if (id >= t->vocab) {
		*len = 0;
		return NULL;
	}
	*len = (size_t)(t->tok_off[id + 1] - t->tok_off[id]);
	return t->bytes + t->tok_off[id];
}

int
tok_decode(const struct tok *t, const uint32_t *ids, size_t n,
    struct tok_buf *out)
{
	for (size_t i = 0; i < n; i++) {
		if (ids[i] >= t->vocab)
			return v_error(V_ERR_RANGE, "token id %u beyond the vocabulary of %u",
			    ids[i], t->vocab);
		size_t len = (size_t)(t->tok_off[ids[i] + 1] - t->tok_off[ids[i]]);
		int err = tok_buf_put(out, t->bytes + t->tok_off[ids[i]], len);
		if (err)
			return err;
	}
	return V_OK;
}

size_t
tok_utf8_complete(const unsigned char *buf, size_t len)
{
	/* Only the last three bytes can start an unfinished sequence. */
	for (size_t back = 1; back <= 3 && back <= len; back++) {
		unsigned char c = buf[len - back];
		if (c < 0x80)
			return len;
		if (c >= 0xC2 && c <= 0xF4) {
			uint32_t cp;
			size_t l = tok_utf8_next(buf + len - back, back, &cp);
			/* Ill-formed only because it ran out of bytes. */
			if (cp == UINT32_MAX && l == back)
				return len - back;
			return len;
		}
		if (c >= 0xC0)
			return len;	/* a byte no sequence starts with */
	}
	return len;
}

/* Encoding state. */
/* One cache entry is half a cache line and, for the usual word (at most
 * CACHE_INLINE bytes, one token), holds everything a hit needs: a hit then
 * costs one memory access instead of three. */
#define CACHE_INLINE 16
struct cache_slot {
	uint64_t h;		/* 0: empty */
	uint16_t len;		/* bytes */
	uint16_t nids;
	uint32_t ids;		/* the id when nids == 1, else an offset in id_arena */
	union {
		unsigned char b[CACHE_INLINE];	/* the bytes, len <= CACHE_INLINE */
		uint32_t off;			/* else their offset in arena */
	} piece;
};

struct tok_enc {
	const struct tok *t;
	struct tok_buf norm;
	struct tok_ids *out;
	struct cache_slot *slot;
	size_t mask, used;
	struct tok_buf arena;		/* cached pre-tokens' bytes */
	struct tok_ids id_arena;	/* their ids */
	/* scratch for BPE over long pieces */
	uint32_t *sym;
	int32_t *nxt, *prv;
	uint64_t *heap;
	size_t scap;
};

int
tok_enc_new(const struct tok *t, struct tok_enc **out)
{
	struct tok_enc *e = calloc(1, sizeof *e);

	*out = NULL;
	if (e == NULL)
		return v_error(V_ERR_NOMEM, "out of memory for an encoder");
	e->t = t;
	e->mask = (1u << 14) - 1;
	e->slot = calloc(e->mask + 1, sizeof *e->slot);
	if (e->slot == NULL) {
		free(e);
		return v_error(V_ERR_NOMEM, "out of memory for an encoder");
	}
	*out = e;
	return V_OK;
}

void
tok_enc_free(struct tok_enc *e)
{
	if (e == NULL)
		return;
	tok_buf_free(&e->norm);
	tok_buf_free(&e->arena);
	tok_ids_free(&e->id_arena);
	free(e->slot);
	free(e->sym);
	free(e->nxt);
	free(e->prv);
	free(e->heap);
	free(e);
}

static int
cache_resize(struct tok_enc *e, size_t nslots)
{
	struct cache_slot *ns = calloc(nslots, sizeof *ns);
	if (ns == NULL)
		return v_error(V_ERR_NOMEM, "out of memory for the word cache");
	for (size_t i = 0; i <= e->mask; i++) {
		if (e->slot[i].h == 0)
			continue;
		size_t j = (size_t)e->slot[i].h & (nslots - 1);
		while (ns[j].h != 0)
			j = (j + 1) & (nslots - 1);
		ns[j] = e->slot[i];
	}
	free(e->slot);
	e->slot = ns;
	e->mask = nslots - 1;
	return V_OK;
}

static int
cache_put(struct tok_enc *e, uint64_t h, const char *p, size_t len,
    const uint32_t *ids, size_t n)
{
	int err;

	if (e->used + 1 > (e->mask + 1) / 2) {
		if (e->mask + 1 >= CACHE_MAX_ENTRIES * 2) {
			/* Full: start again rather than grow without bound. */
			memset(e->slot, 0, (e->mask + 1) * sizeof *e->slot);
			e->used = 0;
			e->arena.n = 0;
			e->id_arena.n = 0;
		} else if ((err = cache_resize(e, (e->mask + 1) * 2))) {
			return err;
		}
	}
	size_t i = (size_t)h & e->mask;
	while (e->slot[i].h != 0)
		i = (i + 1) & e->mask;
	struct cache_slot *s = &e->slot[i];
	s->h = h;
	s->len = (uint16_t)len;
	s->nids = (uint16_t)n;
	if (len <= CACHE_INLINE) {
		memcpy(s->piece.b, p, len);
	} else {
		s->piece.off = (uint32_t)e->arena.n;
		if ((err = tok_buf_put(&e->arena, p, len)))
			return err;
	}
	if (n == 1) {
		s->ids = ids[0];
	} else {
		s->ids = (uint32_t)e->id_arena.n;
		if ((err = ids_reserve(&e->id_arena, n)))
			return err;
		memcpy(e->id_arena.v + e->id_arena.n, ids, n * sizeof *ids);
		e->id_arena.n += n;
	}
	e->used++;
	return V_OK;
}

/* BPE over sym[0..n) for a short piece: returns the new length. */
static size_t
bpe_small(const struct tok *t, uint32_t *sym, size_t n)
{
	uint32_t rank[BPE_SMALL];

	if (n < 2)
		return n;
	for (size_t i = 0; i + 1 < n; i++)
		rank[i] = pair_rank(t, sym[i], sym[i + 1]);
	for (;;) {
		uint32_t best = NO_RANK;
		size_t at = 0;
		for (size_t i = 0; i + 1 < n; i++)
			if (rank[i] < best) {
				best = rank[i];
				at = i;
			}
		if (best == NO_RANK)
			break;
		sym[at] = t->merge_result[best];
		memmove(sym + at + 1, sym + at + 2, (n - at - 2) * sizeof *sym);
		if (at + 3 < n)
			memmove(rank + at + 1, rank + at + 2,
			    (n - at - 3) * sizeof *rank);
		n--;
		if (at > 0)
			rank[at - 1] = pair_rank(t, sym[at - 1], sym[at]);
		if (at + 1 < n)
			rank[at] = pair_rank(t, sym[at], sym[at + 1]);
	}
	return n;
}

static void
heap_push(uint64_t *h, size_t *n, uint64_t v)
{
	size_t i = (*n)++;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (h[p] <= v)
			break;
		h[i] = h[p];
		i = p;
	}
	h[i] = v;
}

static uint64_t
heap_pop(uint64_t *h, size_t *n)
{
	uint64_t top = h[0], v = h[--*n];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= *n)
			break;
		if (c + 1 < *n && h[c + 1] < h[c])
			c++;
		if (v <= h[c])
			break;
		h[i] = h[c];
		i = c;
	}
	if (*n > 0)
		h[i] = v;
	return top;
}

/* BPE over a long piece p[0..n), appending its ids to out. */
static int
bpe_long(struct tok_enc *e, const unsigned char *p, size_t n, struct tok_ids *out)
{
	const struct tok *t = e->t;
	size_t hn = 0;
	int err;

	if (n > e->scap) {
		size_t c = n;
		uint32_t *sym = realloc(e->sym, c * sizeof *sym);
		if (sym) e->sym = sym;
		int32_t *nxt = realloc(e->nxt, c * sizeof *nxt);
		if (nxt) e->nxt = nxt;
		int32_t *prv = realloc(e->prv, c * sizeof *prv);
		if (prv) e->prv = prv;
		uint64_t *heap = realloc(e->heap, 2 * c * sizeof *heap);
		if (heap) e->heap = heap;
		if (!sym || !nxt || !prv || !heap)
			return v_error(V_ERR_NOMEM, "out of memory for a %zu-byte word", n);
		e->scap = c;
	}
	uint32_t *sym = e->sym;
	int32_t *nxt = e->nxt, *prv = e->prv;
	uint64_t *heap = e->heap;
	for (size_t i = 0; i < n; i++) {
		sym[i] = TOK_BYTE_0 + p[i];
		nxt[i] = i + 1 < n ? (int32_t)(i + 1) : -1;
		prv[i] = (int32_t)i - 1;
	}
	for (size_t i = 0; i + 1 < n; i++) {
		uint32_t r = pair_rank(t, sym[i], sym[i + 1]);
		if (r != NO_RANK)
			heap_push(heap, &hn, ((uint64_t)r << 32) | i);
	}
	/* The heap never holds more than two entries per symbol: each merge
	 * removes one symbol and pushes at most two pairs. */
	while (hn > 0) {
		uint64_t top = heap_pop(heap, &hn);
		uint32_t r = (uint32_t)(top >> 32), i = (uint32_t)top;
		if (sym[i] == UINT32_MAX || nxt[i] < 0)
			continue;
		int32_t j = nxt[i];
		if (pair_rank(t, sym[i], sym[j]) != r)
			continue;
		sym[i] = t->merge_result[r];
		sym[j] = UINT32_MAX;
		nxt[i] = nxt[j];
		if (nxt[j] >= 0)
			prv[nxt[j]] = (int32_t)i;
		if (prv[i] >= 0) {
			uint32_t q = pair_rank(t, sym[prv[i]], sym[i]);
			if (q != NO_RANK)
				heap_push(heap, &hn, ((uint64_t)q << 32) | (uint32_t)prv[i]);
		}
		if (nxt[i] >= 0) {
			uint32_t q = pair_rank(t, sym[i], sym[nxt[i]]);
			if (q != NO_RANK)
				heap_push(heap, &hn, ((uint64_t)q << 32) | i);
		}
	}
	if ((err = ids_reserve(out, n)))
		return err;
	for (int32_t i = 0; i >= 0; i = nxt[i])
		out->v[out->n++] = sym[i];
	return V_OK;
}

static int
bpe_any(struct tok_enc *e, const unsigned char *u, size_t len,
    struct tok_ids *out)
{
	int err;

	if (len > BPE_SMALL)
		return bpe_long(e, u, len, out);
	if ((err = ids_reserve(out, len)))
		return err;
	uint32_t *sym = out->v + out->n;
	for (size_t i = 0; i < len; i++)
		sym[i] = TOK_BYTE_0 + u[i];
	out->n += bpe_small(e->t, sym, len);
	return V_OK;
}

/* Encode one pre-token, appending to e->out. */
static int
enc_piece(void *arg, const char *p, size_t len)
{
	struct tok_enc *e = arg;
	struct tok_ids *out = e->out;
	const unsigned char *u = (const unsigned char *)p;
	int err;

	if (len == 1)
		return tok_ids_push(out, TOK_BYTE_0 + u[0]);
	if (len > CACHE_PIECE_MAX) {
		/* Cut what is longer than TOK_MAX_PIECE at character starts. */
		while (len > TOK_MAX_PIECE) {
			size_t cut = TOK_MAX_PIECE;
			while (cut > TOK_MAX_PIECE - 4 && (u[cut] & 0xC0) == 0x80)
				cut--;
			if ((err = bpe_long(e, u, cut, out)))
				return err;
			u += cut;
			len -= cut;
		}
		return bpe_any(e, u, len, out);
	}
	uint64_t h = XXH3_64bits(p, len) | 1;
	for (size_t i = (size_t)h & e->mask;; i = (i + 1) & e->mask) {
		const struct cache_slot *s = &e->slot[i];
		if (s->h == 0)
			break;
		if (s->h == h && s->len == len &&
		    memcmp(len <= CACHE_INLINE ? s->piece.b :
		    (const unsigned char *)e->arena.p + s->piece.off, p, len) == 0) {
			if ((err = ids_reserve(out, s->nids)))
				return err;
			if (s->nids == 1)
				out->v[out->n] = s->ids;
			else
				memcpy(out->v + out->n, e->id_arena.v + s->ids,
				    s->nids * sizeof *out->v);
			out->n += s->nids;
			return V_OK;
		}
	}
	size_t before = out->n;
	if ((err = bpe_any(e, u, len, out)))
		return err;
	return cache_put(e, h, p, len, out->v + before, out->n - before);
}

int
tok_encode_normalized(struct tok_enc *e, const char *text, size_t len,
    struct tok_ids *out)
{
	size_t pos = 0, at, slen;
	int id, err;

	e->out = out;
	while ((id = tok_find_special(text + pos, len - pos, &at, &slen)) >= 0) {
		if ((err = tok_pretokenize(text + pos, at, enc_piece, e)))
			return err;
		if ((err = tok_ids_push(out, (uint32_t)id)))
			return err;
		pos += at + slen;
	}
	return tok_pretokenize(text + pos, len - pos, enc_piece, e);
}

int
tok_encode(struct tok_enc *e, const char *text, size_t len,
    struct tok_ids *out, struct tok_stats *st)
{
	int err;

	e->norm.n = 0;
	if ((err = tok_normalize(e->t->steps, text, len, &e->norm, st)))
		return err;
	err = tok_encode_normalized(e, e->norm.p, e->norm.n, out);
	/* One huge document should not pin its buffer for the rest. */
	if (e->norm.cap > ((size_t)64 << 20)) {
		tok_buf_free(&e->norm);
	}
	return err;
}
