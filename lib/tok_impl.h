/* tok_impl.h: what the tokenizer's files share among themselves (not for
 * programs: they use tok.h). */
#ifndef VESPER_TOK_IMPL_H
#define VESPER_TOK_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "tok.h"

#define TOK_FILE_MAGIC "vesper-tokenizer 1"
/* A pre-token longer than this is cut into pieces of at most this many
 * bytes (at character boundaries) before BPE, which bounds the memory and
 * time one hostile word can take. */
#define TOK_MAX_PIECE 65536

int tok_buf_grow(struct tok_buf *b, size_t extra);

/* Decode one UTF-8 character at s[0..n), n >= 1: its length, with *cp the
 * code point, or *cp = UINT32_MAX for an ill-formed sequence whose maximal
 * subpart (the length returned) becomes one U+FFFD. */
size_t tok_utf8_next(const unsigned char *s, size_t n, uint32_t *cp);

/* Pre-token classes. */
enum { TOK_C_OTHER, TOK_C_LETTER, TOK_C_NUMBER, TOK_C_SPACE };
int tok_class(uint32_t cp);

/* Split text[0..n) (normalised, free of special tokens) into pre-tokens:
 * calls fn(arg, start, len) for each, in order; stops at fn's first error. */
int tok_pretokenize(const char *text, size_t n,
    int (*fn)(void *arg, const char *p, size_t len), void *arg);

/* Find the next special token in text[0..n): its offset in *at, length in
 * *len, id returned; -1 when none. */
int tok_find_special(const char *text, size_t n, size_t *at, size_t *len);

/* The pre-tokenisation pattern, in the syntax of the Oniguruma regular
 * expressions Hugging Face tokenizers uses. */
extern const char tok_pretok_regex[];

/* The tokenizer as loaded. */
struct tok_pair_map;
struct tok {
	uint32_t vocab;
	uint32_t nmerges;
	unsigned steps;
	uint32_t (*merges)[2];		/* (nmerges): left, right */
	uint32_t *merge_result;		/* (nmerges): the id each merge makes */
	unsigned char *bytes;		/* all tokens' bytes, back to back */
	uint64_t *tok_off;		/* (vocab + 1) offsets into bytes */
	/* pair -> rank: open addressing, keys (left << 32 | right) + 1 */
	uint64_t *pair_keys;
	uint32_t *pair_rank;
	size_t pair_mask;
	unsigned char sha[32];
	char sha_hex[65];
};

/* Build a struct tok from merges (taking ownership of merges); used by
 * tok_load and by the trainer's self-check. */
int tok_build(unsigned steps, uint32_t (*merges)[2], uint32_t nmerges,
    const char *name, struct tok **out);

#endif
