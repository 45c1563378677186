/* shard_write.c: token stream -> shard directory. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>

#include "shard.h"
#include "shard_reader.h"
#include "shard_write.h"
#include "verr.h"
#include "vio.h"

uint64_t
shard_rng_next(uint64_t *state)
{
	uint64_t z = (*state += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* Uniform in [0, n) without modulo bias (Lemire's method would do too;
 * rejection keeps it obvious). */
static uint64_t
rng_below(uint64_t *state, uint64_t n)
{
	uint64_t limit = UINT64_MAX - UINT64_MAX % n;
	uint64_t x;

	do
		x = shard_rng_next(state);
	while (x >= limit);
	return x % n;
}

/* Ask for transparent huge pages on a large buffer not yet touched: the
 * whole corpus passes through these buffers, and with 4 KiB pages the
 * page faults cost a noticeable part of the run. */
static void
advise_huge(void *p, size_t n)
{
#ifdef MADV_HUGEPAGE
	const uintptr_t huge = 2u << 20;
	uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1);
	uintptr_t e = ((uintptr_t)p + n) & ~(huge - 1);

	if (n >= 4 * huge && e > a)
		(void)madvise((void *)a, e - a, MADV_HUGEPAGE);
#else
	(void)p;
	(void)n;
#endif
}

static int
grow(void **p, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return V_OK;
	size_t n = *cap ? *cap : 1024;
	while (n < need)
		n *= 2;
	void *q = realloc(*p, n * elem);
	if (q == NULL)
		return v_error(V_ERR_NOMEM, "out of memory (%zu bytes)", n * elem);
	advise_huge(q, n * elem);
	*p = q;
	*cap = n;
	return V_OK;
}

/* The shards of one split being written. */
struct split_out {
	const char *dir;
	int split, width, level, threads;
	uint64_t shard_tokens;
	struct shard_header proto;	/* vocab, width, tokenizer */
	uint32_t *lengths;
	const unsigned char **src;	/* piece i: lengths[i] ids at src[i] */
	size_t npieces, lcap, scap;
	uint64_t ntok;
	unsigned char *raw;
	size_t rcap;
	uint32_t flags;			/* SHARD_F_CONT_FIRST for the current shard */
	struct shard_split_info info;
	size_t entcap;
	ZSTD_CCtx *zc;
	uint64_t bytes;
};

static int
flush_shard(struct split_out *s, int cont_last)
{
	char name[64];
	int err;

	if (s->npieces == 0)
		return V_OK;
	size_t raw_len = 4 * s->npieces + s->ntok * (size_t)s->width;
	void *r = s->raw;
	err = grow(&r, &s->rcap, raw_len, 1);
	s->raw = r;
	if (err)
		return err;
	/* The ids are copied once, from the stream's buffer into the body. */
	unsigned char *q = s->raw + 4 * s->npieces;
	for (size_t i = 0; i < s->npieces; i++) {
		size_t k = (size_t)s->lengths[i] * (size_t)s->width;
		v_put_u32(s->raw + 4 * i, s->lengths[i]);
		if (k > 0)
			memcpy(q, s->src[i], k);
		q += k;
	}

	struct shard_header h = s->proto;
	h.flags = s->flags | (cont_last ? SHARD_F_CONT_LAST : 0);
	h.split = (uint32_t)s->split;
	h.index = (uint32_t)s->info.n;
	h.pieces = s->npieces;
	h.tokens = s->ntok;
	snprintf(name, sizeof name, "%s-%05zu.vsh", shard_split_name(s->split), s->info.n);
	char *path = shard_path(s->dir, name);
	if (path == NULL)
		return v_error(V_ERR_NOMEM, "out of memory");
	err = shard_file_write(path, &h, s->raw, raw_len, s->level, s->threads, s->zc);
	free(path);
	if (err)
		return err;

	void *e = s->info.shards;
	err = grow(&e, &s->entcap, s->info.n + 1, sizeof *s->info.shards);
	s->info.shards = e;
	if (err)
		return err;
	struct shard_entry *ent = &s->info.shards[s->info.n];
	ent->file = strdup(name);
	if (ent->file == NULL)
		return v_error(V_ERR_NOMEM, "out of memory");
	ent->pieces = h.pieces;
	ent->tokens = h.tokens;
	ent->bytes = SHARD_HEADER_SIZE + h.body_bytes;
	ent->body_xxh3 = h.body_xxh3;
	ent->flags = h.flags;
	s->info.n++;
	s->info.tokens += h.tokens;
	s->bytes += ent->bytes;
	s->npieces = 0;
	s->ntok = 0;
	s->flags = cont_last ? SHARD_F_CONT_FIRST : 0;
	return V_OK;
}

static int
add_doc(struct split_out *s, const unsigned char *ids, uint64_t n)
{
	int err;

	s->info.docs++;
	do {
		uint64_t room = s->shard_tokens - s->ntok;
		uint64_t take = n < room ? n : room;
		void *p = s->lengths;
		err = grow(&p, &s->lcap, s->npieces + 1, sizeof *s->lengths);
		s->lengths = p;
		if (err)
			return err;
		p = (void *)s->src;
		err = grow(&p, &s->scap, s->npieces + 1, sizeof *s->src);
		s->src = p;
		if (err)
			return err;
		s->src[s->npieces] = ids;
		s->lengths[s->npieces++] = (uint32_t)take;
		s->ntok += take;
		ids += take * (size_t)s->width;
		n -= take;
		if (s->ntok == s->shard_tokens && (err = flush_shard(s, n > 0)))
			return err;
	} while (n > 0);
	return V_OK;
}

static void
split_out_free(struct split_out *s)
{
	free(s->lengths);
	free((void *)s->src);
	free(s->raw);
	ZSTD_freeCCtx(s->zc);
	s->lengths = NULL;
	s->src = NULL;
	s->raw = NULL;
	s->zc = NULL;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

/* Is name one of ours: "train-NNNNN.vsh", "val-NNNNN.vsh", or a temporary
 * file of one of them or of the manifest? */
static int
our_file(const char *name, int *is_tmp)
{
	const char *p;

	*is_tmp = 0;
	if (strncmp(name, SHARD_MANIFEST ".tmp.", sizeof SHARD_MANIFEST + 4) == 0) {
		*is_tmp = 1;
		return 1;
	}
	if (strncmp(name, "train-", 6) == 0)
		p = name + 6;
	else if (strncmp(name, "val-", 4) == 0)
		p = name + 4;
	else
		return 0;
	int digits = 0;
	while (*p >= '0' && *p <= '9') {
		p++;
		digits++;
	}
	if (digits < 5 || strncmp(p, ".vsh", 4) != 0)
		return 0;
	if (p[4] == '\0')
		return 1;
	if (strncmp(p + 4, ".tmp.", 5) == 0) {
		*is_tmp = 1;
		return 1;
	}
	return 0;
}

/* Remove our temporary leftovers (a run killed by SIGKILL) or, with
 * keep != NULL, our shards that keep does not list. */
static int
sweep(const char *dir, const struct shard_split_info *keep)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	if (d == NULL)
		return v_error_errno(V_ERR_IO, "%s", dir);
	while ((de = readdir(d)) != NULL) {
		int tmp, listed = 0;
		if (!our_file(de->d_name, &tmp))
			continue;
		if (keep == NULL && !tmp)
			continue;
		if (keep != NULL) {
			if (tmp || strcmp(de->d_name, SHARD_MANIFEST) == 0)
				continue;
			for (int sp = 0; sp < 2 && !listed; sp++)
				for (size_t i = 0; i < keep[sp].n && !listed; i++)
					listed = strcmp(keep[sp].shards[i].file, de->d_name) == 0;
			if (listed)
				continue;
		}
		char *p = shard_path(dir, de->d_name);
		if (p != NULL)
			unlink(p);
		free(p);
	}
	closedir(d);
	return V_OK;
}

int
shard_write_dir(const char *dir, struct ts_reader *in, const struct shard_write_opts *o,
    struct v_progress *prog, struct shard_write_result *res)
{
	unsigned char *data = NULL;	/* every id, packed at the stream width */
	size_t dcap = 0;
	uint64_t *off = NULL;		/* document i: tokens off[i]..off[i+1] */
	size_t ocap = 0, ndocs = 0;
	uint64_t *order = NULL;
	struct split_out out[2];
	struct shard_manifest m;
	int err;
	const int width = in->width;

	memset(out, 0, sizeof out);
	memset(&m, 0, sizeof m);
	memset(res, 0, sizeof *res);
	if (o->shard_tokens == 0 || !(o->val_fraction >= 0 && o->val_fraction < 1))
		return v_error(V_ERR_ARG, "bad shard options");
	if ((err = v_mkdir_p(dir)))
		return err;
	char *mpath = shard_path(dir, SHARD_MANIFEST);
	if (mpath == NULL)
		return v_error(V_ERR_NOMEM, "out of memory");
	if (unlink(mpath) != 0 && errno != ENOENT) {
		err = v_error_errno(V_ERR_IO, "cannot remove the old %s", mpath);
		free(mpath);
		return err;
	}
	free(mpath);
	if ((err = sweep(dir, NULL)))
		return err;

	/* A file's size bounds the id bytes it holds: one allocation, no
	 * copies as the buffer grows. */
	struct stat st;
	void *p = NULL;
	if (fstat(fileno(in->fp), &st) == 0 && S_ISREG(st.st_mode) &&
	    st.st_size > TS_HEADER_SIZE) {
		if ((err = grow(&p, &dcap, (size_t)st.st_size, 1)))
			goto done;
		data = p;
	}
	p = off;
	if ((err = grow(&p, &ocap, 1, sizeof *off)))
		goto done;
	off = p;
	off[0] = 0;
	for (;;) {
		const unsigned char *ids;
		size_t n;
		int r = ts_read_doc_raw(in, &ids, &n);
		if (r < 0) {
			err = r;
			goto done;
		}
		if (r == 0)
			break;
		uint64_t at = off[ndocs];
		p = data;
		err = grow(&p, &dcap, (size_t)(at + n) * (size_t)width, 1);
		data = p;
		if (err)
			goto done;
		if (n > 0)
			memcpy(data + at * (size_t)width, ids, n * (size_t)width);
		p = off;
		err = grow(&p, &ocap, ndocs + 2, sizeof *off);
		off = p;
		if (err)
			goto done;
		off[++ndocs] = at + n;
		if (prog != NULL)
			v_progress_add(prog, n);
	}

	order = malloc((ndocs ? ndocs : 1) * sizeof *order);
	if (order == NULL) {
		err = v_error(V_ERR_NOMEM, "out of memory");
		goto done;
	}
	for (size_t i = 0; i < ndocs; i++)
		order[i] = i;
	uint64_t rng = o->seed;
	for (size_t i = ndocs; i > 1; i--) {
		size_t j = (size_t)rng_below(&rng, i);
		uint64_t t = order[i - 1];
		order[i - 1] = order[j];
		order[j] = t;
	}
	size_t nval = (size_t)(o->val_fraction * (double)ndocs + 0.5);
	if (o->val_fraction > 0 && nval == 0 && ndocs > 1)
		nval = 1;
	if (ndocs > 1 && nval >= ndocs)
		nval = ndocs - 1;
	if (!o->shuffle) {
		qsort(order, nval, sizeof *order, cmp_u64);
		qsort(order + nval, ndocs - nval, sizeof *order, cmp_u64);
	}

	for (int sp = 0; sp < 2; sp++) {
		struct split_out *s = &out[sp];
		s->dir = dir;
		s->split = sp;
		s->width = width;
		s->level = o->level;
		s->threads = o->threads;
		s->shard_tokens = o->shard_tokens;
		s->proto.vocab = in->vocab;
		s->proto.width = (uint16_t)width;
		memcpy(s->proto.tokenizer, in->tokenizer, 32);
		s->zc = ZSTD_createCCtx();
		if (s->zc == NULL) {
			err = v_error(V_ERR_NOMEM, "out of memory");
			goto done;
		}
		size_t lo = sp == SHARD_TRAIN ? nval : 0;
		size_t hi = sp == SHARD_TRAIN ? ndocs : nval;
		for (size_t k = lo; k < hi; k++) {
			uint64_t d = order[k];
			uint64_t n = off[d + 1] - off[d];
			err = add_doc(s, n ? data + off[d] * (size_t)width : NULL, n);
			if (err)
				goto done;
		}
		if ((err = flush_shard(s, 0)))
			goto done;
	}

	m.vocab = in->vocab;
	m.width = width;
	memcpy(m.tokenizer, in->tokenizer, 32);
	m.shard_tokens = o->shard_tokens;
	m.seed = o->seed;
	m.val_fraction = o->val_fraction;
	m.shuffle = o->shuffle;
	for (int sp = 0; sp < 2; sp++) {
		m.split[sp] = out[sp].info;
		res->docs[sp] = out[sp].info.docs;
		res->tokens[sp] = out[sp].info.tokens;
		res->shards[sp] = out[sp].info.n;
		res->bytes += out[sp].bytes;
	}
	err = shard_manifest_write(&m, dir);
	if (err == V_OK)
		err = sweep(dir, m.split);
	memset(&m, 0, sizeof m);	/* the entries belong to out[] */
done:
	for (int sp = 0; sp < 2; sp++) {
		for (size_t i = 0; i < out[sp].info.n; i++)
			free(out[sp].info.shards[i].file);
		free(out[sp].info.shards);
		split_out_free(&out[sp]);
	}
	free(order);
	free(off);
	free(data);
	return err;
}
