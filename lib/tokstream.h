/* tokstream.h: the token stream between vtokenize, vshard and vtrain.
 *
 * Layout (all integers little-endian; documented in vesper-tokens(5)):
 *   header, 48 bytes: magic "VTOK", u16 version (1), u16 token width in
 *     bytes (2 or 4), u32 vocabulary size, u32 flags (0), then the 32-byte
 *     SHA-256 of the tokenizer file that made the ids (zeros: unknown).
 *   documents: u32 token count n (< 0xFFFFFFFF), then n ids of the width.
 *   end record: u32 0xFFFFFFFF, u64 document count, u64 token count.
 * The end record makes a stream cut short (a producer that died in a pipe)
 * an error for the reader rather than a silently shorter corpus. */
#ifndef VESPER_TOKSTREAM_H
#define VESPER_TOKSTREAM_H

#include <stdint.h>
#include <stdio.h>

#define TS_MAGIC "VTOK"
#define TS_VERSION 1
#define TS_HEADER_SIZE 48
#define TS_END 0xFFFFFFFFu
/* A document longer than this is refused (a corrupt length, not a book). */
#define TS_MAX_DOC_TOKENS (1u << 30)

struct ts_writer {
	FILE *fp;
	const char *name;
	uint32_t vocab;
	int width;
	unsigned char tokenizer[32];	/* SHA-256 of the tokenizer, or zeros */
	uint64_t docs, tokens;
	unsigned char *buf;
	size_t cap;
};

struct ts_reader {
	FILE *fp;
	const char *name;
	uint32_t vocab;
	int width;
	unsigned char tokenizer[32];	/* SHA-256 of the tokenizer, or zeros */
	uint64_t docs, tokens;	/* read so far */
	int ended;		/* the end record was seen */
	uint32_t *ids;		/* the current document, owned by the reader */
	size_t cap;
	unsigned char *raw;
	size_t rawcap;
};

/* Write the header; width 0 picks 2 when vocab <= 65536, else 4;
 * tokenizer is the SHA-256 of the tokenizer file, or NULL. */
int ts_writer_open(struct ts_writer *w, FILE *fp, const char *name,
    uint32_t vocab, int width, const unsigned char tokenizer[32]);
int ts_write_doc(struct ts_writer *w, const uint32_t *ids, size_t n);
/* Write the end record and release the writer (does not close fp). */
int ts_writer_close(struct ts_writer *w);
void ts_writer_free(struct ts_writer *w);

/* Read and check the header. */
int ts_reader_open(struct ts_reader *r, FILE *fp, const char *name);
/* Next document: 1 with *ids and *n set (valid until the next call), 0 at the
 * end record (after checking its counts), or an error.  Ids at or beyond
 * the vocabulary are an error naming the document. */
int ts_read_doc(struct ts_reader *r, const uint32_t **ids, size_t *n);
/* The same, leaving the ids as they are in the stream: *n little-endian
 * ids of r->width bytes at *raw (checked against the vocabulary; valid until
 * the next call).  For a reader that stores them as they are (vshard). */
int ts_read_doc_raw(struct ts_reader *r, const unsigned char **raw, size_t *n);
void ts_reader_free(struct ts_reader *r);

#endif
