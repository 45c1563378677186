/* tok_pretok.c: French-aware pre-tokenisation and the special tokens.
 *
 * The split is the regular expression tok_pretok_regex, applied the way a
 * backtracking engine (Oniguruma, as in Hugging Face tokenizers) applies it:
 * at each position the first alternative that matches wins.  Writing it out
 * by hand keeps it at memory speed; the export test checks that both agree.
 *
 * Alternatives, in order (S: the Unicode White_Space set; A: ' or U+2019):
 *   1. " ?" then an elided word and its apostrophe: c d j l m n s t qu
 *      jusqu lorsqu puisqu quoiqu presqu (either case), then A;
 *   2. " ?" letters or marks, with inner apostrophes: aujourd'hui, prud'homme;
 *   3. " ?" one to three numeric characters;
 *   4. " ?" a run of anything else but S, then any CR and LF;
 *   5. S* ending at the last line break of a run of S;
 *   6. a run of S but its last character when more text follows;
 *   7. a run of S. */
#include <string.h>
#include <utf8proc.h>

#include "tok_impl.h"
#include "verr.h"

#define WS "\\t\\n\\x{0B}\\x{0C}\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}" \
	"\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
#define APOS "['\\x{2019}]"
const char tok_pretok_regex[] =
	" ?(?:[cdjlmnstCDJLMNST]|[qQ][uU]|[jJ][uU][sS][qQ][uU]"
	"|[lL][oO][rR][sS][qQ][uU]|[pP][uU][iI][sS][qQ][uU]"
	"|[qQ][uU][oO][iI][qQ][uU]|[pP][rR][eE][sS][qQ][uU])" APOS
	"| ?[\\p{L}\\p{M}]+(?:" APOS "[\\p{L}\\p{M}]+)*"
	"| ?\\p{N}{1,3}"
	"| ?[^" WS "\\p{L}\\p{M}\\p{N}]+[\\r\\n]*"
	"|[" WS "]*[\\r\\n]+"
	"|[" WS "]+(?![^" WS "])"
	"|[" WS "]+";

static int
is_space(uint32_t cp)
{
	return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 ||
	    cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
	    cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
	    cp == 0x3000;
}

int
tok_class(uint32_t cp)
{
	if (is_space(cp))
		return TOK_C_SPACE;
	switch (utf8proc_category((utf8proc_int32_t)cp)) {
	case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL:
	case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_LM:
	case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN:
	case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
		return TOK_C_LETTER;
	case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL:
	case UTF8PROC_CATEGORY_NO:
		return TOK_C_NUMBER;
	default:
		return TOK_C_OTHER;
	}
}

static const unsigned char ascii_class[128] = {
	['\t'] = TOK_C_SPACE, ['\n'] = TOK_C_SPACE, [0x0B] = TOK_C_SPACE,
	[0x0C] = TOK_C_SPACE, ['\r'] = TOK_C_SPACE, [' '] = TOK_C_SPACE,
	['0'] = TOK_C_NUMBER, ['1'] = TOK_C_NUMBER, ['2'] = TOK_C_NUMBER,
	['3'] = TOK_C_NUMBER, ['4'] = TOK_C_NUMBER, ['5'] = TOK_C_NUMBER,
	['6'] = TOK_C_NUMBER, ['7'] = TOK_C_NUMBER, ['8'] = TOK_C_NUMBER,
	['9'] = TOK_C_NUMBER,
#define L2(a, b) [a] = TOK_C_LETTER, [b] = TOK_C_LETTER
	L2('a', 'A'), L2('b', 'B'), L2('c', 'C'), L2('d', 'D'), L2('e', 'E'),
	L2('f', 'F'), L2('g', 'G'), L2('h', 'H'), L2('i', 'I'), L2('j', 'J'),
	L2('k', 'K'), L2('l', 'L'), L2('m', 'M'), L2('n', 'N'), L2('o', 'O'),
	L2('p', 'P'), L2('q', 'Q'), L2('r', 'R'), L2('s', 'S'), L2('t', 'T'),
	L2('u', 'U'), L2('v', 'V'), L2('w', 'W'), L2('x', 'X'), L2('y', 'Y'),
	L2('z', 'Z'),
#undef L2
};

/* The class of the character at s[0..n) and its length in *l; an
 * ill-formed byte is a character of class other. */
static inline int
class_at(const unsigned char *s, size_t n, size_t *l)
{
	if (s[0] < 0x80) {
		*l = 1;
		return ascii_class[s[0]];
	}
	uint32_t cp;
	*l = tok_utf8_next(s, n, &cp);
	return cp == UINT32_MAX ? TOK_C_OTHER : tok_class(cp);
}

static inline size_t
apostrophe_at(const unsigned char *s, size_t n)
{
	if (n >= 1 && s[0] == '\'')
		return 1;
	if (n >= 3 && s[0] == 0xE2 && s[1] == 0x80 && s[2] == 0x99)
		return 3;
	return 0;
}

/* Does s[0..n) start with the lowercase ASCII word w (k letters) in either
 * case, followed by an apostrophe?  The length matched, or 0. */
static inline size_t
elided(const unsigned char *s, size_t n, const char *w, size_t k)
{
	if (n <= k)
		return 0;
	for (size_t i = 0; i < k; i++)
		if ((s[i] | 0x20) != (unsigned char)w[i])
			return 0;
	size_t a = apostrophe_at(s + k, n - k);
	return a ? k + a : 0;
}

/* Alternative 1 at s: the length of an elided word with its apostrophe. */
static size_t
elision_at(const unsigned char *s, size_t n)
{
	size_t m;

	if (n < 2)
		return 0;
	/* Only 'C' and 'c' give 'c' here, and so for each letter. */
	switch (s[0] | 0x20) {
	case 'c': case 'd': case 'm': case 'n': case 's': case 't':
		m = apostrophe_at(s + 1, n - 1);
		return m ? 1 + m : 0;
	case 'j':
		if ((m = elided(s, n, "j", 1)))
			return m;
		return elided(s, n, "jusqu", 5);
	case 'l':
		if ((m = elided(s, n, "l", 1)))
			return m;
		return elided(s, n, "lorsqu", 6);
	case 'q':
		if ((m = elided(s, n, "qu", 2)))
			return m;
		return elided(s, n, "quoiqu", 6);
	case 'p':
		if ((m = elided(s, n, "puisqu", 6)))
			return m;
		return elided(s, n, "presqu", 6);
	default:
		return 0;
	}
}

int
tok_pretokenize(const char *text, size_t n,
    int (*fn)(void *arg, const char *p, size_t len), void *arg)
{
	const unsigned char *s = (const unsigned char *)text;
	size_t i = 0;
	int err;

	while (i < n) {
		size_t k = i + (s[i] == ' '), e = 0, l;
		if (k < n && (e = elision_at(s + k, n - k)) != 0) {
			e += k;
		} else if (k < n) {
			int c = class_at(s + k, n - k, &l);
			e = k + l;
			if (c == TOK_C_LETTER) {
				for (;;) {
					while (e < n && class_at(s + e, n - e, &l) == TOK_C_LETTER)
						e += l;
					size_t a = apostrophe_at(s + e, n - e);
					if (a == 0 || e + a >= n ||
					    class_at(s + e + a, n - e - a, &l) != TOK_C_LETTER)
						break;
					e += a;
				}
			} else if (c == TOK_C_NUMBER) {
				for (int d = 1; d < 3 && e < n &&
				    class_at(s + e, n - e, &l) == TOK_C_NUMBER; d++)
					e += l;
			} else if (c == TOK_C_OTHER) {
				while (e < n && class_at(s + e, n - e, &l) == TOK_C_OTHER)
					e += l;
				while (e < n && (s[e] == '\r' || s[e] == '\n'))
					e++;
			} else {
				e = 0;
			}
		}
		if (e == 0) {
			/* Alternatives 5 to 7, on the run of white space at i. */
			size_t end = i, last_nl = 0, last_start = i;
			int have_nl = 0;
			while (end < n && class_at(s + end, n - end, &l) == TOK_C_SPACE) {
				if (s[end] == '\r' || s[end] == '\n') {
					have_nl = 1;
					last_nl = end;
				}
				last_start = end;
				end += l;
			}
			if (have_nl)
				e = last_nl + 1;
			else if (end == n || last_start == i)
				e = end;
			else
				e = last_start;
		}
		if ((err = fn(arg, text + i, e - i)))
			return err;
		i = e;
	}
	return V_OK;
}

#define SPK(n) "[Intervenant " #n ":]"
static const char *const special_names[TOK_N_SPECIAL] = {
	"<pad>", "<bos>", "<eos>", "[PII]", "[NOISE]", "[LAUGHTER]",
	SPK(1), SPK(2), SPK(3), SPK(4), SPK(5), SPK(6), SPK(7), SPK(8),
	SPK(9), SPK(10), SPK(11), SPK(12), SPK(13), SPK(14), SPK(15), SPK(16),
	SPK(17), SPK(18), SPK(19), SPK(20), SPK(21), SPK(22), SPK(23),
	SPK(24), SPK(25), SPK(26), SPK(27), SPK(28), SPK(29), SPK(30),
	SPK(31), SPK(32), SPK(33), SPK(34), SPK(35), SPK(36), SPK(37),
	SPK(38), SPK(39), SPK(40), SPK(41), SPK(42), SPK(43), SPK(44),
	SPK(45), SPK(46), SPK(47), SPK(48), SPK(49), SPK(50), SPK(51),
	SPK(52), SPK(53), SPK(54), SPK(55), SPK(56), SPK(57), SPK(58),
	SPK(59), SPK(60), SPK(61), SPK(62), SPK(63), SPK(64)
};
#undef SPK

const char *
tok_special_name(uint32_t id)
{
	return id < TOK_N_SPECIAL ? special_names[id] : NULL;
}

int
tok_speaker_id(int n)
{
	return n >= 1 && n <= TOK_SPEAKERS ? TOK_SPEAKER_1 + n - 1 : -1;
}

/* The special token starting at s (which holds '['), or -1. */
static int
special_at(const char *s, size_t n, size_t *len)
{
	if (n >= 5 && memcmp(s, "[PII]", 5) == 0) {
		*len = 5;
		return TOK_PII;
	}
	if (n >= 7 && memcmp(s, "[NOISE]", 7) == 0) {
		*len = 7;
		return TOK_NOISE;
	}
	if (n >= 10 && memcmp(s, "[LAUGHTER]", 10) == 0) {
		*len = 10;
		return TOK_LAUGHTER;
	}
	if (n >= 16 && memcmp(s, "[Intervenant ", 13) == 0 &&
	    s[13] >= '1' && s[13] <= '9') {
		int v = s[13] - '0';
		size_t i = 14;
		if (s[i] >= '0' && s[i] <= '9')
			v = v * 10 + (s[i++] - '0');
		if (i + 2 <= n && s[i] == ':' && s[i + 1] == ']' && v <= TOK_SPEAKERS) {
			*len = i + 2;
			return tok_speaker_id(v);
		}
	}
	return -1;
}

int
tok_find_special(const char *text, size_t n, size_t *at, size_t *len)
{
	const char *p = text, *end = text + n;

	while (p < end && (p = memchr(p, '[', (size_t)(end - p))) != NULL) {
		int id = special_at(p, (size_t)(end - p), len);
		if (id >= 0) {
			*at = (size_t)(p - text);
			return id;
		}
		p++;
	}
	return -1;
}
