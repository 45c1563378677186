/* test_shard_reader.c: shard writing and the training reader: batches are
 * the stream's tokens in order, wrap into the next epoch, a saved cursor
 * gives the same next batches, ranks split the work, and corruption of
 * any kind is an error naming the file. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tap.h"
#include "../../lib/shard.h"
#include "../../lib/shard_reader.h"
#include "../../lib/shard_write.h"
#include "../../lib/tokstream.h"
#include "../../lib/verr.h"
#include "../../lib/vio.h"

static char tmpdir[] = "/tmp/vesper-shard-unit.XXXXXX";

#define NDOCS 300
#define VOCAB 5000
static uint32_t *all;		/* the stream's tokens, concatenated */
static uint64_t nall;

/* A stream of NDOCS documents of varied lengths (some empty, some longer
 * than a shard) written to path; the concatenation kept in all. */
static void
make_stream(const char *path, uint64_t seed)
{
	FILE *fp = fopen(path, "wb");
	struct ts_writer w;
	uint32_t doc[2000];

	nall = 0;
	all = realloc(all, NDOCS * 2000 * sizeof *all);
	ts_writer_open(&w, fp, path, VOCAB, 0, NULL);
	for (int d = 0; d < NDOCS; d++) {
		size_t n = (size_t)(shard_rng_next(&seed) % 5 == 0 ? 0 :
		    shard_rng_next(&seed) % (d % 50 == 0 ? 2000 : 120));
		for (size_t i = 0; i < n; i++)
			doc[i] = all[nall + i] = (uint32_t)(shard_rng_next(&seed) % VOCAB);
		nall += n;
		ts_write_doc(&w, doc, n);
	}
	ts_writer_close(&w);
	fclose(fp);
}

static int
write_dir(const char *dir, const char *stream, struct shard_write_opts *o)
{
	FILE *fp = fopen(stream, "rb");
	struct ts_reader r;
	struct shard_write_result res;
	int err = ts_reader_open(&r, fp, stream);

	if (err == V_OK)
		err = shard_write_dir(dir, &r, o, NULL, &res);
	ts_reader_free(&r);
	fclose(fp);
	return err;
}

static char *
path2(const char *a, const char *b)
{
	static char buf[8][512];
	static int k;
	k = (k + 1) % 8;
	snprintf(buf[k], sizeof buf[k], "%s/%s", a, b);
	return buf[k];
}

static void
flip_byte(const char *path, long at)
{
	FILE *fp = fopen(path, "r+b");
	fseek(fp, at, SEEK_SET);
	int c = fgetc(fp);
	fseek(fp, at, SEEK_SET);
	fputc(c ^ 0x10, fp);
	fclose(fp);
}

static void
copy_file(const char *from, const char *to)
{
	char *b;
	FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
	fseek(in, 0, SEEK_END);
	long n = ftell(in);
	rewind(in);
	b = malloc((size_t)n);
	if (fread(b, 1, (size_t)n, in) != (size_t)n)
		abort();
	fwrite(b, 1, (size_t)n, out);
	fclose(in);
	fclose(out);
	free(b);
}

int
main(void)
{
	struct shard_reader *r, *r2;
	struct shard_write_opts o = { 1000, 0, 7, 0, 3, 0 };
	int err;

	if (mkdtemp(tmpdir) == NULL)
		return 1;
	char *stream = strdup(path2(tmpdir, "s.tok"));
	char *d1 = strdup(path2(tmpdir, "plain"));
	make_stream(stream, 42);
	is_int(write_dir(d1, stream, &o), V_OK, "write a directory in stream order");

	err = shard_reader_open(&r, d1, SHARD_TRAIN);
	is_int(err, V_OK, "open the train split");
	is_int(shard_reader_tokens(r), nall, "the split holds every token");
	is_int(shard_reader_docs(r), NDOCS, "and every document");
	is_int(shard_reader_vocab(r), VOCAB, "vocabulary from the manifest");

	/* Batches walk the concatenation: row b of batch k starts at
	 * (k*B + b)*T, with T+1 tokens, cyclically. */
	enum { B = 3, T = 257 };
	int32_t batch[B * (T + 1)], again[B * (T + 1)];
	int steps = (int)(2 * nall / (B * T)) + 2, good = 1;
	for (int k = 0; k < steps && good; k++) {
		good = shard_reader_next_batch(r, B, T, batch) == V_OK;
		for (int b = 0; b < B && good; b++)
			for (int t = 0; t <= T; t++) {
				uint64_t at = ((uint64_t)k * B * T + (uint64_t)b * T + t) % nall;
				if ((uint32_t)batch[b * (T + 1) + t] != all[at]) {
					diag("batch %d row %d token %d: %d, want %u", k, b, t,
					    batch[b * (T + 1) + t], all[at]);
					good = 0;
					break;
				}
			}
	}
	ok(good, "%d batches (two epochs and more) follow the stream, wrapping", steps);
	struct shard_cursor c;
	shard_reader_tell(r, &c);
	is_int(c.epoch, (uint64_t)steps * B * T / nall, "the epoch counts the wraps");
	is_int(c.position, (uint64_t)steps * B * T % nall, "the position is modulo the split");

	/* Save, read three batches, restore in a new reader: the same three. */
	char *js = shard_reader_cursor_json(r);
	unsigned char blob[SHARD_CURSOR_BLOB];
	shard_reader_cursor_blob(r, blob);
	int32_t want[3][B * (T + 1)];
	for (int k = 0; k < 3; k++)
		shard_reader_next_batch(r, B, T, want[k]);
	shard_reader_open(&r2, d1, SHARD_TRAIN);
	is_int(shard_reader_restore_json(r2, js), V_OK, "restore from JSON: %s", js);
	good = 1;
	for (int k = 0; k < 3; k++) {
		shard_reader_next_batch(r2, B, T, again);
		good &= memcmp(again, want[k], sizeof again) == 0;
	}
	ok(good, "after a JSON restore the next three batches are bit-identical");
	is_int(shard_reader_restore_blob(r2, blob), V_OK, "restore from the blob");
	shard_reader_next_batch(r2, B, T, again);
	ok(memcmp(again, want[0], sizeof again) == 0, "the blob restore gives the same batch");
	shard_reader_close(r2);

	/* Two ranks together read what one reader reads in two steps. */
	struct shard_reader *a, *b;
	shard_reader_open(&a, d1, SHARD_TRAIN);
	shard_reader_open(&b, d1, SHARD_TRAIN);
	shard_reader_set_stride(b, 1, 2);
	shard_reader_set_stride(a, 0, 2);
	struct shard_cursor z = { 0, 0 };
	shard_reader_seek(r, &z);
	good = 1;
	for (int k = 0; k < 5; k++) {
		shard_reader_next_batch(r, B, T, want[0]);
		shard_reader_next_batch(r, B, T, want[1]);
		shard_reader_next_batch(a, B, T, batch);
		shard_reader_next_batch(b, B, T, again);
		good &= memcmp(batch, want[0], sizeof batch) == 0 &&
		    memcmp(again, want[1], sizeof again) == 0;
	}
	ok(good, "rank 0 and 1 of 2 read alternate batches of a single reader");
	is_int(shard_reader_set_stride(a, 2, 2), V_ERR_ARG, "rank beyond world refused");
	shard_reader_close(a);
	shard_reader_close(b);

	/* Validation split, shuffle: a different directory refuses the cursor. */
	char *d2 = strdup(path2(tmpdir, "shuffled"));
	struct shard_write_opts o2 = { 1500, 0.1, 9, 1, 3, 2 };
	is_int(write_dir(d2, stream, &o2), V_OK, "write a shuffled directory with val");
	struct shard_reader *v;
	is_int(shard_reader_open(&v, d2, SHARD_VAL), V_OK, "open its val split");
	is_int(shard_reader_docs(v), NDOCS / 10, "val holds 10%% of the documents");
	is_int(shard_reader_restore_json(v, js), V_ERR_MISMATCH,
	    "a cursor of another directory and split is refused");
	struct shard_reader *t2;
	shard_reader_open(&t2, d2, SHARD_TRAIN);
	is_int(shard_reader_tokens(t2) + shard_reader_tokens(v), nall,
	    "train and val together hold every token");
	is_int(shard_reader_restore_json(t2, js), V_ERR_MISMATCH,
	    "a cursor of another directory, same split, is refused");
	is_int(shard_reader_restore_json(t2, "{\"split\":\"train\"}"), V_ERR_FORMAT,
	    "a malformed cursor is refused");
	shard_reader_close(t2);
	shard_reader_close(v);
	free(js);

	/* The same input and options give the same bytes. */
	char *d3 = strdup(path2(tmpdir, "again"));
	write_dir(d3, stream, &o2);
	char *m2, *m3;
	size_t l2, l3;
	FILE *f2 = fopen(path2(d2, "manifest.json"), "rb"), *f3 = fopen(path2(d3, "manifest.json"), "rb");
	m2 = calloc(1, 1 << 20);
	m3 = calloc(1, 1 << 20);
	l2 = fread(m2, 1, 1 << 20, f2);
	l3 = fread(m3, 1, 1 << 20, f3);
	fclose(f2);
	fclose(f3);
	ok(l2 == l3 && memcmp(m2, m3, l2) == 0, "sharding is deterministic for a seed");
	free(m2);
	free(m3);

	/* A flipped byte in a shard body: an error naming the shard when the
	 * batch reaches it. */
	shard_reader_seek(r, &z);
	flip_byte(path2(d1, "train-00001.vsh"), 200);
	err = V_OK;
	for (int k = 0; k < 10 && err == V_OK; k++)
		err = shard_reader_next_batch(r, B, T, batch);
	is_int(err, V_ERR_CHECKSUM, "a flipped body byte is a checksum error");
	ok(strstr(v_errmsg(err), "train-00001.vsh") != NULL, "naming the shard: %s",
	    v_errmsg(err));
	shard_reader_close(r);

	/* A flipped header byte: refused when the reader opens. */
	flip_byte(path2(d1, "train-00001.vsh"), 200);	/* undo */
	flip_byte(path2(d1, "train-00002.vsh"), 20);
	is_int(shard_reader_open(&r, d1, SHARD_TRAIN), V_ERR_CHECKSUM,
	    "a flipped header byte is refused at open");
	flip_byte(path2(d1, "train-00002.vsh"), 20);

	/* A truncated shard. */
	if (truncate(path2(d1, "train-00003.vsh"), 120) != 0)
		abort();
	err = shard_reader_open(&r, d1, SHARD_TRAIN);
	is_int(err, V_ERR_TRUNCATED, "a truncated shard is refused at open");
	ok(strstr(v_errmsg(err), "train-00003.vsh") != NULL, "naming it: %s", v_errmsg(err));

	/* A shard of another directory under a listed name. */
	copy_file(path2(d3, "train-00003.vsh"), path2(d1, "train-00003.vsh"));
	err = shard_reader_open(&r, d1, SHARD_TRAIN);
	is_int(err, V_ERR_MISMATCH, "a shard that disagrees with the manifest is refused");
	diag("%s", v_errmsg(err));

	/* A token id beyond the vocabulary, in a shard whose checksums are
	 * right (a writer bug, not corruption). */
	struct shard_manifest m;
	is_int(shard_manifest_load(&m, d3), V_OK, "load a manifest");
	unsigned char raw[4 + 2 * 3];
	struct shard_header h;
	memset(&h, 0, sizeof h);
	h.width = 2;
	h.vocab = VOCAB;
	h.pieces = 1;
	h.tokens = 3;
	v_put_u32(raw, 3);
	v_put_u16(raw + 4, 1);
	v_put_u16(raw + 6, VOCAB);
	v_put_u16(raw + 8, 2);
	char *bad = path2(tmpdir, "bad.vsh");
	is_int(shard_file_write(bad, &h, raw, sizeof raw, 3, 0, NULL), V_OK, "write a hand-made shard");
	struct shard_data sd;
	err = shard_file_load(bad, &sd);
	is_int(err, V_ERR_RANGE, "an id beyond the vocabulary is refused");
	ok(strstr(v_errmsg(err), "bad.vsh") != NULL && strstr(v_errmsg(err), "5000"),
	    "naming the file and the id: %s", v_errmsg(err));
	err = shard_file_verify(bad, &h);
	is_int(err, V_ERR_RANGE, "the streaming check refuses it too");
	ok(strstr(v_errmsg(err), "token 1: id 5000") != NULL, "at the same place: %s",
	    v_errmsg(err));
	shard_manifest_free(&m);

	/* Every single-byte change and every truncation of a shard is caught
	 * (the header and the body each have a checksum). */
	{
		unsigned char *orig;
		long n;
		const char *good = path2(tmpdir, "good.vsh");
		v_put_u16(raw + 6, VOCAB - 1);
		shard_file_write(good, &h, raw, sizeof raw, 3, 0, NULL);
		is_int(shard_file_load(good, &sd), V_OK, "a good hand-made shard loads");
		shard_data_free(&sd);
		FILE *f = fopen(good, "rb");
		fseek(f, 0, SEEK_END);
		n = ftell(f);
		rewind(f);
		orig = malloc((size_t)n);
		if (fread(orig, 1, (size_t)n, f) != (size_t)n)
			abort();
		fclose(f);
		char *mut = path2(tmpdir, "mut.vsh");
		int caught = 0, cut = 0, vcaught = 0, vcut = 0;
		struct shard_header vh;
		for (long i = 0; i < n; i++) {
			for (int bit = 0; bit < 8; bit++) {
				orig[i] ^= (unsigned char)(1 << bit);
				f = fopen(mut, "wb");
				fwrite(orig, 1, (size_t)n, f);
				fclose(f);
				orig[i] ^= (unsigned char)(1 << bit);
				caught += shard_file_load(mut, &sd) != V_OK;
				shard_data_free(&sd);
				vcaught += shard_file_verify(mut, &vh) != V_OK;
			}
		}
		for (long k = 0; k < n; k++) {
			f = fopen(mut, "wb");
			fwrite(orig, 1, (size_t)k, f);
			fclose(f);
			cut += shard_file_load(mut, &sd) != V_OK;
			shard_data_free(&sd);
			vcut += shard_file_verify(mut, &vh) != V_OK;
		}
		is_int(caught, 8 * n, "all %ld bit flips of a %ld-byte shard are refused", 8 * n, n);
		is_int(cut, n, "and all %ld truncations", n);
		is_int(vcaught, 8 * n, "the streaming check refuses every bit flip too");
		is_int(vcut, n, "and every truncation");
		is_int(shard_file_verify(good, &vh), V_OK, "and passes the good shard");
		free(orig);
	}

	/* Manifest damage. */
	FILE *mf = fopen(path2(d3, "manifest.json"), "w");
	fputs("{\"format\":\"vesper-shards\",\"version\":1,", mf);
	fclose(mf);
	err = shard_manifest_load(&m, d3);
	is_int(err, V_ERR_FORMAT, "a truncated manifest is refused");
	ok(strstr(v_errmsg(err), "manifest.json") != NULL, "naming it: %s", v_errmsg(err));
	is_int(shard_reader_open(&r, tmpdir, SHARD_TRAIN), V_ERR_NOTFOUND,
	    "a directory with no manifest is refused");

	free(stream);
	free(d1);
	free(d2);
	free(d3);
	free(all);
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		diag("could not remove %s", tmpdir);
	return done_testing();
}
