/* tok.h: the Vesper tokenizer: French-aware normalisation and byte-level BPE.
 *
 * A tokenizer file (vesper-tokenizer(5)) holds the normalisation steps it was
 * trained with and its merges; tok_load() reads it and derives every token's
 * bytes.  Loaded, a struct tok is read-only and may be shared by threads;
 * encoding needs a struct tok_enc per thread (it holds a cache of words
 * already seen and scratch buffers).
 *
 * Ids are fixed across every Vesper tokenizer so that vtrain and vgen can
 * rely on them:
 *   0 <pad>, 1 <bos>, 2 <eos>, 3 [PII], 4 [NOISE], 5 [LAUGHTER],
 *   6 .. 69   [Intervenant 1:] .. [Intervenant 64:],
 *   70 .. 325 the 256 bytes 0x00 .. 0xFF,
 *   326 ..    the tokens the merges make, in the order they were learnt
 *             (a merge that remakes the bytes of an earlier token reuses
 *             its id).
 * tok_encode() never produces <pad>, <bos> or <eos>: text that spells them
 * is encoded as text, so a document cannot forge them.  The dialogue tags
 * are matched in the normalised text and become their single ids.
 *
 * Decoding returns bytes, not characters: a token may end inside a UTF-8
 * sequence, and a caller that prints tokens one at a time (vgen) holds back
 * an incomplete sequence until the next token completes it
 * (tok_utf8_complete() says how much of a buffer is whole). */
#ifndef VESPER_TOK_H
#define VESPER_TOK_H

#include <stddef.h>
#include <stdint.h>

enum {
	TOK_PAD = 0,
	TOK_BOS = 1,
	TOK_EOS = 2,
	TOK_PII = 3,
	TOK_NOISE = 4,
	TOK_LAUGHTER = 5,
	TOK_SPEAKER_1 = 6,	/* [Intervenant 1:]; speaker n is 5 + n */
	TOK_SPEAKERS = 64,	/* speakers 1 .. 64 have a token of their own */
	TOK_N_SPECIAL = 70,
	TOK_BYTE_0 = 70,	/* byte b is TOK_BYTE_0 + b */
	TOK_FIRST_MERGE = 326,
	TOK_DEFAULT_VOCAB = 32000
};

/* Normalisation steps, each a bit; TOK_NORM_ALL is the default.  The order
 * they apply in and what each does is in vtokenize(1). */
enum {
	TOK_NORM_UTF8 = 1 << 0,		/* invalid UTF-8 -> U+FFFD */
	TOK_NORM_NFC = 1 << 1,		/* Unicode NFC */
	TOK_NORM_NEWLINES = 1 << 2,	/* CR LF, CR, NEL, LS, PS -> LF */
	TOK_NORM_CONTROLS = 1 << 3,	/* C0/C1 controls but TAB, LF removed */
	TOK_NORM_INVISIBLE = 1 << 4,	/* zero-width, BOM, soft hyphen removed */
	TOK_NORM_LIGATURES = 1 << 5,	/* U+FB00..FB06 spelt out; oe, ae kept */
	TOK_NORM_APOSTROPHES = 1 << 6,	/* ’ ‘ ʼ ′ ‛ ＇ -> ' */
	TOK_NORM_SPACES = 1 << 7,	/* no-break and thin spaces -> space */
	TOK_NORM_DASHES = 1 << 8,	/* hyphen variants -> '-', bars -> dashes */
	TOK_NORM_QUOTES = 1 << 9,	/* one space inside « and » */
	TOK_NORM_SPEAKERS = 1 << 10,	/* [speakerNNN:] -> [Intervenant N:] */
	TOK_NORM_ALL = (1 << 11) - 1
};

/* The name of step bit (TOK_NORM_NFC -> "nfc"), or NULL. */
const char *tok_norm_name(unsigned bit);
/* Parse a comma-separated list of step names ("nfc,quotes"; "all";
 * "none") into bits. */
int tok_norm_parse(const char *list, unsigned *bits);
/* Format bits as a comma-separated list into buf ("none" for 0). */
const char *tok_norm_format(unsigned bits, char *buf, size_t len);

/* A growing byte buffer. */
struct tok_buf {
	char *p;
	size_t n, cap;
};
int tok_buf_put(struct tok_buf *b, const void *p, size_t n);
void tok_buf_free(struct tok_buf *b);

/* A growing list of ids. */
struct tok_ids {
	uint32_t *v;
	size_t n, cap;
};
int tok_ids_push(struct tok_ids *ids, uint32_t id);
void tok_ids_free(struct tok_ids *ids);

/* What normalisation met, summed over calls. */
struct tok_stats {
	uint64_t invalid;	/* invalid UTF-8 sequences replaced (or kept) */
	uint64_t removed;	/* characters removed (controls, invisible) */
	uint64_t bytes_in;	/* bytes read */
};

/* Normalise text[0..len) with steps, appending to out (never NUL-terminated
 * by this call).  Any bytes are accepted. */
int tok_normalize(unsigned steps, const char *text, size_t len,
    struct tok_buf *out, struct tok_stats *st);

struct tok;
struct tok_enc;

/* Load a tokenizer file; the detail of a failure names the file and line. */
int tok_load(const char *path, struct tok **out);
void tok_free(struct tok *t);

uint32_t tok_vocab_size(const struct tok *t);
/* The normalisation steps the tokenizer was trained with. */
unsigned tok_norm_steps(const struct tok *t);
/* SHA-256 of the tokenizer file as loaded (32 bytes). */
const unsigned char *tok_sha256(const struct tok *t);
/* The same as 64 lowercase hex digits. */
const char *tok_sha256_hex(const struct tok *t);

/* The bytes of token id (its text for the dialogue tags; empty for <pad>,
 * <bos>, <eos>); NULL with *len 0 for an id beyond the vocabulary. */
const unsigned char *tok_token_bytes(const struct tok *t, uint32_t id,
    size_t *len);
/* The name of a special id ("<bos>", "[Intervenant 3:]"), or NULL. */
const char *tok_special_name(uint32_t id);
/* The id of [Intervenant n:], or -1 when n has no token of its own. */
int tok_speaker_id(int n);

/* Per-thread encoding state. */
int tok_enc_new(const struct tok *t, struct tok_enc **out);
void tok_enc_free(struct tok_enc *e);

/* Normalise text[0..len) with the tokenizer's steps and append its ids
 * to out (no <bos>/<eos>; the caller frames documents).  st may be NULL. */
int tok_encode(struct tok_enc *e, const char *text, size_t len,
    struct tok_ids *out, struct tok_stats *st);
/* Encode text already normalised (what tok_normalize gives). */
int tok_encode_normalized(struct tok_enc *e, const char *text, size_t len,
    struct tok_ids *out);

/* Append the bytes of ids[0..n) to out; V_ERR_RANGE for an id beyond the
 * vocabulary. */
int tok_decode(const struct tok *t, const uint32_t *ids, size_t n,
    struct tok_buf *out);

/* The length of the longest prefix of buf[0..len) that does not end inside
 * a UTF-8 sequence which more bytes could still complete; what follows it
 * is to be held back until the next token arrives. */
size_t tok_utf8_complete(const unsigned char *buf, size_t len);

/* Training: learn merges from documents fed one at a time. */
struct tok_trainer;
int tok_trainer_new(unsigned steps, struct tok_trainer **out);
/* Threads for counting words (default 1). */
void tok_trainer_threads(struct tok_trainer *tr, int n);
/* Take one document; documents are normalised and their words counted in
 * batches, spread over the threads.  Call from one thread. */
int tok_trainer_add(struct tok_trainer *tr, const char *text, size_t len);
/* Learn merges until the vocabulary has vocab tokens (or no pair occurs
 * min_count times), then write the tokenizer file atomically to path. */
int tok_trainer_finish(struct tok_trainer *tr, uint32_t vocab,
    uint64_t min_count, const char *path);
/* Statistics for messages: distinct words, total words. */
void tok_trainer_counts(const struct tok_trainer *tr, uint64_t *distinct,
    uint64_t *total);
/* Ill-formed UTF-8 sequences the documents held (after finish). */
uint64_t tok_trainer_invalid(const struct tok_trainer *tr);
void tok_trainer_free(struct tok_trainer *tr);

/* Write a Hugging Face tokenizer.json for t to path ("-": stdout). */
int tok_export_hf(const struct tok *t, const char *path);

#endif
