/* vhash.h: hexadecimal digests and the SHA-256 of a file (OpenSSL's
 * libcrypto), shared by every program that names a tokenizer, checks a
 * download or records a checkpoint's hash. */
#ifndef VESPER_VHASH_H
#define VESPER_VHASH_H

#include <stddef.h>

/* n bytes as 2n lowercase hexadecimal digits and a NUL (out: 2n+1). */
void v_hex_encode(const unsigned char *b, size_t n, char *out);
/* Exactly 2n hexadecimal digits into n bytes: 0, or -1 for any other
 * length or character.  Upper case is accepted only with any_case, so that
 * a file format that writes lowercase can insist on it. */
int v_hex_decode(const char *s, unsigned char *out, size_t n, int any_case);
/* The SHA-256 of a whole file, read in blocks. */
int v_sha256_file(const char *path, unsigned char out[32]);

#endif
