/* shard_reader.h: training batches from a vshard directory.
 *
 * A shard directory (vesper-shards(5)) holds two splits, train and val.
 * Each split is one long sequence of tokens: its documents concatenated in
 * the order vshard wrote them (already shuffled), shard after shard.  The
 * reader walks that sequence cyclically: when a batch runs past the end it
 * continues at the start, and the epoch counter goes up by one.
 *
 * A batch is B rows of T+1 consecutive tokens, row b starting T tokens after
 * row b-1 (so the last token of a row is the first of the next: inputs are
 * row[0..T), targets row[1..T]).  A batch advances the position by B*T.
 * With a stride (data parallel: rank r of w), rank r reads the batch that
 * starts r*B*T after the shared position and every rank advances by w*B*T,
 * so the w ranks together read what one reader would in w steps.
 *
 * The cursor (epoch, position) is all the state that decides the next
 * batch: saving it in a checkpoint and seeking to it on restart gives the
 * same next batch bit for bit.  Its JSON and blob forms also record the
 * split, its token count and a fingerprint of the manifest, so that a
 * cursor is refused against a different shard directory.
 *
 * Checks: the manifest is parsed and every shard's header is read and
 * compared with it when the reader opens; a shard's body checksum, its
 * decompressed size and every token id (< vocabulary) are checked when the
 * shard is first loaded.  Errors name the file. */
#ifndef VESPER_SHARD_READER_H
#define VESPER_SHARD_READER_H

#include <stddef.h>
#include <stdint.h>

enum shard_split { SHARD_TRAIN = 0, SHARD_VAL = 1 };

struct shard_reader;	/* opaque */

struct shard_cursor {
	uint64_t epoch;		/* completed passes over the split */
	uint64_t position;	/* token offset in the split, < its token count */
};

/* Open split of the shard directory dir. */
int shard_reader_open(struct shard_reader **r, const char *dir, int split);
void shard_reader_close(struct shard_reader *r);

/* Data parallel: this reader is rank of world (0 <= rank < world).
 * Default 0 of 1. */
int shard_reader_set_stride(struct shard_reader *r, int rank, int world);

uint32_t shard_reader_vocab(const struct shard_reader *r);
/* The SHA-256 of the tokenizer (32 bytes; all zero when unknown). */
const unsigned char *shard_reader_tokenizer(const struct shard_reader *r);
/* Tokens and documents in one pass over the split. */
uint64_t shard_reader_tokens(const struct shard_reader *r);
uint64_t shard_reader_docs(const struct shard_reader *r);

/* Fill out[B*(T+1)] with the next batch (row-major, row b at
 * out + b*(T+1)) and advance.  B >= 1, T >= 1.  Fails with V_ERR_RANGE on
 * an empty split. */
int shard_reader_next_batch(struct shard_reader *r, int B, int T, int32_t *out);

void shard_reader_tell(const struct shard_reader *r, struct shard_cursor *c);
/* Move to c (position must be below the split's token count). */
int shard_reader_seek(struct shard_reader *r, const struct shard_cursor *c);

/* The cursor as one-line JSON (malloc'ed):
 *   {"split":"train","epoch":E,"position":P,"tokens":N,"manifest":"<hex>"} */
char *shard_reader_cursor_json(const struct shard_reader *r);
/* Seek to a cursor saved by shard_reader_cursor_json; refused (V_ERR_MISMATCH)
 * when it was saved for another split or shard directory. */
int shard_reader_restore_json(struct shard_reader *r, const char *json);

/* The same as a fixed-size little-endian blob. */
#define SHARD_CURSOR_BLOB 40
void shard_reader_cursor_blob(const struct shard_reader *r,
    unsigned char blob[SHARD_CURSOR_BLOB]);
int shard_reader_restore_blob(struct shard_reader *r,
    const unsigned char blob[SHARD_CURSOR_BLOB]);

#endif
