/* fetch_docs.c: cutting text into JSON Lines documents. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "fetch_docs.h"
#include "verr.h"
#include "vjson.h"

#define EOT_MARK "<|endoftext|>"

int
docs_format_parse(const char *s)
{
	static const char *const names[] = { "para", "eot", "line", "whole", "jsonl" };

	for (int i = 0; i < 5; i++)
		if (strcmp(s, names[i]) == 0)
			return i;
	return -1;
}

static int
ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

int
docs_format_for(const char *name)
{
	if (ends_with(name, ".jsonl") || ends_with(name, ".ndjson"))
		return DOCS_JSONL;
	return DOCS_PARA;
}

/* The high bit of each byte of an 8-byte word; a word with none is ASCII. */
#define HIGH_BITS 0x8080808080808080ull
#define ONES 0x0101010101010101ull

/* Index of the first byte of w (loaded from memory) whose high bit is
 * set in mask m (m != 0). */
static size_t
first_flagged(uint64_t m)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	return (size_t)__builtin_ctzll(m) / 8;
#else
	return (size_t)__builtin_clzll(m) / 8;
#endif
}

size_t
docs_utf8_check(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		/* Skip ASCII eight bytes at a time, then to the first byte that
		 * is not. */
		while (i + 8 <= n) {
			uint64_t w;
			memcpy(&w, s + i, 8);
			uint64_t m = w & HIGH_BITS;
			if (m != 0) {
				i += first_flagged(m);
				break;
			}
			i += 8;
		}
		if (i >= n)
			break;
		unsigned c = s[i];
		if (c < 0x80) {
			i++;
			continue;
		}
		size_t k;
		unsigned min;
		if (c >= 0xC2 && c <= 0xDF) {
			/* Two bytes, the usual case in French: é, à, ç. */
			if (i + 1 >= n || (s[i + 1] & 0xC0) != 0x80)
				return i;
			i += 2;
			continue;
		} else if (c >= 0xE0 && c <= 0xEF) {
			k = 2;
			min = 0x800;
		} else if (c >= 0xF0 && c <= 0xF4) {
			k = 3;
			min = 0x10000;
		} else {
			return i;
		}
		if (i + k >= n)
			return i;
		unsigned cp = c & (0x3F >> k);
		for (size_t j = 1; j <= k; j++) {
			if ((s[i + j] & 0xC0) != 0x80)
				return i;
			cp = (cp << 6) | (s[i + j] & 0x3F);
		}
		if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return i;
		i += k + 1;
	}
	return n;
}

static int
grow(char **buf, size_t *cap, size_t need)
{
	if (need <= *cap)
		return V_OK;
	size_t n = *cap ? *cap : 4096;
	while (n < need)
		n *= 2;
	char *b = realloc(*buf, n);
	if (b == NULL)
		return v_error(V_ERR_NOMEM, "out of memory (%zu bytes)", n);
	*buf = b;
	*cap = n;
	return V_OK;
}

/* Which bytes JSON strings must escape: control characters, '"', '\\'. */
static const unsigned char needs_escape[256] = {
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	['"'] = 1, ['\\'] = 1
};

/* Append the JSON string form of s[0..n) (quotes included) to *e at *len. */
static int
escape(char **e, size_t *ecap, size_t *len, const char *s, size_t n)
{
	static const char hexd[] = "0123456789abcdef";
	int err = grow(e, ecap, *len + 6 * n + 3);

	if (err)
		return err;
	char *o = *e + *len;
	*o++ = '"';
	size_t i = 0;
	while (i < n) {
		/* Copy the run of bytes that need nothing in one go, testing
		 * eight at a time for a control character, '"' or '\\' (a
		 * byte below 0x20, or one that is zero after an exclusive or). */
		size_t j = i;
		while (j + 8 <= n) {
			uint64_t w, q, b;
			memcpy(&w, s + j, 8);
			q = w ^ (ONES * '"');
			b = w ^ (ONES * '\\');
			if ((((w - ONES * 0x20) & ~w) | ((q - ONES) & ~q) |
			    ((b - ONES) & ~b)) & HIGH_BITS)
				break;
			j += 8;
		}
		while (j < n && !needs_escape[(unsigned char)s[j]])
			j++;
		memcpy(o, s + i, j - i);
		o += j - i;
		if (j == n)
			break;
		unsigned char c = (unsigned char)s[j];
		i = j + 1;
		*o++ = '\\';
		switch (c) {
		case '"': *o++ = '"'; break;
		case '\\': *o++ = '\\'; break;
		case '\n': *o++ = 'n'; break;
		case '\t': *o++ = 't'; break;
		case '\r': *o++ = 'r'; break;
		case '\b': *o++ = 'b'; break;
		case '\f': *o++ = 'f'; break;
		default:
			*o++ = 'u';
			*o++ = '0';
			*o++ = '0';
			*o++ = hexd[c >> 4];
			*o++ = hexd[c & 15];
		}
	}
	*o++ = '"';
	*len = (size_t)(o - *e);
	return V_OK;
}

static int write_unchecked(FILE *out, const char *id, const char *source,
    const char *text, size_t len, char **esc, size_t *ecap);

int
docs_write(FILE *out, const char *id, const char *source, const char *text,
    size_t len, char **esc, size_t *ecap)
{
	if (docs_utf8_check((const unsigned char *)text, len) != len)
		return v_error(V_ERR_FORMAT, "document %s: invalid UTF-8", id);
	return write_unchecked(out, id, source, text, len, esc, ecap);
}

static int
write_unchecked(FILE *out, const char *id, const char *source, const char *text,
    size_t len, char **esc, size_t *ecap)
{
	size_t n = 0;
	int err;

	if ((err = grow(esc, ecap, 64)))
		return err;
	memcpy(*esc, "{\"id\":", 6);
	n = 6;
	if ((err = escape(esc, ecap, &n, id, strlen(id))))
		return err;
	if ((err = grow(esc, ecap, n + 16)))
		return err;
	memcpy(*esc + n, ",\"source\":", 10);
	n += 10;
	if ((err = escape(esc, ecap, &n, source, strlen(source))))
		return err;
	if ((err = grow(esc, ecap, n + 16)))
		return err;
	memcpy(*esc + n, ",\"text\":", 8);
	n += 8;
	if ((err = escape(esc, ecap, &n, text, len)))
		return err;
	if ((err = grow(esc, ecap, n + 2)))
		return err;
	(*esc)[n++] = '}';
	(*esc)[n++] = '\n';
	if (fwrite(*esc, 1, n, out) != n)
		return v_error_errno(V_ERR_IO, "standard output: write error");
	return V_OK;
}

void
docs_splitter_init(struct docs_splitter *s, FILE *out, int format, const char *name,
    const char *source, const char *idprefix)
{
	memset(s, 0, sizeof *s);
	s->out = out;
	s->format = format;
	s->name = name;
	s->source = source;
	s->idprefix = idprefix;
}

void
docs_splitter_free(struct docs_splitter *s)
{
	free(s->line);
	free(s->doc);
	free(s->esc);
	s->line = s->doc = s->esc = NULL;
}

/* s itself when it is valid UTF-8, else a copy in buf with each bad byte
 * replaced by U+FFFD (cut short to fit). */
static const char *
utf8_fix(const char *s, char *buf, size_t len)
{
	size_t n = strlen(s), o = 0;

	if (docs_utf8_check((const unsigned char *)s, n) == n)
		return s;
	while (*s != '\0' && o + 4 < len) {
		size_t rest = strlen(s);
		size_t ok = docs_utf8_check((const unsigned char *)s, rest);
		size_t k = ok < len - o - 4 ? ok : len - o - 4;
		memcpy(buf + o, s, k);
		o += k;
		s += k;
		if (k < ok)
			break;
		if (*s != '\0') {
			memcpy(buf + o, "\xEF\xBF\xBD", 3);
			o += 3;
			s++;
		}
	}
	buf[o] = '\0';
	return buf;
}

static int
emit(struct docs_splitter *s, const char *text, size_t len, const char *id,
    const char *source)
{
	char idbuf[512];

	if (id == NULL) {
		snprintf(idbuf, sizeof idbuf, "%s/%llu", s->idprefix,
		    (unsigned long long)s->n);
		id = idbuf;
	}
	/* Text was checked line by line as it came, and by jansson for JSON
	 * Lines, so it is not checked again here; ids and sources are ours
	 * or came through jansson too. */
	if (source == NULL)
		source = s->source;
	/* Ids and sources come from file names, which are bytes: what is
	 * not UTF-8 in them becomes U+FFFD, so the line stays valid JSON. */
	char idfix[1024], srcfix[1024];
	id = utf8_fix(id, idfix, sizeof idfix);
	source = utf8_fix(source, srcfix, sizeof srcfix);
	int err = write_unchecked(s->out, id, source, text, len, &s->esc, &s->ecap);
	if (err == V_OK)
		s->n++;
	return err;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Emit the gathered document, trimmed for the formats that join raw
 * text; an empty one is dropped. */
static int
flush_doc(struct docs_splitter *s)
{
	const char *t = s->doc;
	size_t n = s->dlen;
	int err = V_OK;

	if (s->have_doc) {
		if (s->format == DOCS_EOT || s->format == DOCS_WHOLE) {
			while (n > 0 && is_space(*t)) {
				t++;
				n--;
			}
			while (n > 0 && is_space(t[n - 1]))
				n--;
		}
		if (n > 0)
			err = emit(s, t, n, NULL, NULL);
	}
	s->dlen = 0;
	s->have_doc = 0;
	return err;
}

static int
doc_append(struct docs_splitter *s, const char *p, size_t n, int sep)
{
	if (!s->have_doc) {
		s->have_doc = 1;
		s->doc_line = s->lineno;
	}
	if (s->dlen + n + 1 > DOCS_MAX_BYTES)
		return v_error(V_ERR_RANGE, "%s:%llu: document longer than %u bytes",
		    s->name, (unsigned long long)s->doc_line, DOCS_MAX_BYTES);
	int err = grow(&s->doc, &s->dcap, s->dlen + n + 1);
	if (err)
		return err;
	if (sep && s->dlen > 0)
		s->doc[s->dlen++] = '\n';
	memcpy(s->doc + s->dlen, p, n);
	s->dlen += n;
	if (!sep)
		s->doc[s->dlen++] = '\n';
	return V_OK;
}

static int
jsonl_line(struct docs_splitter *s, const char *p, size_t n)
{
	json_t *o;
	const char *text, *id = NULL, *src = NULL;
	size_t tlen;
	char idbuf[64];
	int err;

	if ((err = v_json_parse(p, n, s->name, (long)s->lineno, &o)))
		return err;
	if (v_json_str(o, "text", &text, &tlen)) {
		json_decref(o);
		return v_error(V_ERR_FORMAT, "%s:%llu: no string \"text\"", s->name,
		    (unsigned long long)s->lineno);
	}
	json_t *jid = json_object_get(o, "id");
	if (json_is_string(jid)) {
		id = json_string_value(jid);
	} else if (json_is_integer(jid)) {
		snprintf(idbuf, sizeof idbuf, "%lld", (long long)json_integer_value(jid));
		id = idbuf;
	}
	json_t *js = json_object_get(o, "source");
	if (json_is_string(js))
		src = json_string_value(js);
	s->doc_line = s->lineno;
	err = emit(s, text, tlen, id, src);
	json_decref(o);
	return err;
}

/* The first "<|endoftext|>" in p[0..n), or NULL. */
static const char *
find_mark(const char *p, size_t n)
{
	const size_t ml = sizeof EOT_MARK - 1;
	const char *end = p + n;

	while ((size_t)(end - p) >= ml) {
		const char *lt = memchr(p, '<', (size_t)(end - p) - ml + 1);
		if (lt == NULL)
			return NULL;
		if (memcmp(lt, EOT_MARK, ml) == 0)
			return lt;
		p = lt + 1;
	}
	return NULL;
}

/* One complete line, without its end of line. */
static int
do_line(struct docs_splitter *s, const char *p, size_t n)
{
	size_t bad;

	s->lineno++;
	if (n > 0 && p[n - 1] == '\r')
		n--;
	bad = docs_utf8_check((const unsigned char *)p, n);
	if (bad != n)
		return v_error(V_ERR_FORMAT, "%s:%llu: invalid UTF-8 at byte %zu of the "
		    "line", s->name, (unsigned long long)s->lineno, bad + 1);
	int blank = 1;
	for (size_t i = 0; i < n && blank; i++)
		blank = p[i] == ' ' || p[i] == '\t';
	switch (s->format) {
	case DOCS_PARA:
		if (blank)
			return flush_doc(s);
		return doc_append(s, p, n, 1);
	case DOCS_LINE:
		if (blank)
			return V_OK;
		s->doc_line = s->lineno;
		return emit(s, p, n, NULL, NULL);
	case DOCS_JSONL:
		if (blank)
			return V_OK;
		return jsonl_line(s, p, n);
	case DOCS_WHOLE:
		return doc_append(s, p, n, 0);
	default: {	/* DOCS_EOT */
		const size_t ml = sizeof EOT_MARK - 1;
		int err;
		for (;;) {
			const char *m = find_mark(p, n);
			if (m == NULL)
				return doc_append(s, p, n, 0);
			if (m > p && (err = doc_append(s, p, (size_t)(m - p), 0)))
				return err;
			if ((err = flush_doc(s)))
				return err;
			n -= (size_t)(m - p) + ml;
			p = m + ml;
		}
	}
	}
}

static int
feed_raw(struct docs_splitter *s, const char *p, size_t n)
{
	int err;

	while (n > 0) {
		const char *nl = memchr(p, '\n', n);
		size_t k = nl ? (size_t)(nl - p) : n;
		if (nl == NULL || s->llen > 0) {
			if (s->llen + k > DOCS_MAX_BYTES)
				return v_error(V_ERR_RANGE, "%s:%llu: line longer than %u bytes",
				    s->name, (unsigned long long)s->lineno + 1, DOCS_MAX_BYTES);
			if ((err = grow(&s->line, &s->lcap, s->llen + k + 1)))
				return err;
			memcpy(s->line + s->llen, p, k);
			s->llen += k;
			if (nl == NULL)
				return V_OK;
			err = do_line(s, s->line, s->llen);
			s->llen = 0;
		} else {
			err = do_line(s, p, k);
		}
		if (err)
			return err;
		p += k + 1;
		n -= k + 1;
	}
	return V_OK;
}

#define BOM "\xEF\xBB\xBF"

int
docs_splitter_feed(struct docs_splitter *s, const char *p, size_t n)
{
	/* The first three bytes are held back until it is clear whether
	 * they are a byte order mark, however the input is chunked. */
	if (!s->started) {
		int match = 1;
		while (n > 0 && s->nbom < 3 && match) {
			s->bom[s->nbom++] = *p++;
			n--;
			match = memcmp(s->bom, BOM, s->nbom) == 0;
		}
		if (match && s->nbom < 3)
			return V_OK;
		s->started = 1;
		if (!match) {
			int err = feed_raw(s, s->bom, s->nbom);
			if (err)
				return err;
		}
	}
	return feed_raw(s, p, n);
}

int
docs_splitter_end(struct docs_splitter *s)
{
	int err = V_OK;

	if (!s->started) {
		s->started = 1;
		if ((err = feed_raw(s, s->bom, s->nbom)))
			return err;
	}
	if (s->llen > 0) {
		err = do_line(s, s->line, s->llen);
		s->llen = 0;
	}
	if (err == V_OK)
		err = flush_doc(s);
	return err;
}
