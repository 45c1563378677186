/* shard.h: the shard file and the manifest of a shard directory.
 *
 * Layout (all integers little-endian; documented in vesper-shards(5)):
 *   header, 96 bytes:
 *      0 magic "VSHD"          4 u16 version (1)     6 u16 token width (2, 4)
 *      8 u32 vocabulary size  12 u32 flags (SHARD_F_*)
 *     16 u64 pieces (documents or parts of documents)
 *     24 u64 tokens           32 u64 body bytes (compressed)
 *     40 u64 XXH3-64 of the compressed body
 *     48 32 bytes: SHA-256 of the tokenizer (zeros: unknown)
 *     80 u32 split (0 train, 1 val)   84 u32 shard index in its split
 *     88 u64 XXH3-64 of header bytes 0..87
 *   body: one zstd frame (with its content checksum) holding
 *     u32 piece lengths[pieces], then the ids, `width` bytes each.
 * A document longer than the room left in a shard continues in the next
 * shard of its split; the flags say so, which is how `vshard cat` gives
 * back whole documents. */
#ifndef VESPER_SHARD_H
#define VESPER_SHARD_H

#include <stddef.h>
#include <stdint.h>

#define SHARD_MAGIC "VSHD"
#define SHARD_VERSION 1
#define SHARD_HEADER_SIZE 96
#define SHARD_MANIFEST "manifest.json"
#define SHARD_FORMAT_NAME "vesper-shards"

enum {
	SHARD_F_CONT_FIRST = 1,	/* the first piece continues the previous shard's last */
	SHARD_F_CONT_LAST = 2	/* the last piece continues in the next shard */
};

struct shard_header {
	uint16_t width;
	uint32_t vocab, flags, split, index;
	uint64_t pieces, tokens, body_bytes, body_xxh3;
	unsigned char tokenizer[32];
};

void shard_header_encode(const struct shard_header *h,
    unsigned char out[SHARD_HEADER_SIZE]);
/* Check magic, version, header checksum and field sanity. */
int shard_header_decode(struct shard_header *h,
    const unsigned char in[SHARD_HEADER_SIZE], const char *name);

/* Write a shard file atomically at path: the header (body_bytes and
 * body_xxh3 are filled in here) and body = the packed, uncompressed
 * lengths-then-ids of raw_len bytes, compressed at zstd level by threads
 * worker threads (0: in the calling thread; any count >= 1 gives the same
 * bytes).  zctx may be NULL or a ZSTD_CCtx to reuse. */
int shard_file_write(const char *path, struct shard_header *h,
    const void *raw, size_t raw_len, int level, int threads, void *zctx);

/* A loaded shard: lengths[pieces], ids[tokens]. */
struct shard_data {
	struct shard_header h;
	uint32_t *lengths;
	uint32_t *ids;
};

/* Read, check (header, body checksum, sizes, piece lengths summing to the
 * token count, every id below the vocabulary) and decode the shard at
 * path. */
int shard_file_load(const char *path, struct shard_data *d);
/* The checks of shard_file_load without keeping the data: the body is
 * hashed and decompressed as a stream, in constant memory; h receives the
 * header. */
int shard_file_verify(const char *path, struct shard_header *h);
/* Read and check only the header (and that the file size matches it). */
int shard_file_header(const char *path, struct shard_header *h);
void shard_data_free(struct shard_data *d);

struct shard_entry {
	char *file;		/* name inside the directory */
	uint64_t pieces, tokens, bytes, body_xxh3;	/* bytes: whole file */
	uint32_t flags;
};

struct shard_split_info {
	uint64_t docs, tokens;
	size_t n;
	struct shard_entry *shards;
};

struct shard_manifest {
	uint32_t vocab;
	int width;
	unsigned char tokenizer[32];
	uint64_t shard_tokens, seed;
	double val_fraction;
	int shuffle;
	struct shard_split_info split[2];	/* SHARD_TRAIN, SHARD_VAL */
	uint64_t fingerprint;	/* XXH3-64 of the manifest file */
};

/* Parse dir/manifest.json (every field checked). */
int shard_manifest_load(struct shard_manifest *m, const char *dir);
/* Write dir/manifest.json atomically. */
int shard_manifest_write(const struct shard_manifest *m, const char *dir);
void shard_manifest_free(struct shard_manifest *m);

/* Does the header h of dir's shard path agree with entry i of split sp of
 * the manifest (vocabulary, tokenizer, split, index, counts, checksum)? */
int shard_check_entry(const struct shard_manifest *m, int sp, size_t i,
    const struct shard_header *h, const char *path);

/* "train" or "val". */
const char *shard_split_name(int split);
/* dir/name into a malloc'ed string (NULL when out of memory). */
char *shard_path(const char *dir, const char *name);

/* Load the manifest into m and check every shard of the directory against
 * it: headers, sizes, checksums, counts, continuations and ids.  On failure
 * m is freed. */
int shard_verify_dir(const char *dir, struct shard_manifest *m);

#endif
