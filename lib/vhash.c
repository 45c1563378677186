/* vhash.c: hexadecimal digests and file hashes. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <openssl/evp.h>

#include "verr.h"
#include "vhash.h"

void
v_hex_encode(const unsigned char *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

int
v_hex_decode(const char *s, unsigned char *out, size_t n, int any_case)
{
	if (strlen(s) != 2 * n)
		return -1;
	for (size_t i = 0; i < 2 * n; i++) {
		int c = s[i], v;
		if (c >= '0' && c <= '9')
			v = c - '0';
		else if (c >= 'a' && c <= 'f')
			v = c - 'a' + 10;
		else if (any_case && c >= 'A' && c <= 'F')
			v = c - 'A' + 10;
		else
			return -1;
		if (i % 2 == 0)
			out[i / 2] = (unsigned char)(v << 4);
		else
			out[i / 2] |= (unsigned char)v;
	}
	return 0;
}

int
v_sha256_file(const char *path, unsigned char out[32])
{
	FILE *fp = fopen(path, "rb");
	unsigned char buf[1 << 16];
	EVP_MD_CTX *md;
	size_t n;
	int err = V_OK;

	if (fp == NULL)
		return v_error_errno(errno == ENOENT ? V_ERR_NOTFOUND : V_ERR_IO, "%s", path);
	md = EVP_MD_CTX_new();
	if (md == NULL) {
		fclose(fp);
		return v_error(V_ERR_NOMEM, "out of memory");
	}
	EVP_DigestInit_ex(md, EVP_sha256(), NULL);
	while ((n = fread(buf, 1, sizeof buf, fp)) > 0)
		EVP_DigestUpdate(md, buf, n);
	if (ferror(fp))
		err = v_error_errno(V_ERR_IO, "%s: read error", path);
	EVP_DigestFinal_ex(md, out, NULL);
	EVP_MD_CTX_free(md);
	fclose(fp);
	return err;
}
