/* shard_reader.c: batches for training from a shard directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "shard.h"
#include "shard_reader.h"
#include "verr.h"
#include "vio.h"
#include "vjson.h"

struct shard_reader {
	char *dir;
	int split;
	struct shard_manifest m;
	struct shard_split_info *si;	/* m.split[split] */
	uint64_t *start;		/* shard i holds tokens start[i]..start[i+1] */
	long loaded;			/* index of cur, or -1 */
	struct shard_data cur;
	uint64_t epoch, pos;
	int rank, world;
};

int
shard_reader_open(struct shard_reader **rp, const char *dir, int split)
{
	struct shard_reader *r;
	int err;

	*rp = NULL;
	if (split != SHARD_TRAIN && split != SHARD_VAL)
		return v_error(V_ERR_ARG, "bad split %d", split);
	r = calloc(1, sizeof *r);
	if (r == NULL || (r->dir = strdup(dir)) == NULL) {
		free(r);
		return v_error(V_ERR_NOMEM, "out of memory");
	}
	r->split = split;
	r->loaded = -1;
	r->world = 1;
	err = shard_manifest_load(&r->m, dir);
	if (err) {
		free(r->dir);
		free(r);
		return err;
	}
	r->si = &r->m.split[split];
	r->start = malloc((r->si->n + 1) * sizeof *r->start);
	if (r->start == NULL) {
		shard_reader_close(r);
		return v_error(V_ERR_NOMEM, "out of memory");
	}
	r->start[0] = 0;
	for (size_t i = 0; i < r->si->n; i++) {
		struct shard_header h;
		char *path = shard_path(dir, r->si->shards[i].file);
		if (path == NULL)
			err = v_error(V_ERR_NOMEM, "out of memory");
		else if ((err = shard_file_header(path, &h)) == V_OK)
			err = shard_check_entry(&r->m, split, i, &h, path);
		free(path);
		if (err) {
			shard_reader_close(r);
			return err;
		}
		r->start[i + 1] = r->start[i] + r->si->shards[i].tokens;
	}
	*rp = r;
	return V_OK;
}

void
shard_reader_close(struct shard_reader *r)
{
	if (r == NULL)
		return;
	shard_data_free(&r->cur);
	shard_manifest_free(&r->m);
	free(r->start);
	free(r->dir);
	free(r);
}

int
shard_reader_set_stride(struct shard_reader *r, int rank, int world)
{
	if (world < 1 || rank < 0 || rank >= world)
		return v_error(V_ERR_ARG, "bad data-parallel rank %d of %d", rank, world);
	r->rank = rank;
	r->world = world;
	return V_OK;
}

uint32_t shard_reader_vocab(const struct shard_reader *r) { return r->m.vocab; }
const unsigned char *shard_reader_tokenizer(const struct shard_reader *r)
{ return r->m.tokenizer; }
uint64_t shard_reader_tokens(const struct shard_reader *r) { return r->si->tokens; }
uint64_t shard_reader_docs(const struct shard_reader *r) { return r->si->docs; }

/* The shard holding token at (at < total): the last i with start[i] <= at,
 * skipping shards with no tokens. */
static size_t
find_shard(const struct shard_reader *r, uint64_t at)
{
	size_t lo = 0, hi = r->si->n;	/* start[lo] <= at < start[hi] */

	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;
		if (r->start[mid] <= at)
			lo = mid;
		else
			hi = mid;
	}
	while (r->start[lo + 1] <= at)
		lo++;
	return lo;
}

static int
load(struct shard_reader *r, size_t i)
{
	char *path;
	int err;

	if (r->loaded == (long)i)
		return V_OK;
	shard_data_free(&r->cur);
	r->loaded = -1;
	path = shard_path(r->dir, r->si->shards[i].file);
	if (path == NULL)
		return v_error(V_ERR_NOMEM, "out of memory");
	err = shard_file_load(path, &r->cur);
	if (err == V_OK) {
		/* The file may have changed since the reader opened. */
		err = shard_check_entry(&r->m, r->split, i, &r->cur.h, path);
		if (err)
			shard_data_free(&r->cur);
	}
	free(path);
	if (err == V_OK)
		r->loaded = (long)i;
	return err;
}

/* Copy n tokens starting at split offset at (cyclically) into out. */
static int
copy_tokens(struct shard_reader *r, uint64_t at, uint64_t n, int32_t *out)
{
	const uint64_t total = r->si->tokens;

	at %= total;
	while (n > 0) {
		size_t i = find_shard(r, at);
		int err = load(r, i);
		if (err)
			return err;
		uint64_t in = at - r->start[i];
		uint64_t avail = r->start[i + 1] - at;
		uint64_t take = n < avail ? n : avail;
		const uint32_t *src = r->cur.ids + in;
		for (uint64_t k = 0; k < take; k++)
			out[k] = (int32_t)src[k];
		out += take;
		n -= take;
		at += take;
		if (at == total)
			at = 0;
	}
	return V_OK;
}

int
shard_reader_next_batch(struct shard_reader *r, int B, int T, int32_t *out)
{
	const uint64_t total = r->si->tokens;
	int err;

	if (B < 1 || T < 1)
		return v_error(V_ERR_ARG, "bad batch shape %d x %d", B, T);
	if (total == 0)
		return v_error(V_ERR_RANGE, "%s: the %s split holds no tokens", r->dir,
		    shard_split_name(r->split));
	uint64_t first = (uint64_t)r->rank * (uint64_t)B * (uint64_t)T;
	for (int b = 0; b < B; b++) {
		uint64_t at = (r->pos + (first + (uint64_t)b * (uint64_t)T) % total) % total;
		err = copy_tokens(r, at, (uint64_t)T + 1, out + (size_t)b * ((size_t)T + 1));
		if (err)
			return err;
	}
	uint64_t step = (uint64_t)r->world * (uint64_t)B * (uint64_t)T;
	r->epoch += step / total;
	uint64_t rest = step % total;
	if (r->pos >= total - rest) {
		r->pos = r->pos - (total - rest);
		r->epoch++;
	} else {
		r->pos += rest;
	}
	return V_OK;
}

void
shard_reader_tell(const struct shard_reader *r, struct shard_cursor *c)
{
	c->epoch = r->epoch;
	c->position = r->pos;
}

int
shard_reader_seek(struct shard_reader *r, const struct shard_cursor *c)
{
	if (c->position >= r->si->tokens && !(c->position == 0 && r->si->tokens == 0))
		return v_error(V_ERR_RANGE, "cursor position %llu beyond the %llu tokens "
		    "of the %s split", (unsigned long long)c->position,
		    (unsigned long long)r->si->tokens, shard_split_name(r->split));
	r->epoch = c->epoch;
	r->pos = c->position;
	return V_OK;
}

char *
shard_reader_cursor_json(const struct shard_reader *r)
{
	char fp[17];
	json_t *o = json_object();

	if (o == NULL)
		return NULL;
	snprintf(fp, sizeof fp, "%016llx", (unsigned long long)r->m.fingerprint);
	json_object_set_new(o, "split", json_string(shard_split_name(r->split)));
	json_object_set_new(o, "epoch", json_integer((json_int_t)r->epoch));
	json_object_set_new(o, "position", json_integer((json_int_t)r->pos));
	json_object_set_new(o, "tokens", json_integer((json_int_t)r->si->tokens));
	json_object_set_new(o, "manifest", json_string(fp));
	char *s = v_json_line(o);
	json_decref(o);
	return s;
}

static int
restore(struct shard_reader *r, int split, uint64_t epoch, uint64_t pos,
    uint64_t tokens, uint64_t fingerprint)
{
	struct shard_cursor c = { epoch, pos };

	if (split != r->split)
		return v_error(V_ERR_MISMATCH, "the cursor is for the %s split, not %s",
		    shard_split_name(split), shard_split_name(r->split));
	if (tokens != r->si->tokens || fingerprint != r->m.fingerprint)
		return v_error(V_ERR_MISMATCH, "the cursor was saved for another shard "
		    "directory than %s (its manifest differs)", r->dir);
	return shard_reader_seek(r, &c);
}

int
shard_reader_restore_json(struct shard_reader *r, const char *json)
{
	json_t *o;
	const char *split, *fp;
	long long epoch, pos, tokens;
	unsigned long long f;
	char *end;
	int err = v_json_parse(json, strlen(json), "cursor", 0, &o);

	if (err)
		return err;
	if (v_json_str(o, "split", &split, NULL) || v_json_str(o, "manifest", &fp, NULL) ||
	    v_json_int(o, "epoch", &epoch) || v_json_int(o, "position", &pos) ||
	    v_json_int(o, "tokens", &tokens) || epoch < 0 || pos < 0 || tokens < 0 ||
	    (strcmp(split, "train") != 0 && strcmp(split, "val") != 0) ||
	    strlen(fp) != 16) {
		json_decref(o);
		return v_error(V_ERR_FORMAT, "not a shard cursor: %.80s", json);
	}
	f = strtoull(fp, &end, 16);
	if (*end != '\0') {
		json_decref(o);
		return v_error(V_ERR_FORMAT, "not a shard cursor: %.80s", json);
	}
	err = restore(r, strcmp(split, "val") == 0 ? SHARD_VAL : SHARD_TRAIN,
	    (uint64_t)epoch, (uint64_t)pos, (uint64_t)tokens, f);
	json_decref(o);
	return err;
}

void
shard_reader_cursor_blob(const struct shard_reader *r, unsigned char b[SHARD_CURSOR_BLOB])
{
	memcpy(b, "VCUR", 4);
	v_put_u32(b + 4, (uint32_t)r->split);
	v_put_u64(b + 8, r->epoch);
	v_put_u64(b + 16, r->pos);
	v_put_u64(b + 24, r->si->tokens);
	v_put_u64(b + 32, r->m.fingerprint);
}

int
shard_reader_restore_blob(struct shard_reader *r, const unsigned char b[SHARD_CURSOR_BLOB])
{
	if (memcmp(b, "VCUR", 4) != 0 || v_get_u32(b + 4) > 1)
		return v_error(V_ERR_FORMAT, "not a shard cursor blob");
	return restore(r, (int)v_get_u32(b + 4), v_get_u64(b + 8), v_get_u64(b + 16),
	    v_get_u64(b + 24), v_get_u64(b + 32));
}
