/* http.c: GET and resumable, verified downloads over libcurl. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>

#include "http.h"
#include "verr.h"
#include "vio.h"
#include "vprogress.h"
#include "vhash.h"

#define MAX_REDIRECTS 10
#define USER_AGENT "vesper-vfetch/1"

void
http_opts_default(struct http_opts *o)
{
	memset(o, 0, sizeof *o);
	o->retries = 5;
	o->backoff = 1.0;
	o->progress = V_PROGRESS_AUTO;
	o->stall_seconds = 60;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;
static void curl_init(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

int
http_origin(const char *url, char *out, size_t len)
{
	const char *p = strstr(url, "://");
	const char *port = NULL;
	int https;

	if (p == NULL)
		return v_error(V_ERR_ARG, "%s: not a URL", url);
	if ((size_t)(p - url) == 4 && strncasecmp(url, "http", 4) == 0)
		https = 0;
	else if ((size_t)(p - url) == 5 && strncasecmp(url, "https", 5) == 0)
		https = 1;
	else
		return v_error(V_ERR_ARG, "%s: only http and https URLs are supported", url);
	p += 3;
	/* Credentials before '@' are not part of the origin. */
	const char *end = p + strcspn(p, "/?#");
	const char *at = memchr(p, '@', (size_t)(end - p));
	if (at != NULL)
		p = at + 1;
	const char *host = p, *hend = end;
	if (*host == '[') {		/* an IPv6 literal */
		const char *rb = memchr(host, ']', (size_t)(end - host));
		if (rb == NULL)
			return v_error(V_ERR_ARG, "%s: bad host", url);
		hend = rb + 1;
		if (hend < end && *hend == ':')
			port = hend + 1;
	} else {
		const char *colon = memchr(host, ':', (size_t)(end - host));
		if (colon != NULL) {
			hend = colon;
			port = colon + 1;
		}
	}
	if (hend == host)
		return v_error(V_ERR_ARG, "%s: no host", url);
	char portbuf[16];
	if (port != NULL && port < end) {
		size_t n = (size_t)(end - port);
		if (n == 0 || n >= sizeof portbuf)
			return v_error(V_ERR_ARG, "%s: bad port", url);
		memcpy(portbuf, port, n);
		portbuf[n] = '\0';
	} else {
		strcpy(portbuf, https ? "443" : "80");
	}
	int n = snprintf(out, len, "%s://%.*s:%s", https ? "https" : "http",
	    (int)(hend - host), host, portbuf);
	if (n < 0 || (size_t)n >= len)
		return v_error(V_ERR_ARG, "%s: URL too long", url);
	for (char *q = out; *q; q++)
		*q = (char)tolower((unsigned char)*q);
	return V_OK;
}

/* One transfer's state, shared by the header and body callbacks. */
struct xfer {
	CURL *c;
	long status;
	int hstatus;		/* status of the header block being read */
	char content_range[128];
	long retry_after;	/* seconds, or -1 */
	char *link_next;
	/* buffer sink */
	char *buf;
	size_t len, cap, max;
	/* file sink */
	FILE *fp;
	const char *part;
	EVP_MD_CTX *md;		/* SHA-256 of the file */
	EVP_MD_CTX *git;	/* SHA-1 of "blob <size>\0" + the file, or NULL */
	int64_t size;		/* expected size, for the git header */
	uint64_t offset;	/* bytes in the file when the request was sent */
	uint64_t have;		/* bytes in the file now */
	int started;		/* the body of this response has begun */
	struct v_progress *prog;
	int sink_err;		/* a v_error code set in a callback */
};

/* Start the file's hashes over (a download that restarts from byte 0). */
static void
digests_reset(struct xfer *x)
{
	EVP_DigestInit_ex(x->md, EVP_sha256(), NULL);
	if (x->git != NULL) {
		char h[32];
		int n = snprintf(h, sizeof h, "blob %lld", (long long)x->size);
		EVP_DigestInit_ex(x->git, EVP_sha1(), NULL);
		EVP_DigestUpdate(x->git, h, (size_t)n + 1);	/* with its NUL */
	}
}

static void
digests_update(struct xfer *x, const void *p, size_t n)
{
	EVP_DigestUpdate(x->md, p, n);
	if (x->git != NULL)
		EVP_DigestUpdate(x->git, p, n);
}

static void
xfer_reset_headers(struct xfer *x)
{
	x->content_range[0] = '\0';
	x->retry_after = -1;
	free(x->link_next);
	x->link_next = NULL;
}

/* The target of rel="next" in a Link header value, malloc'ed. */
static char *
link_next(const char *v, size_t n)
{
	const char *end = v + n;

	while (v < end) {
		const char *lt = memchr(v, '<', (size_t)(end - v));
		if (lt == NULL)
			return NULL;
		const char *gt = memchr(lt, '>', (size_t)(end - lt));
		if (gt == NULL)
			return NULL;
		const char *comma = memchr(gt, ',', (size_t)(end - gt));
		const char *pend = comma ? comma : end;
		/* Look for rel="next" or rel=next among the parameters. */
		for (const char *q = gt; q + 3 < pend; q++) {
			if (strncasecmp(q, "rel=", 4) == 0) {
				const char *r = q + 4;
				if (*r == '"')
					r++;
				if (pend - r >= 4 && strncasecmp(r, "next", 4) == 0 &&
				    (r + 4 == pend || r[4] == '"' || r[4] == ';' ||
				    r[4] == ' ')) {
					size_t len = (size_t)(gt - lt - 1);
					char *u = malloc(len + 1);
					if (u != NULL) {
						memcpy(u, lt + 1, len);
						u[len] = '\0';
					}
					return u;
				}
			}
		}
		v = comma ? comma + 1 : end;
	}
	return NULL;
}

static size_t
on_header(char *data, size_t size, size_t n, void *arg)
{
	struct xfer *x = arg;
	size_t len = size * n;

	if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
		xfer_reset_headers(x);
		const char *sp = memchr(data, ' ', len);
		x->hstatus = sp != NULL ? atoi(sp + 1) : 0;
		return len;
	}
	const char *colon = memchr(data, ':', len);
	if (colon == NULL)
		return len;
	size_t klen = (size_t)(colon - data);
	const char *v = colon + 1;
	size_t vlen = len - klen - 1;
	while (vlen > 0 && (*v == ' ' || *v == '\t')) {
		v++;
		vlen--;
	}
	while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
		vlen--;
	if (klen == 13 && strncasecmp(data, "Content-Range", 13) == 0) {
		size_t k = vlen < sizeof x->content_range - 1 ? vlen : sizeof x->content_range - 1;
		memcpy(x->content_range, v, k);
		x->content_range[k] = '\0';
	} else if (klen == 11 && strncasecmp(data, "Retry-After", 11) == 0) {
		char tmp[32];
		size_t k = vlen < sizeof tmp - 1 ? vlen : sizeof tmp - 1;
		memcpy(tmp, v, k);
		tmp[k] = '\0';
		char *e;
		long s = strtol(tmp, &e, 10);
		if (e != tmp && s >= 0)
			x->retry_after = s;
	} else if (klen == 14 && strncasecmp(data, "Content-Length", 14) == 0 &&
	    x->prog != NULL && x->prog->total == 0 &&
	    (x->hstatus == 200 || x->hstatus == 206)) {
		/* A size the listing did not give: the progress line can show
		 * a percentage and the time left after all. */
		char tmp[32];
		size_t k = vlen < sizeof tmp - 1 ? vlen : sizeof tmp - 1;
		memcpy(tmp, v, k);
		tmp[k] = '\0';
		char *e;
		unsigned long long n = strtoull(tmp, &e, 10);
		if (e != tmp && *e == '\0')
			x->prog->total = (x->hstatus == 206 ? x->have : 0) + n;
	} else if (klen == 4 && strncasecmp(data, "Link", 4) == 0) {
		free(x->link_next);
		x->link_next = link_next(v, vlen);
	}
	return len;
}

static size_t
on_body(char *data, size_t size, size_t n, void *arg)
{
	struct xfer *x = arg;
	size_t len = size * n;
	long code = 0;

	curl_easy_getinfo(x->c, CURLINFO_RESPONSE_CODE, &code);
	x->status = code;
	if (code < 200 || code >= 300)
		return len;	/* the body of a redirect or an error: not ours */
	if (x->fp == NULL) {
		if (x->len + len > x->max) {
			x->sink_err = v_error(V_ERR_RANGE, "answer larger than %zu bytes", x->max);
			return 0;
		}
		if (x->len + len + 1 > x->cap) {
			size_t nc = x->cap ? x->cap : 65536;
			while (nc < x->len + len + 1)
				nc *= 2;
			char *nb = realloc(x->buf, nc);
			if (nb == NULL) {
				x->sink_err = v_error(V_ERR_NOMEM, "out of memory");
				return 0;
			}
			x->buf = nb;
			x->cap = nc;
		}
		memcpy(x->buf + x->len, data, len);
		x->len += len;
		return len;
	}
	if (!x->started) {
		x->started = 1;
		if (code == 206) {
			unsigned long long a, b;
			if (sscanf(x->content_range, "bytes %llu-%llu", &a, &b) != 2 ||
			    a != x->offset) {
				x->sink_err = v_error(V_ERR_NET, "%s: the server resumed at "
				    "'%s', not at byte %llu", x->part, x->content_range,
				    (unsigned long long)x->offset);
				return 0;
			}
		} else if (x->offset > 0) {
			/* A whole answer to a Range request: start the file over. */
			if (fflush(x->fp) != 0 || ftruncate(fileno(x->fp), 0) != 0 ||
			    fseek(x->fp, 0, SEEK_SET) != 0) {
				x->sink_err = v_error_errno(V_ERR_IO, "%s: cannot restart", x->part);
				return 0;
			}
			digests_reset(x);
			x->offset = x->have = 0;
		}
	}
	if (fwrite(data, 1, len, x->fp) != len) {
		x->sink_err = v_error_errno(V_ERR_IO, "%s: write error", x->part);
		return 0;
	}
	digests_update(x, data, len);
	x->have += len;
	if (x->prog != NULL)
		v_progress_update(x->prog, x->have);
	return len;
}

static int
transient_curl(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_PARTIAL_FILE:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR:
		return 1;
	default:
		return 0;
	}
}

static void
sleep_seconds(double s)
{
	struct timespec ts;

	if (s <= 0)
		return;
	ts.tv_sec = (time_t)s;
	ts.tv_nsec = (long)((s - (double)ts.tv_sec) * 1e9);
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Run the request for url (redirects, retries) into x's sink.  what names
 * the resource in errors. */
static int
perform(const struct http_opts *o, const char *url0, struct xfer *x, const char *what)
{
	char origin[512], tokorigin[512] = "";
	char *url = strdup(url0);
	int attempt = 0, hops = 0, err = V_OK;

	if (url == NULL)
		return v_error(V_ERR_NOMEM, "out of memory");
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK) {
		free(url);
		return v_error(V_ERR_NET, "cannot initialise libcurl");
	}
	if (o->token != NULL && o->token_origin != NULL &&
	    http_origin(o->token_origin, tokorigin, sizeof tokorigin) != V_OK)
		tokorigin[0] = '\0';
	x->c = curl_easy_init();
	if (x->c == NULL) {
		free(url);
		return v_error(V_ERR_NOMEM, "out of memory");
	}
	for (;;) {
		CURL *c = x->c;
		struct curl_slist *hdr = NULL;
		char range[64], auth[4096];

		if ((err = http_origin(url, origin, sizeof origin)))
			break;
		curl_easy_reset(c);
		curl_easy_setopt(c, CURLOPT_URL, url);
		curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
		curl_easy_setopt(c, CURLOPT_USERAGENT, USER_AGENT);
		curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
		curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
		curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
		curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, o->stall_seconds);
		curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
		curl_easy_setopt(c, CURLOPT_BUFFERSIZE, 512L * 1024);
		if (tokorigin[0] != '\0' && strcmp(origin, tokorigin) == 0) {
			snprintf(auth, sizeof auth, "Authorization: Bearer %s", o->token);
			hdr = curl_slist_append(hdr, auth);
		}
		if (x->fp != NULL && x->have > 0) {
			snprintf(range, sizeof range, "Range: bytes=%llu-",
			    (unsigned long long)x->have);
			hdr = curl_slist_append(hdr, range);
		}
		if (hdr != NULL)
			curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
		x->status = 0;
		x->started = 0;
		x->offset = x->have;
		x->len = 0;
		x->sink_err = V_OK;
		xfer_reset_headers(x);
		uint64_t before = x->have;
		CURLcode rc = curl_easy_perform(c);
		curl_slist_free_all(hdr);
		if (x->fp != NULL && fflush(x->fp) != 0 && x->sink_err == V_OK)
			x->sink_err = v_error_errno(V_ERR_IO, "%s: write error", x->part);
		long code = 0;
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
		x->status = code;
		if (x->sink_err) {
			err = x->sink_err;
			break;
		}
		char why[256];
		if (rc != CURLE_OK) {
			snprintf(why, sizeof why, "%s", curl_easy_strerror(rc));
			if (!transient_curl(rc)) {
				err = v_error(V_ERR_NET, "%s: %s", what, why);
				break;
			}
		} else if (code >= 300 && code < 400) {
			char *loc = NULL;
			curl_easy_getinfo(c, CURLINFO_REDIRECT_URL, &loc);
			if (loc == NULL) {
				err = v_error(V_ERR_NET, "%s: HTTP %ld without a Location", what, code);
				break;
			}
			if (++hops > MAX_REDIRECTS) {
				err = v_error(V_ERR_NET, "%s: more than %d redirects", what,
				    MAX_REDIRECTS);
				break;
			}
			char *next = strdup(loc);
			if (next == NULL) {
				err = v_error(V_ERR_NOMEM, "out of memory");
				break;
			}
			free(url);
			url = next;
			continue;
		} else if (code >= 200 && code < 300) {
			err = V_OK;
			break;
		} else if (code == 416 && x->fp != NULL && x->have > 0) {
			/* Our partial file is longer than the resource: start over. */
			if (ftruncate(fileno(x->fp), 0) != 0 || fseek(x->fp, 0, SEEK_SET) != 0) {
				err = v_error_errno(V_ERR_IO, "%s: cannot restart", x->part);
				break;
			}
			digests_reset(x);
			x->have = 0;
			snprintf(why, sizeof why, "HTTP 416");
		} else if (code == 429 || code >= 500) {
			snprintf(why, sizeof why, "HTTP %ld", code);
		} else if (code == 401 || code == 403) {
			err = v_error(V_ERR_NET, "%s: HTTP %ld: %s", what, code,
			    o->token ? "the token (HF_TOKEN) is not accepted for this "
			    "resource" : "authentication required (set HF_TOKEN to a "
			    "Hugging Face access token)");
			break;
		} else if (code == 404) {
			err = v_error(V_ERR_NOTFOUND, "%s: HTTP 404: not found", what);
			break;
		} else {
			err = v_error(V_ERR_NET, "%s: HTTP %ld", what, code);
			break;
		}
		/* A transient failure.  An attempt that moved the file forward
		 * does not use up a retry: a flaky link still finishes. */
		if (x->have > before)
			attempt = 0;
		if (attempt >= o->retries) {
			err = v_error(V_ERR_NET, "%s: %s (gave up after %d attempts)", what,
			    why, attempt + 1);
			break;
		}
		double delay = o->backoff * (double)(1u << (attempt < 16 ? attempt : 16));
		if (x->retry_after >= 0)
			delay = x->retry_after < 60 ? (double)x->retry_after : 60.0;
		attempt++;
		sleep_seconds(delay);
		/* A retry starts from the first URL: a redirect target may be a
		 * signed URL that has expired. */
		free(url);
		url = strdup(url0);
		hops = 0;
		if (url == NULL) {
			err = v_error(V_ERR_NOMEM, "out of memory");
			break;
		}
	}
	curl_easy_cleanup(x->c);
	x->c = NULL;
	free(url);
	return err;
}

int
http_get(const struct http_opts *o, const char *url, size_t max, char **body,
    size_t *len, char **next)
{
	struct xfer x;
	int err;

	memset(&x, 0, sizeof x);
	x.max = max;
	x.retry_after = -1;
	*body = NULL;
	if (next != NULL)
		*next = NULL;
	err = perform(o, url, &x, url);
	if (err == V_OK && x.buf == NULL && (x.buf = malloc(1)) == NULL)
		err = v_error(V_ERR_NOMEM, "out of memory");
	if (err) {
		free(x.buf);
		free(x.link_next);
		return err;
	}
	x.buf[x.len] = '\0';
	*body = x.buf;
	*len = x.len;
	if (next != NULL)
		*next = x.link_next;
	else
		free(x.link_next);
	return V_OK;
}

/* Hash the first n bytes already in fp (a partial download being resumed). */
static int
hash_prefix(FILE *fp, struct xfer *x, uint64_t n, const char *name)
{
	unsigned char buf[1 << 16];

	if (fseek(fp, 0, SEEK_SET) != 0)
		return v_error_errno(V_ERR_IO, "%s", name);
	while (n > 0) {
		size_t k = n < sizeof buf ? (size_t)n : sizeof buf;
		if (fread(buf, 1, k, fp) != k)
			return v_error_errno(V_ERR_IO, "%s: read error", name);
		digests_update(x, buf, k);
		n -= k;
	}
	return fseek(fp, 0, SEEK_END) == 0 ? V_OK : v_error_errno(V_ERR_IO, "%s", name);
}

int
http_download(const struct http_opts *o, const char *url, const char *dest,
    int64_t size, const unsigned char *sha256, const unsigned char *git_oid,
    const char *label)
{
	struct xfer x;
	struct v_progress prog;
	struct stat st;
	unsigned char got[32];
	char *part;
	int err, fd;

	memset(&x, 0, sizeof x);
	x.retry_after = -1;
	part = malloc(strlen(dest) + 6);
	if (part == NULL)
		return v_error(V_ERR_NOMEM, "out of memory");
	sprintf(part, "%s.part", dest);
	x.part = part;
	fd = open(part, O_RDWR | O_CREAT, 0644);
	if (fd < 0 || (x.fp = fdopen(fd, "r+b")) == NULL) {
		err = v_error_errno(V_ERR_IO, "cannot open %s", part);
		if (fd >= 0)
			close(fd);
		free(part);
		return err;
	}
	/* Two vfetch runs sharing a cache must not write one .part together. */
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		err = errno == EWOULDBLOCK ? v_error(V_ERR_IO, "%s: another vfetch is "
		    "downloading this file (%s is locked)", label, part) :
		    v_error_errno(V_ERR_IO, "%s: lock", part);
		goto done;
	}
	x.size = size;
	x.md = EVP_MD_CTX_new();
	if (git_oid != NULL && size >= 0)
		x.git = EVP_MD_CTX_new();
	if (x.md == NULL || (git_oid != NULL && size >= 0 && x.git == NULL)) {
		err = v_error(V_ERR_NOMEM, "out of memory");
		goto done;
	}
	digests_reset(&x);
	if (fstat(fd, &st) != 0) {
		err = v_error_errno(V_ERR_IO, "%s", part);
		goto done;
	}
	x.have = (uint64_t)st.st_size;
	if (size >= 0 && x.have > (uint64_t)size) {
		/* Longer than the file can be: not a prefix of it. */
		if (ftruncate(fd, 0) != 0) {
			err = v_error_errno(V_ERR_IO, "%s", part);
			goto done;
		}
		x.have = 0;
	}
	if ((err = hash_prefix(x.fp, &x, x.have, part)))
		goto done;
	v_progress_init(&prog, stderr, o->progress, label, "", V_UNIT_BYTES,
	    size > 0 ? (uint64_t)size : 0);
	x.prog = &prog;
	v_progress_update(&prog, x.have);
	if (size < 0 || x.have < (uint64_t)size)
		err = perform(o, url, &x, label);
	v_progress_finish(&prog);
	if (err)
		goto done;	/* the partial file stays for the next attempt */
	EVP_DigestFinal_ex(x.md, got, NULL);
	if (size >= 0 && x.have != (uint64_t)size) {
		unlink(part);
		err = v_error(V_ERR_CHECKSUM, "%s: got %llu bytes, the listing says %lld",
		    label, (unsigned long long)x.have, (long long)size);
		goto done;
	}
	if (sha256 != NULL && memcmp(got, sha256, 32) != 0) {
		char a[65], b[65];
		v_hex_encode(sha256, 32, a);
		v_hex_encode(got, 32, b);
		unlink(part);
		err = v_error(V_ERR_CHECKSUM, "%s: SHA-256 mismatch: expected %s, got %s "
		    "(the download was removed)", label, a, b);
		goto done;
	}
	if (x.git != NULL) {
		unsigned char g[20];
		EVP_DigestFinal_ex(x.git, g, NULL);
		if (memcmp(g, git_oid, 20) != 0) {
			char a[41], b[41];
			v_hex_encode(git_oid, 20, a);
			v_hex_encode(g, 20, b);
			unlink(part);
			err = v_error(V_ERR_CHECKSUM, "%s: git object id mismatch: expected "
			    "%s, got %s (the download was removed)", label, a, b);
			goto done;
		}
	}
	if (fsync(fd) != 0) {
		err = v_error_errno(V_ERR_IO, "%s: fsync", part);
		goto done;
	}
	if (rename(part, dest) != 0) {
		err = v_error_errno(V_ERR_IO, "rename %s", part);
		goto done;
	}
done:
	if (x.fp != NULL)
		fclose(x.fp);
	EVP_MD_CTX_free(x.md);
	EVP_MD_CTX_free(x.git);
	free(x.buf);
	free(x.link_next);
	free(part);
	return err;
}
