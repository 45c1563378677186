/* http.h: HTTP GET and verified, resumable downloads over libcurl.
 *
 * Redirects are followed here, not by libcurl, so that the bearer token
 * goes only to the origin (scheme, host and port) it was given for: the
 * Hugging Face hub answers /resolve/ with a redirect to a CDN that must
 * never see the token.  Transient failures (no connection, a connection
 * cut mid-body, 429, 5xx) are retried with exponential backoff, honouring
 * Retry-After; 4xx answers are not.  A download goes to "<dest>.part",
 * resumes from its size with a Range request, starts over when the server
 * answers 200 instead of 206, is hashed while it arrives, and is renamed to
 * dest only when its size and hashes match. */
#ifndef VESPER_HTTP_H
#define VESPER_HTTP_H

#include <stddef.h>
#include <stdint.h>

struct http_opts {
	const char *token;	/* bearer token, or NULL */
	const char *token_origin;	/* "scheme://host:port" it may go to */
	int retries;		/* extra attempts after a transient failure */
	double backoff;		/* seconds before the first retry; doubles */
	int progress;		/* V_PROGRESS_AUTO, _ON or _OFF */
	long stall_seconds;	/* abort a transfer this long below 1 byte/s */
};

void http_opts_default(struct http_opts *o);

/* The origin of url, "scheme://host:port" with a lowercase scheme and host
 * and the default port made explicit, into out (NUL-terminated);
 * V_ERR_ARG for a URL that is not http or https. */
int http_origin(const char *url, char *out, size_t len);

/* GET url into a malloc'ed, NUL-terminated body (at most max bytes).
 * *next (may be NULL) receives the malloc'ed target of a Link header's
 * rel="next", or NULL. */
int http_get(const struct http_opts *o, const char *url, size_t max,
    char **body, size_t *len, char **next);

/* Download url to dest as described above.  size: the expected size, or
 * -1 when unknown; sha256: the expected hash (32 bytes), or NULL; git_oid:
 * the expected git object id (20 bytes: SHA-1 of "blob <size>", a NUL and
 * the content; it needs the size), or NULL.  label names the file in
 * progress lines and errors. */
int http_download(const struct http_opts *o, const char *url, const char *dest,
    int64_t size, const unsigned char *sha256, const unsigned char *git_oid,
    const char *label);


#endif
