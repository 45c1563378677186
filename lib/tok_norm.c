/* tok_norm.c: French-aware text normalisation.
 *
 * Three passes, each skipped when it has nothing to do (the common case for
 * clean text is one pass that copies runs of plain ASCII):
 *   1. ill-formed UTF-8 -> U+FFFD, then NFC where a character could change;
 *   2. one mapping per character (newlines, controls, invisible characters,
 *      ligatures, apostrophes, spaces, dashes);
 *   3. the rewrites that look at neighbours: the spacing inside « », then
 *      the Claire speaker tags.
 * The order is the order of the Hugging Face normalizer sequence that
 * tok_export_hf writes, so that both give the same text. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tok_impl.h"
#include "verr.h"

static const char *const norm_names[] = {
	"utf8", "nfc", "newlines", "controls", "invisible", "ligatures",
	"apostrophes", "spaces", "dashes", "quotes", "speakers"
};
#define N_NORM (sizeof norm_names / sizeof norm_names[0])

const char *
tok_norm_name(unsigned bit)
{
	for (size_t i = 0; i < N_NORM; i++)
		if (bit == 1u << i)
			return norm_names[i];
	return NULL;
}

int
tok_norm_parse(const char *list, unsigned *bits)
{
	unsigned b = 0;
	const char *p = list;

	if (strcmp(list, "all") == 0) {
		*bits = TOK_NORM_ALL;
		return V_OK;
	}
	if (strcmp(list, "none") == 0) {
		*bits = 0;
		return V_OK;
	}
	for (;;) {
		const char *e = strchr(p, ',');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		size_t i;
		for (i = 0; i < N_NORM; i++)
			if (strlen(norm_names[i]) == n && memcmp(norm_names[i], p, n) == 0)
				break;
		if (i == N_NORM)
			return v_error(V_ERR_ARG, "unknown normalisation step '%.*s' "
			    "(steps: utf8 nfc newlines controls invisible ligatures "
			    "apostrophes spaces dashes quotes speakers)", (int)n, p);
		b |= 1u << i;
		if (e == NULL)
			break;
		p = e + 1;
	}
	*bits = b;
	return V_OK;
}

const char *
tok_norm_format(unsigned bits, char *buf, size_t len)
{
	size_t at = 0;

	if (len == 0)
		return buf;
	buf[0] = '\0';
	if ((bits & TOK_NORM_ALL) == 0) {
		snprintf(buf, len, "none");
		return buf;
	}
	for (size_t i = 0; i < N_NORM; i++) {
		if (!(bits & (1u << i)))
			continue;
		int w = snprintf(buf + at, len - at, "%s%s", at ? "," : "",
		    norm_names[i]);
		if (w < 0 || (size_t)w >= len - at)
			break;
		at += (size_t)w;
	}
	return buf;
}

int
tok_buf_grow(struct tok_buf *b, size_t extra)
{
	if (b->cap - b->n >= extra)
		return V_OK;
	size_t ncap = b->cap ? b->cap : 256;
	while (ncap - b->n < extra) {
		if (ncap > SIZE_MAX / 2)
			return v_error(V_ERR_NOMEM, "text buffer too large");
		ncap *= 2;
	}
	char *p = realloc(b->p, ncap);
	if (p == NULL)
		return v_error(V_ERR_NOMEM, "out of memory for %zu bytes of text", ncap);
	b->p = p;
	b->cap = ncap;
	return V_OK;
}

int
tok_buf_put(struct tok_buf *b, const void *p, size_t n)
{
	int err = tok_buf_grow(b, n);
	if (err)
		return err;
	if (n)
		memcpy(b->p + b->n, p, n);
	b->n += n;
	return V_OK;
}

void
tok_buf_free(struct tok_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->n = b->cap = 0;
}

size_t
tok_utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
	unsigned c = s[0];
	unsigned lo = 0x80, hi = 0xBF;
	size_t need;
	uint32_t v;

	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xC2 && c <= 0xDF) {
		need = 1;
		v = c & 0x1F;
	} else if (c >= 0xE0 && c <= 0xEF) {
		need = 2;
		v = c & 0x0F;
		if (c == 0xE0)
			lo = 0xA0;
		else if (c == 0xED)
			hi = 0x9F;	/* no surrogates */
	} else if (c >= 0xF0 && c <= 0xF4) {
		need = 3;
		v = c & 0x07;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F;	/* nothing beyond U+10FFFF */
	} else {
		*cp = UINT32_MAX;
		return 1;
	}
	for (size_t i = 1; i <= need; i++) {
		if (i >= n || s[i] < lo || s[i] > hi) {
			*cp = UINT32_MAX;
			return i;
		}
		v = (v << 6) | (s[i] & 0x3F);
		lo = 0x80;
		hi = 0xBF;
	}
	*cp = v;
	return need + 1;
}

static size_t
utf8_put(unsigned char *o, uint32_t cp)
{
	if (cp < 0x80) {
		o[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (unsigned char)(0xC0 | (cp >> 6));
		o[1] = (unsigned char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (unsigned char)(0xE0 | (cp >> 12));
		o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
		o[2] = (unsigned char)(0x80 | (cp & 0x3F));
		return 3;
	}
	o[0] = (unsigned char)(0xF0 | (cp >> 18));
	o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
	o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
	o[3] = (unsigned char)(0x80 | (cp & 0x3F));
	return 4;
}

/* Could NFC change text around cp?  Below U+0300 nothing decomposes and
 * nothing combines with what precedes it; above, a character is left alone
 * by NFC when it is a starter that is not the second of a composition pair
 * and has no canonical decomposition.  (A character that can only be the
 * first of a pair, such as U+2192 or Cyrillic letters, changes only when a
 * second follows, and that second is caught here.)  utf8proc marks the
 * second characters of pairs with bit 15 of comb_index; test_tok checks a
 * composition so that a change of that convention would show.  Anything
 * else sends the document through utf8proc. */
static int
nfc_stable(uint32_t cp)
{
	if (cp < 0x300)
		return 1;
	if ((cp >= 0x1100 && cp <= 0x11FF) || (cp >= 0xA960 && cp <= 0xA97F) ||
	    (cp >= 0xD7B0 && cp <= 0xD7FF) || (cp >= 0xAC00 && cp <= 0xD7A3))
		return 0;	/* Hangul composes by rule, not by table */
	const utf8proc_property_t *p = utf8proc_get_property((utf8proc_int32_t)cp);
	if (p->combining_class != 0 || p->comp_exclusion ||
	    (p->comb_index != UINT16_MAX && (p->comb_index & 0x8000)))
		return 0;
	if (p->decomp_seqindex != UINT16_MAX && p->decomp_type == 0)
		return 0;
	return 1;
}

/* NFC of the well-formed run s[0..n), appended to out. */
static int
nfc_run(const unsigned char *s, size_t n, struct tok_buf *out)
{
	utf8proc_uint8_t *dst = NULL;
	utf8proc_ssize_t r;

	if (n == 0)
		return V_OK;
	r = utf8proc_map(s, (utf8proc_ssize_t)n, &dst,
	    UTF8PROC_COMPOSE | UTF8PROC_STABLE);
	if (r < 0)
		return v_error(r == UTF8PROC_ERROR_NOMEM ? V_ERR_NOMEM : V_ERR_FORMAT,
		    "NFC: %s", utf8proc_errmsg(r));
	int err = tok_buf_put(out, dst, (size_t)r);
	free(dst);
	return err;
}

/* Pass 1.  Returns 1 with *tmp filled when the text changed, 0 when the
 * caller can use it as it is. */
static int
pass_unicode(unsigned steps, const unsigned char *s, size_t n,
    struct tok_buf *tmp, struct tok_stats *st, int *err)
{
	int invalid = 0, unstable = 0;
	size_t i = 0;

	*err = V_OK;
	while (i < n) {
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		uint32_t cp;
		size_t l = tok_utf8_next(s + i, n - i, &cp);
		if (cp == UINT32_MAX) {
			invalid = 1;
			if (st && (steps & TOK_NORM_UTF8))
				st->invalid++;
		} else if ((steps & TOK_NORM_NFC) && !nfc_stable(cp)) {
			unstable = 1;
		}
		i += l;
	}
	if (!(invalid && (steps & TOK_NORM_UTF8)) && !unstable)
		return 0;

	/* Replace what is ill-formed, and send each well-formed run that holds
	 * an unstable character through NFC. */
	static const unsigned char fffd[3] = { 0xEF, 0xBF, 0xBD };
	struct tok_buf fixed = { 0 };
	const unsigned char *src = s;
	size_t len = n;
	if (invalid && (steps & TOK_NORM_UTF8)) {
		for (i = 0; i < n;) {
			uint32_t cp;
			size_t l = tok_utf8_next(s + i, n - i, &cp);
			*err = cp == UINT32_MAX ? tok_buf_put(&fixed, fffd, 3)
			    : tok_buf_put(&fixed, s + i, l);
			if (*err) {
				tok_buf_free(&fixed);
				return 0;
			}
			i += l;
		}
		src = (const unsigned char *)fixed.p;
		len = fixed.n;
	}
	if (!unstable) {
		*tmp = fixed;
		return 1;
	}
	size_t run = 0;
	for (i = 0; i < len;) {
		uint32_t cp;
		size_t l = tok_utf8_next(src + i, len - i, &cp);
		if (cp == UINT32_MAX) {
			*err = nfc_run(src + run, i - run, tmp);
			if (!*err)
				*err = tok_buf_put(tmp, src + i, l);
			run = i + l;
		}
		if (*err)
			break;
		i += l;
	}
	if (!*err)
		*err = nfc_run(src + run, len - run, tmp);
	tok_buf_free(&fixed);
	return 1;
}

/* ASCII bytes that pass 2 copies as they are. */
static inline int
ascii_plain(unsigned c)
{
	return (c >= 0x20 && c < 0x7F) || c == '\t' || c == '\n';
}

/* Pass 2: the per-character mappings.  Sets *quotes when « or » was
 * written and *brackets when "[speaker" may need rewriting.  With check
 * set it is the first pass over raw text: it stops with PASS_RETRY at the
 * first character that pass 1 would change, so that clean text is read
 * once.  The output is never longer than the input. */
#define PASS_RETRY 1
static int
pass_map(unsigned steps, const unsigned char *s, size_t n, struct tok_buf *out,
    struct tok_stats *st, int *quotes, int *brackets, int check)
{
	int err = tok_buf_grow(out, n + 16);
	size_t i = 0;

	if (err)
		return err;
	unsigned char *o = (unsigned char *)out->p + out->n;
	while (i < n) {
		/* A run of plain ASCII. */
		size_t j = i;
		while (j < n && ascii_plain(s[j])) {
			if (s[j] == '[')
				*brackets = 1;
			j++;
		}
		if (j > i) {
			memcpy(o, s + i, j - i);
			o += j - i;
			i = j;
			if (i == n)
				break;
		}
		uint32_t cp;
		size_t l = tok_utf8_next(s + i, n - i, &cp);
		if (cp == UINT32_MAX) {
			if (check && (steps & TOK_NORM_UTF8))
				return PASS_RETRY;
			/* The utf8 step is off: the bytes stay. */
			if (st)
				st->invalid++;
			memcpy(o, s + i, l);
			o += l;
			i += l;
			continue;
		}
		if (check && (steps & TOK_NORM_NFC) && !nfc_stable(cp))
			return PASS_RETRY;
		if ((steps & TOK_NORM_NEWLINES) &&
		    (cp == '\r' || cp == 0x85 || cp == 0x2028 || cp == 0x2029)) {
			if (cp == '\r' && i + 1 < n && s[i + 1] == '\n')
				l = 2;
			*o++ = '\n';
		} else if ((steps & TOK_NORM_CONTROLS) && cp != '\r' &&
		    (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F))) {
			if (st)
				st->removed++;
		} else if ((steps & TOK_NORM_INVISIBLE) && (cp == 0xAD ||
		    (cp >= 0x200B && cp <= 0x200D) || cp == 0x2060 || cp == 0xFEFF)) {
			if (st)
				st->removed++;
		} else if ((steps & TOK_NORM_LIGATURES) && cp >= 0xFB00 && cp <= 0xFB06) {
			static const char *const lig[] = {
				"ff", "fi", "fl", "ffi", "ffl", "st", "st"
			};
			size_t k = strlen(lig[cp - 0xFB00]);
			memcpy(o, lig[cp - 0xFB00], k);
			o += k;
		} else if ((steps & TOK_NORM_APOSTROPHES) && (cp == 0x2018 ||
		    cp == 0x2019 || cp == 0x201B || cp == 0x02BC || cp == 0x2032 ||
		    cp == 0xFF07)) {
			*o++ = '\'';
		} else if ((steps & TOK_NORM_SPACES) && (cp == 0xA0 || cp == 0x2007 ||
		    cp == 0x2009 || cp == 0x200A || cp == 0x202F)) {
			*o++ = ' ';
		} else if ((steps & TOK_NORM_DASHES) && (cp == 0x2010 || cp == 0x2011 ||
		    cp == 0x2212 || cp == 0xFE63 || cp == 0xFF0D)) {
			*o++ = '-';
		} else if ((steps & TOK_NORM_DASHES) && cp == 0x2015) {
			o += utf8_put(o, 0x2014);
		} else if ((steps & TOK_NORM_DASHES) && cp == 0x2012) {
			o += utf8_put(o, 0x2013);
		} else {
			if (cp == 0xAB || cp == 0xBB)
				*quotes = 1;
			memcpy(o, s + i, l);
			o += l;
		}
		i += l;
	}
	out->n = (size_t)(o - (unsigned char *)out->p);
	return V_OK;
}

/* The horizontal spaces the quote rule folds: length at p, or 0. */
static size_t
hspace_at(const unsigned char *p, size_t n)
{
	if (n >= 1 && p[0] == ' ')
		return 1;
	if (n >= 2 && p[0] == 0xC2 && p[1] == 0xA0)
		return 2;
	if (n >= 3 && p[0] == 0xE2 && p[1] == 0x80 &&
	    (p[2] == 0x87 || p[2] == 0x89 || p[2] == 0x8A || p[2] == 0xAF))
		return 3;
	return 0;
}

/* The length of the horizontal space that ends p[0..n), or 0. */
static size_t
hspace_before(const unsigned char *p, size_t n)
{
	if (n >= 1 && p[n - 1] == ' ')
		return 1;
	if (n >= 2 && p[n - 2] == 0xC2 && p[n - 1] == 0xA0)
		return 2;
	if (n >= 3 && p[n - 3] == 0xE2 && p[n - 2] == 0x80 && (p[n - 1] == 0x87 ||
	    p[n - 1] == 0x89 || p[n - 1] == 0x8A || p[n - 1] == 0xAF))
		return 3;
	return 0;
}

/* The next "\xC2<second>" in s[0..n), or n. */
static size_t
find2(const unsigned char *s, size_t n, unsigned char second)
{
	const unsigned char *p = s, *end = s + n;
	while ((p = memchr(p, 0xC2, (size_t)(end - p))) != NULL) {
		if (p + 1 < end && p[1] == second)
			return (size_t)(p - s);
		p++;
	}
	return n;
}

/* Pass 3a: «H* -> "« ", then H*» -> " »" (H: hspace_at), over
 * b->p[from..b->n).  The run before » is the one that ends what has been
 * copied so far, as the regular expression's leftmost match would take. */
static int
pass_quotes(struct tok_buf *b, size_t from, struct tok_buf *tmp)
{
	int err;

	for (int rule = 0; rule < 2; rule++) {
		const unsigned char *s = (const unsigned char *)b->p + from;
		size_t n = b->n - from, i = 0;
		tmp->n = 0;
		while (i < n) {
			size_t at = i + find2(s + i, n - i, rule == 0 ? 0xAB : 0xBB);
			if ((err = tok_buf_put(tmp, s + i, at - i)))
				return err;
			i = at;
			if (i == n)
				break;
			i += 2;
			if (rule == 0) {
				size_t h;
				while (i < n && (h = hspace_at(s + i, n - i)))
					i += h;
				err = tok_buf_put(tmp, "\xC2\xAB ", 3);
			} else {
				size_t h;
				while ((h = hspace_before((unsigned char *)tmp->p, tmp->n)))
					tmp->n -= h;
				err = tok_buf_put(tmp, " \xC2\xBB", 3);
			}
			if (err)
				return err;
		}
		b->n = from;
		if ((err = tok_buf_put(b, tmp->p, tmp->n)))
			return err;
	}
	return V_OK;
}

/* Pass 3b: [speakerNNN:] (three digits, not 000) -> [Intervenant N:], the
 * form the Claire corpus's authors use. */
static int
pass_speakers(struct tok_buf *b, size_t from, struct tok_buf *tmp)
{
	const char *s = b->p + from;
	size_t n = b->n - from, i = 0;
	int err;

	tmp->n = 0;
	while (i < n) {
		const char *q = memchr(s + i, '[', n - i);
		size_t at = q ? (size_t)(q - s) : n;
		if ((err = tok_buf_put(tmp, s + i, at - i)))
			return err;
		i = at;
		if (i == n)
			break;
		if (n - i >= 13 && memcmp(s + i, "[speaker", 8) == 0 &&
		    s[i + 8] >= '0' && s[i + 8] <= '9' &&
		    s[i + 9] >= '0' && s[i + 9] <= '9' &&
		    s[i + 10] >= '0' && s[i + 10] <= '9' &&
		    s[i + 11] == ':' && s[i + 12] == ']') {
			int v = (s[i + 8] - '0') * 100 + (s[i + 9] - '0') * 10 +
			    (s[i + 10] - '0');
			if (v > 0) {
				char t[32];
				int w = snprintf(t, sizeof t, "[Intervenant %d:]", v);
				if ((err = tok_buf_put(tmp, t, (size_t)w)))
					return err;
				i += 13;
				continue;
			}
		}
		if ((err = tok_buf_put(tmp, "[", 1)))
			return err;
		i++;
	}
	b->n = from;
	return tok_buf_put(b, tmp->p, tmp->n);
}

int
tok_normalize(unsigned steps, const char *text, size_t len,
    struct tok_buf *out, struct tok_stats *st)
{
	struct tok_buf tmp = { 0 };
	struct tok_stats local = { 0 };
	const unsigned char *s = (const unsigned char *)text;
	size_t from = out->n;
	int err, quotes = 0, brackets = 0;

	if (st)
		st->bytes_in += len;
	err = pass_map(steps, s, len, out, &local, &quotes, &brackets, 1);
	if (err == PASS_RETRY) {
		/* Ill-formed or not in NFC: pass 1 first, and start again. */
		out->n = from;
		quotes = brackets = 0;
		memset(&local, 0, sizeof local);
		if (pass_unicode(steps, s, len, &tmp, &local, &err)) {
			s = (const unsigned char *)tmp.p;
			len = tmp.n;
		}
		if (!err)
			err = pass_map(steps, s, len, out, &local, &quotes, &brackets, 0);
	}
	if (st) {
		st->invalid += local.invalid;
		st->removed += local.removed;
	}
	if (!err && (steps & TOK_NORM_QUOTES) && quotes)
		err = pass_quotes(out, from, &tmp);
	if (!err && (steps & TOK_NORM_SPEAKERS) && brackets)
		err = pass_speakers(out, from, &tmp);
	tok_buf_free(&tmp);
	return err;
}
