/* tok_train.c: learning byte-level BPE merges.
 *
 * Two phases.  Counting: documents are normalised and pre-tokenised in
 * batches, the threads each counting their share of the words in a table
 * of their own, merged into one table after each batch.  Merging: every
 * distinct word becomes a list of byte ids with its count; each pair of
 * adjacent ids has a count and the list of words it occurs in; a max-heap
 * (stale entries fixed when popped) gives the most frequent pair, ties to
 * the smaller (left, right) so the result does not depend on the order the
 * words were seen in.  A merge rewrites only the words that hold the pair
 * and adjusts only the counts of the pairs beside each occurrence, so its
 * cost follows the number of occurrences, not the size of the corpus. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define XXH_INLINE_ALL
#include <xxhash.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "tok_impl.h"
#include "verr.h"
#include "vio.h"

#define BATCH_BYTES ((size_t)16 << 20)

struct wslot {
	uint64_t h;		/* 0: empty */
	uint64_t count;
	uint32_t off, len;	/* bytes in the arena */
};

struct wmap {
	struct wslot *slot;
	size_t mask, used;
	struct tok_buf arena;
};

static int
wmap_init(struct wmap *m)
{
	memset(m, 0, sizeof *m);
	m->mask = (1u << 12) - 1;
	m->slot = calloc(m->mask + 1, sizeof *m->slot);
	return m->slot ? V_OK : v_error(V_ERR_NOMEM, "out of memory for word counts");
}

static void
wmap_free(struct wmap *m)
{
	free(m->slot);
	tok_buf_free(&m->arena);
	memset(m, 0, sizeof *m);
}

static int
wmap_grow(struct wmap *m)
{
	size_t n = (m->mask + 1) * 2;
	struct wslot *ns = calloc(n, sizeof *ns);
	if (ns == NULL)
		return v_error(V_ERR_NOMEM, "out of memory for word counts");
	for (size_t i = 0; i <= m->mask; i++) {
		if (m->slot[i].h == 0)
			continue;
		size_t j = (size_t)m->slot[i].h & (n - 1);
		while (ns[j].h != 0)
			j = (j + 1) & (n - 1);
		ns[j] = m->slot[i];
	}
	free(m->slot);
	m->slot = ns;
	m->mask = n - 1;
	return V_OK;
}

static int
wmap_add(struct wmap *m, uint64_t h, const char *p, size_t len, uint64_t count)
{
	size_t i = (size_t)h & m->mask;
	int err;

	for (;; i = (i + 1) & m->mask) {
		struct wslot *s = &m->slot[i];
		if (s->h == 0)
			break;
		if (s->h == h && s->len == len &&
		    memcmp(m->arena.p + s->off, p, len) == 0) {
			s->count += count;
			return V_OK;
		}
	}
	if (m->arena.n + len > UINT32_MAX)
		return v_error(V_ERR_RANGE, "more than 4 GiB of distinct words");
	struct wslot *s = &m->slot[i];
	s->h = h;
	s->count = count;
	s->off = (uint32_t)m->arena.n;
	s->len = (uint32_t)len;
	if ((err = tok_buf_put(&m->arena, p, len)))
		return err;
	if (++m->used * 2 > m->mask + 1)
		return wmap_grow(m);
	return V_OK;
}

struct tok_trainer {
	unsigned steps;
	int threads;
	struct wmap words;
	struct tok_buf batch;		/* documents back to back */
	size_t *doc_end;		/* (ndocs) */
	size_t ndocs, doc_cap;
	uint64_t total;
	uint64_t invalid;		/* ill-formed UTF-8 sequences met */
};

int
tok_trainer_new(unsigned steps, struct tok_trainer **out)
{
	struct tok_trainer *tr = calloc(1, sizeof *tr);
	int err;

	*out = NULL;
	if (tr == NULL)
		return v_error(V_ERR_NOMEM, "out of memory for a trainer");
	tr->steps = steps;
	tr->threads = 1;
	if ((err = wmap_init(&tr->words))) {
		free(tr);
		return err;
	}
	*out = tr;
	return V_OK;
}

void
tok_trainer_threads(struct tok_trainer *tr, int n)
{
	tr->threads = n > 0 ? n : 1;
}

void
tok_trainer_free(struct tok_trainer *tr)
{
	if (tr == NULL)
		return;
	wmap_free(&tr->words);
	tok_buf_free(&tr->batch);
	free(tr->doc_end);
	free(tr);
}

void
tok_trainer_counts(const struct tok_trainer *tr, uint64_t *distinct,
    uint64_t *total)
{
	*distinct = tr->words.used;
	*total = tr->total;
}

uint64_t
tok_trainer_invalid(const struct tok_trainer *tr)
{
	return tr->invalid;
}

struct count_ctx {
	struct wmap *m;
	uint64_t n;
};

/* Words longer than this are counted in pieces of at most this many bytes
 * (cut at character starts): a word that long teaches nothing worth a
 * token, and a hostile one (a megabyte of letters) would make every merge
 * that touches it rescan it. */
#define TRAIN_MAX_WORD 1024

static int
count_piece(void *arg, const char *p, size_t len)
{
	struct count_ctx *c = arg;
	int err;

	c->n++;
	while (len > TRAIN_MAX_WORD) {
		size_t cut = TRAIN_MAX_WORD;
		while (cut > TRAIN_MAX_WORD - 4 && ((unsigned char)p[cut] & 0xC0) == 0x80)
			cut--;
		if ((err = wmap_add(c->m, XXH3_64bits(p, cut) | 1, p, cut, 1)))
			return err;
		p += cut;
		len -= cut;
	}
	return wmap_add(c->m, XXH3_64bits(p, len) | 1, p, len, 1);
}

/* Normalise and count the words of docs [a, b) of the batch into m. */
static int
count_docs(struct tok_trainer *tr, size_t a, size_t b, struct wmap *m,
    uint64_t *nwords, uint64_t *invalid)
{
	struct tok_stats st = { 0 };
	struct tok_buf norm = { 0 };
	struct count_ctx c = { m, 0 };
	int err = V_OK;

	for (size_t d = a; d < b && !err; d++) {
		size_t start = d ? tr->doc_end[d - 1] : 0;
		norm.n = 0;
		err = tok_normalize(tr->steps, tr->batch.p + start,
		    tr->doc_end[d] - start, &norm, &st);
		size_t pos = 0, at, slen;
		while (!err && tok_find_special(norm.p + pos, norm.n - pos, &at,
		    &slen) >= 0) {
			err = tok_pretokenize(norm.p + pos, at, count_piece, &c);
			pos += at + slen;
		}
		if (!err)
			err = tok_pretokenize(norm.p + pos, norm.n - pos, count_piece, &c);
	}
	tok_buf_free(&norm);
	*nwords = c.n;
	*invalid = st.invalid;
	return err;
}

static int
flush_batch(struct tok_trainer *tr)
{
	int nt = tr->threads, err = V_OK;

	if (tr->ndocs == 0)
		return V_OK;
	if (nt > (int)tr->ndocs)
		nt = (int)tr->ndocs;
	if (nt <= 1) {
		uint64_t n, bad;
		err = count_docs(tr, 0, tr->ndocs, &tr->words, &n, &bad);
		tr->total += n;
		tr->invalid += bad;
	} else {
		struct wmap *local = calloc((size_t)nt, sizeof *local);
		int *errs = calloc((size_t)nt, sizeof *errs);
		uint64_t *cnt = calloc((size_t)nt, sizeof *cnt);
		uint64_t *bad = calloc((size_t)nt, sizeof *bad);
		if (!local || !errs || !cnt || !bad) {
			free(local);
			free(errs);
			free(cnt);
			free(bad);
			return v_error(V_ERR_NOMEM, "out of memory for word counts");
		}
		/* Split by bytes, not documents, so that threads get equal work. */
		size_t *cut = calloc((size_t)nt + 1, sizeof *cut);
		if (cut == NULL) {
			free(local);
			free(errs);
			free(cnt);
			free(bad);
			return v_error(V_ERR_NOMEM, "out of memory");
		}
		for (int k = 1, d = 0; k < nt; k++) {
			size_t want = tr->batch.n / (size_t)nt * (size_t)k;
			while ((size_t)d < tr->ndocs && tr->doc_end[d] < want)
				d++;
			cut[k] = (size_t)d;
		}
		cut[nt] = tr->ndocs;
		/* Error details are per thread: keep the first one's. */
		char msg[256] = "";
		#pragma omp parallel for num_threads(nt) schedule(static, 1)
		for (int k = 0; k < nt; k++) {
			errs[k] = wmap_init(&local[k]);
			if (!errs[k] && cut[k] < cut[k + 1])
				errs[k] = count_docs(tr, cut[k], cut[k + 1], &local[k], &cnt[k],
				    &bad[k]);
			if (errs[k]) {
				#pragma omp critical(tok_train_msg)
				if (msg[0] == '\0')
					snprintf(msg, sizeof msg, "%s", v_errmsg(errs[k]));
			}
		}
		for (int k = 0; k < nt; k++) {
			if (!err && errs[k])
				err = v_error(errs[k], "%s", msg);
			tr->total += cnt[k];
			tr->invalid += bad[k];
			for (size_t i = 0; !err && local[k].slot && i <= local[k].mask; i++) {
				const struct wslot *s = &local[k].slot[i];
				if (s->h)
					err = wmap_add(&tr->words, s->h, local[k].arena.p + s->off,
					    s->len, s->count);
			}
			wmap_free(&local[k]);
		}
		free(cut);
		free(local);
		free(errs);
		free(cnt);
		free(bad);
	}
	tr->batch.n = 0;
	tr->ndocs = 0;
	return err;
}

int
tok_trainer_add(struct tok_trainer *tr, const char *text, size_t len)
{
	int err;

	if (tr->ndocs == tr->doc_cap) {
		size_t n = tr->doc_cap ? tr->doc_cap * 2 : 1024;
		size_t *d = realloc(tr->doc_end, n * sizeof *d);
		if (d == NULL)
			return v_error(V_ERR_NOMEM, "out of memory");
		tr->doc_end = d;
		tr->doc_cap = n;
	}
	if ((err = tok_buf_put(&tr->batch, text, len)))
		return err;
	tr->doc_end[tr->ndocs++] = tr->batch.n;
	if (tr->batch.n >= BATCH_BYTES)
		return flush_batch(tr);
	return V_OK;
}

/* The merging phase. */
struct word {
	uint32_t off, len;	/* symbols in syms[] */
	uint64_t count;
};

struct wlist {
	uint32_t *v;
	uint32_t n, cap;
};

struct heap_ent {
	uint64_t count;
	uint64_t key;
	uint32_t pair;
};

struct merger {
	struct word *words;
	size_t nwords;
	uint32_t *syms;
	/* pairs */
	uint64_t *pkey;		/* (npairs) (left << 32) | right */
	int64_t *pcount;
	struct wlist *where;
	unsigned char *done;
	uint32_t *stamp;	/* the last merge (+ 1) that listed it as touched */
	size_t npairs, pcap;
	uint32_t merge_no;	/* merges made so far + 1 */
	uint32_t *slot;		/* open addressing: pair index + 1 */
	size_t smask;
	struct heap_ent *heap;
	size_t hn, hcap;
	/* tokens */
	struct tok_buf bytes;
	uint64_t *tok_off;
	uint32_t ntok, tcap;
	uint32_t *tslot;	/* bytes -> id + 1 */
	size_t tmask;
};

static inline uint64_t
pkey_hash(uint64_t k)
{
	k ^= k >> 31;
	k *= 0x9E3779B97F4A7C15ULL;
	k ^= k >> 29;
	return k;
}

static int
pair_grow(struct merger *g)
{
	size_t n = (g->smask + 1) * 2;
	uint32_t *ns = calloc(n, sizeof *ns);
	if (ns == NULL)
		return v_error(V_ERR_NOMEM, "out of memory for pair counts");
	for (size_t p = 0; p < g->npairs; p++) {
		size_t i = (size_t)pkey_hash(g->pkey[p]) & (n - 1);
		while (ns[i])
			i = (i + 1) & (n - 1);
		ns[i] = (uint32_t)p + 1;
	}
	free(g->slot);
	g->slot = ns;
	g->smask = n - 1;
	return V_OK;
}

/* The index of pair key, created with count 0 when absent; -1 on error. */
static int64_t
pair_get(struct merger *g, uint64_t key)
{
	size_t i = (size_t)pkey_hash(key) & g->smask;

	for (;; i = (i + 1) & g->smask) {
		uint32_t s = g->slot[i];
		if (s == 0)
			break;
		if (g->pkey[s - 1] == key)
			return s - 1;
	}
	if (g->npairs == g->pcap) {
		size_t n = g->pcap ? g->pcap * 2 : 1 << 16;
		uint64_t *k = realloc(g->pkey, n * sizeof *k);
		if (k) g->pkey = k;
		int64_t *c = realloc(g->pcount, n * sizeof *c);
		if (c) g->pcount = c;
		struct wlist *w = realloc(g->where, n * sizeof *w);
		if (w) g->where = w;
		unsigned char *d = realloc(g->done, n);
		if (d) g->done = d;
		uint32_t *st = realloc(g->stamp, n * sizeof *st);
		if (st) g->stamp = st;
		if (!k || !c || !w || !d || !st) {
			v_error(V_ERR_NOMEM, "out of memory for pair counts");
			return -1;
		}
		g->pcap = n;
	}
	size_t p = g->npairs++;
	g->pkey[p] = key;
	g->pcount[p] = 0;
	memset(&g->where[p], 0, sizeof g->where[p]);
	g->done[p] = 0;
	g->stamp[p] = 0;
	g->slot[i] = (uint32_t)p + 1;
	if (g->npairs * 2 > g->smask + 1 && pair_grow(g))
		return -1;
	return (int64_t)p;
}

static int
where_add(struct wlist *l, uint32_t w)
{
	if (l->n && l->v[l->n - 1] == w)
		return V_OK;
	if (l->n == l->cap) {
		uint32_t n = l->cap ? l->cap * 2 : 4;
		uint32_t *v = realloc(l->v, n * sizeof *v);
		if (v == NULL)
			return v_error(V_ERR_NOMEM, "out of memory for pair positions");
		l->v = v;
		l->cap = n;
	}
	l->v[l->n++] = w;
	return V_OK;
}

static inline int
heap_less(const struct heap_ent *a, const struct heap_ent *b)
{
	/* "a comes after b": smaller count, or equal and larger key. */
	return a->count < b->count || (a->count == b->count && a->key > b->key);
}

static int
heap_push(struct merger *g, uint32_t pair)
{
	if (g->hn == g->hcap) {
		size_t n = g->hcap ? g->hcap * 2 : 1 << 16;
		struct heap_ent *h = realloc(g->heap, n * sizeof *h);
		if (h == NULL)
			return v_error(V_ERR_NOMEM, "out of memory for the pair heap");
		g->heap = h;
		g->hcap = n;
	}
	struct heap_ent v = { (uint64_t)g->pcount[pair], g->pkey[pair], pair };
	size_t i = g->hn++;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!heap_less(&g->heap[p], &v))
			break;
		g->heap[i] = g->heap[p];
		i = p;
	}
	g->heap[i] = v;
	return V_OK;
}

static struct heap_ent
heap_pop(struct merger *g)
{
	struct heap_ent top = g->heap[0], v = g->heap[--g->hn];
	size_t i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= g->hn)
			break;
		if (c + 1 < g->hn && heap_less(&g->heap[c], &g->heap[c + 1]))
			c++;
		if (!heap_less(&v, &g->heap[c]))
			break;
		g->heap[i] = g->heap[c];
		i = c;
	}
	if (g->hn > 0)
		g->heap[i] = v;
	return top;
}

/* Token bytes -> id, to spot a merge that remakes an existing token. */
static uint32_t
tok_find(struct merger *g, const void *p, size_t n, size_t *where)
{
	size_t i = (size_t)XXH3_64bits(p, n) & g->tmask;
	for (;; i = (i + 1) & g->tmask) {
		uint32_t s = g->tslot[i];
		if (s == 0) {
			*where = i;
			return UINT32_MAX;
		}
		uint32_t id = s - 1;
		if (g->tok_off[id + 1] - g->tok_off[id] == n &&
		    memcmp(g->bytes.p + g->tok_off[id], p, n) == 0)
			return id;
	}
}

static void
merger_free(struct merger *g)
{
	free(g->words);
	free(g->syms);
	for (size_t p = 0; p < g->npairs; p++)
		free(g->where[p].v);
	free(g->pkey);
	free(g->pcount);
	free(g->where);
	free(g->done);
	free(g->stamp);
	free(g->slot);
	free(g->heap);
	tok_buf_free(&g->bytes);
	free(g->tok_off);
	free(g->tslot);
}

/* Add delta to pair (a, b); when it is a pair holding the new token, note
 * word w in its list and mark it for the heap. */
static int
pair_delta(struct merger *g, uint32_t a, uint32_t b, int64_t delta, uint32_t w,
    uint32_t x, struct wlist *touched)
{
	int64_t p = pair_get(g, ((uint64_t)a << 32) | b);
	int err;

	if (p < 0)
		return V_ERR_NOMEM;
	g->pcount[p] += delta;
	if (delta > 0 && (a == x || b == x)) {
		if ((err = where_add(&g->where[p], w)))
			return err;
		if (!g->done[p] && g->stamp[p] != g->merge_no) {
			g->stamp[p] = g->merge_no;
			return where_add(touched, (uint32_t)p);
		}
	}
	return V_OK;
}

int
tok_trainer_finish(struct tok_trainer *tr, uint32_t vocab, uint64_t min_count,
    const char *path)
{
	struct merger g = { 0 };
	struct wlist touched = { 0 };
	uint32_t (*merges)[2] = NULL;
	size_t nmerges = 0, mcap = 0;
	int err;

	if ((err = flush_batch(tr)))
		return err;
	if (vocab < TOK_FIRST_MERGE)
		return v_error(V_ERR_RANGE, "a vocabulary of %u is smaller than the %d "
		    "special and byte tokens", vocab, TOK_FIRST_MERGE);
	if (min_count < 1)
		min_count = 1;

	/* Words of two or more bytes become symbol lists. */
	size_t nsym = 0, nw = 0;
	for (size_t i = 0; i <= tr->words.mask; i++)
		if (tr->words.slot[i].h && tr->words.slot[i].len > 1) {
			nsym += tr->words.slot[i].len;
			nw++;
		}
	g.words = malloc((nw ? nw : 1) * sizeof *g.words);
	g.syms = malloc((nsym ? nsym : 1) * sizeof *g.syms);
	g.smask = (1u << 16) - 1;
	g.slot = calloc(g.smask + 1, sizeof *g.slot);
	g.tcap = vocab + 1;
	g.tok_off = malloc(((size_t)g.tcap + 1) * sizeof *g.tok_off);
	size_t ts = 16;
	while (ts < 2 * (size_t)vocab)
		ts *= 2;
	g.tmask = ts - 1;
	g.tslot = calloc(ts, sizeof *g.tslot);
	if (!g.words || !g.syms || !g.slot || !g.tok_off || !g.tslot) {
		err = v_error(V_ERR_NOMEM, "out of memory for %zu words", nw);
		goto out;
	}
	nsym = 0;
	for (size_t i = 0; i <= tr->words.mask; i++) {
		const struct wslot *s = &tr->words.slot[i];
		if (s->h == 0 || s->len <= 1)
			continue;
		if (nsym + s->len > UINT32_MAX) {
			err = v_error(V_ERR_RANGE, "more than 4 G bytes of distinct words");
			goto out;
		}
		struct word *w = &g.words[g.nwords++];
		w->off = (uint32_t)nsym;
		w->len = s->len;
		w->count = s->count;
		for (uint32_t k = 0; k < s->len; k++)
			g.syms[nsym++] = TOK_BYTE_0 + (unsigned char)tr->words.arena.p[s->off + k];
	}
	/* The ids below TOK_BYTE_0 never take part; give them empty bytes. */
	for (uint32_t id = 0; id < TOK_BYTE_0; id++)
		g.tok_off[id] = 0;
	for (uint32_t b = 0; b < 256; b++) {
		size_t where;
		unsigned char c = (unsigned char)b;
		g.tok_off[TOK_BYTE_0 + b] = g.bytes.n;
		if ((err = tok_buf_put(&g.bytes, &c, 1)))
			goto out;
		g.tok_off[TOK_BYTE_0 + b + 1] = g.bytes.n;
		tok_find(&g, &c, 1, &where);
		g.tslot[where] = TOK_BYTE_0 + b + 1;
	}
	g.ntok = TOK_FIRST_MERGE;

	/* Initial pair counts. */
	for (size_t w = 0; w < g.nwords; w++) {
		const uint32_t *s = g.syms + g.words[w].off;
		for (uint32_t k = 0; k + 1 < g.words[w].len; k++) {
			int64_t p = pair_get(&g, ((uint64_t)s[k] << 32) | s[k + 1]);
			if (p < 0) {
				err = V_ERR_NOMEM;
				goto out;
			}
			g.pcount[p] += (int64_t)g.words[w].count;
			if ((err = where_add(&g.where[p], (uint32_t)w)))
				goto out;
		}
	}
	for (size_t p = 0; p < g.npairs; p++)
		if ((uint64_t)g.pcount[p] >= min_count && (err = heap_push(&g, (uint32_t)p)))
			goto out;

	while (g.ntok < vocab && g.hn > 0) {
		struct heap_ent top = heap_pop(&g);
		uint32_t p = top.pair;
		if (g.done[p])
			continue;
		if ((uint64_t)g.pcount[p] != top.count) {
			if (g.pcount[p] > 0 && (err = heap_push(&g, p)))
				goto out;
			continue;
		}
		if (top.count < min_count)
			break;
		uint32_t a = (uint32_t)(top.key >> 32), b = (uint32_t)top.key;
		g.done[p] = 1;

		/* The token the merge makes: new, or one that exists already. */
		size_t la = g.tok_off[a + 1] - g.tok_off[a];
		size_t lb = g.tok_off[b + 1] - g.tok_off[b];
		if ((err = tok_buf_grow(&g.bytes, la + lb)))
			goto out;
		memcpy(g.bytes.p + g.bytes.n, g.bytes.p + g.tok_off[a], la);
		memcpy(g.bytes.p + g.bytes.n + la, g.bytes.p + g.tok_off[b], lb);
		size_t where;
		uint32_t x = tok_find(&g, g.bytes.p + g.bytes.n, la + lb, &where);
		if (x == UINT32_MAX) {
			x = g.ntok++;
			g.bytes.n += la + lb;
			g.tok_off[x + 1] = g.bytes.n;
			g.tslot[where] = x + 1;
		}
		if (nmerges == mcap) {
			mcap = mcap ? mcap * 2 : 4096;
			void *nm = realloc(merges, mcap * sizeof *merges);
			if (nm == NULL) {
				err = v_error(V_ERR_NOMEM, "out of memory for merges");
				goto out;
			}
			merges = nm;
		}
		merges[nmerges][0] = a;
		merges[nmerges][1] = b;
		nmerges++;

		/* Rewrite each word that holds (a, b).  The list may hold a word
		 * twice or a word that no longer has the pair: both do nothing.
		 * It is copied because pair_delta may grow the pair arrays. */
		struct wlist wl = g.where[p];
		g.where[p].v = NULL;
		g.where[p].n = g.where[p].cap = 0;
		touched.n = 0;
		g.merge_no = (uint32_t)nmerges + 1;
		for (uint32_t k = 0; k < wl.n && !err; k++) {
			uint32_t w = wl.v[k];
			uint32_t *s = g.syms + g.words[w].off;
			uint32_t n = g.words[w].len, i = 0, j = 0;
			int64_t c = (int64_t)g.words[w].count;
			while (i < n && !err) {
				if (i + 1 < n && s[i] == a && s[i + 1] == b) {
					if (j > 0) {
						err = pair_delta(&g, s[j - 1], a, -c, w, x, &touched);
						if (!err)
							err = pair_delta(&g, s[j - 1], x, c, w, x, &touched);
					}
					if (!err && i + 2 < n) {
						err = pair_delta(&g, b, s[i + 2], -c, w, x, &touched);
						if (!err)
							err = pair_delta(&g, x, s[i + 2], c, w, x, &touched);
					}
					g.pcount[p] -= c;
					s[j++] = x;
					i += 2;
				} else {
					s[j++] = s[i++];
				}
			}
			g.words[w].len = j;
		}
		free(wl.v);
		if (err)
			goto out;
		/* A pair below min_count cannot be merged yet; if it reaches it
		 * later, that merge touches it again. */
		for (uint32_t k = 0; k < touched.n; k++)
			if ((uint64_t)g.pcount[touched.v[k]] >= min_count &&
			    (err = heap_push(&g, touched.v[k])))
				goto out;
	}

	/* Write the file. */
	struct v_atomic af;
	char steps[256];
	if ((err = v_atomic_open(&af, path)))
		goto out;
	FILE *fp = af.fp;
	fprintf(fp, "%s\nnormalize %s\nvocab %u\nmerges %zu\n", TOK_FILE_MAGIC,
	    tok_norm_format(tr->steps, steps, sizeof steps), g.ntok, nmerges);
	for (size_t m = 0; m < nmerges; m++)
		fprintf(fp, "%u %u\n", merges[m][0], merges[m][1]);
	fputs("end\n", fp);
	if (ferror(fp)) {
		err = v_error_errno(V_ERR_IO, "%s: write error", path);
		v_atomic_abort(&af);
		goto out;
	}
	if ((err = v_atomic_commit(&af)))
		v_atomic_abort(&af);
out:
	free(touched.v);
	free(merges);
	merger_free(&g);
	return err;
}
