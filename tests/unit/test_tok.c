/* test_tok.c: normalisation, pre-tokenisation, the tokenizer file, BPE
 * against a plain reference, and decode(encode(x)) == normalize(x) over
 * random bytes. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../lib/tok.h"
#include "../../lib/tok_impl.h"
#include "../../lib/verr.h"
#include "tap.h"

static char tmpdir[] = "/tmp/test_tok.XXXXXX";

static char *
norm(unsigned steps, const char *s)
{
	static struct tok_buf b;
	b.n = 0;
	if (tok_normalize(steps, s, strlen(s), &b, NULL) || tok_buf_put(&b, "", 1))
		return NULL;
	return b.p;
}

static void
test_normalize(void)
{
	const unsigned all = TOK_NORM_ALL;

	is_str(norm(all, "l\xE2\x80\x99homme"), "l'homme", "’ becomes '");
	is_str(norm(all & ~TOK_NORM_APOSTROPHES, "l\xE2\x80\x99homme"),
	    "l\xE2\x80\x99homme", "apostrophes off: ’ stays");
	is_str(norm(all, "Quoi\xE2\x80\xAF?"), "Quoi ?", "U+202F before ? becomes a space");
	is_str(norm(all, "a\xC2\xA0" "b"), "a b", "U+00A0 becomes a space");
	is_str(norm(all & ~TOK_NORM_SPACES, "a\xC2\xA0" "b"), "a\xC2\xA0" "b",
	    "spaces off: U+00A0 stays");
	is_str(norm(all, "\xEF\xAC\x81n \xC5\x93uvre \xC3\xA6"), "fin \xC5\x93uvre \xC3\xA6",
	    "ﬁ spelt out, œ and æ kept");
	is_str(norm(all, "\xC2\xABOui\xC2\xBB"), "\xC2\xAB Oui \xC2\xBB",
	    "« » with no space get one");
	is_str(norm(all, "\xC2\xAB\xC2\xA0\xE2\x80\xAF Oui  \xC2\xBB"),
	    "\xC2\xAB Oui \xC2\xBB", "runs of spaces inside « » become one");
	is_str(norm(all & ~TOK_NORM_QUOTES, "\xC2\xABOui\xC2\xBB"), "\xC2\xABOui\xC2\xBB",
	    "quotes off: spacing kept");
	is_str(norm(all, "[speaker001:] oui [speaker012:]"),
	    "[Intervenant 1:] oui [Intervenant 12:]", "Claire speaker tags rewritten");
	is_str(norm(all, "[speaker000:] [speaker1:]"), "[speaker000:] [speaker1:]",
	    "speaker000 and short numbers left alone");
	is_str(norm(all & ~TOK_NORM_SPEAKERS, "[speaker001:]"), "[speaker001:]",
	    "speakers off: tag kept");
	is_str(norm(all, "a\r\nb\rc\xE2\x80\xA8" "d"), "a\nb\nc\nd", "line ends become LF");
	is_str(norm(all, "a\x01\x7F\xC2\x9F" "b\tc"), "ab\tc", "controls removed, TAB kept");
	is_str(norm(all, "\xEF\xBB\xBFz\xE2\x80\x8B" "e\xC2\xAD" "ro"), "zero",
	    "BOM, zero-width space, soft hyphen removed");
	is_str(norm(all, "e\xCC\x81t\xC3\xA9"), "\xC3\xA9t\xC3\xA9", "NFC composes e + U+0301");
	is_str(norm(all & ~TOK_NORM_NFC, "e\xCC\x81"), "e\xCC\x81", "nfc off: left decomposed");
	is_str(norm(all, "\xE2\x86\x92\xCC\xB8 \xE2\x86\x92"), "\xE2\x86\x9B \xE2\x86\x92",
	    "NFC composes U+2192 + U+0338, leaves U+2192 alone");
	is_str(norm(all, "\xE2\x84\xAB\xE1\x84\x80\xE1\x85\xA1"), "\xC3\x85\xEA\xB0\x80",
	    "NFC: Angstrom sign to \xC3\x85, Hangul jamo composed");
	is_str(norm(all, "\xE2\x80\x95 dit-il \xE2\x80\x90 \xE2\x88\x92" "3"),
	    "\xE2\x80\x94 dit-il - -3", "bar to em dash, hyphen and minus to -");
	is_str(norm(all, "\xE2\x80\x94 Oui \xE2\x80\x93 non"), "\xE2\x80\x94 Oui \xE2\x80\x93 non",
	    "dialogue dashes kept");

	struct tok_buf b = { 0 };
	struct tok_stats st = { 0 };
	b.n = 0;
	st.invalid = 0;
	const char bad2[] = "a\xC3(z\xF0\x9F\x98";
	tok_normalize(all, bad2, sizeof bad2 - 1, &b, &st);
	ok(b.n == 9 && memcmp(b.p, "a\xEF\xBF\xBD(z\xEF\xBF\xBD", 9) == 0,
	    "each maximal ill-formed subsequence becomes one U+FFFD");
	is_int(st.invalid, 2, "ill-formed sequences counted");
	b.n = 0;
	tok_normalize(all & ~TOK_NORM_UTF8, bad2, sizeof bad2 - 1, &b, NULL);
	ok(b.n == sizeof bad2 - 1 && memcmp(b.p, bad2, b.n) == 0,
	    "utf8 off: ill-formed bytes kept");
	tok_buf_free(&b);

	unsigned bits;
	ok(tok_norm_parse("nfc,quotes", &bits) == V_OK &&
	    bits == (TOK_NORM_NFC | TOK_NORM_QUOTES), "step list parses");
	ok(tok_norm_parse("nfc,bogus", &bits) == V_ERR_ARG, "unknown step refused");
	char fb[256];
	ok(tok_norm_parse(tok_norm_format(TOK_NORM_ALL, fb, sizeof fb), &bits) == V_OK &&
	    bits == TOK_NORM_ALL, "format and parse agree");
}

struct pieces {
	char s[16][32];
	int n;
};

static int
collect(void *arg, const char *p, size_t len)
{
	struct pieces *ps = arg;
	if (ps->n < 16 && len < 32) {
		memcpy(ps->s[ps->n], p, len);
		ps->s[ps->n][len] = '\0';
	}
	ps->n++;
	return 0;
}

static void
check_split(const char *text, const char *const *want, const char *desc)
{
	struct pieces ps = { .n = 0 };
	int n = 0, good = 1;
	tok_pretokenize(text, strlen(text), collect, &ps);
	while (want[n])
		n++;
	if (ps.n != n)
		good = 0;
	for (int i = 0; good && i < n; i++)
		if (strcmp(ps.s[i], want[i]) != 0)
			good = 0;
	if (!ok(good, "pre-tokens: %s", desc)) {
		for (int i = 0; i < ps.n && i < 16; i++)
			diag("got [%s]", ps.s[i]);
	}
}

static void
test_pretok(void)
{
	check_split("l'homme", (const char *[]){ "l'", "homme", NULL }, "elision l'");
	check_split("Jusqu\xE2\x80\x99\xC3\xA0 demain",
	    (const char *[]){ "Jusqu\xE2\x80\x99", "\xC3\xA0", " demain", NULL },
	    "jusqu’ with U+2019, capitalised");
	check_split("qu'il lorsqu'on", (const char *[]){ "qu'", "il", " lorsqu'", "on", NULL },
	    "qu' and lorsqu'");
	check_split("aujourd'hui prud'homme",
	    (const char *[]){ "aujourd'hui", " prud'homme", NULL }, "inner apostrophes kept");
	check_split("presque presqu'\xC3\xAEle",
	    (const char *[]){ "presque", " presqu'", "\xC3\xAEle", NULL }, "presque vs presqu'");
	check_split("1234567", (const char *[]){ "123", "456", "7", NULL }, "digits by three");
	check_split("a  b", (const char *[]){ "a", " ", " b", NULL }, "space run leaves one");
	check_split("a\n\n  b", (const char *[]){ "a", "\n\n", " ", " b", NULL },
	    "line breaks then spaces");
	check_split("Oui ?!\n", (const char *[]){ "Oui", " ?!\n", NULL }, "punctuation and LF");
	check_split("x  ", (const char *[]){ "x", "  ", NULL }, "trailing spaces");
	check_split("\xC2\xAB Oui \xC2\xBB",
	    (const char *[]){ "\xC2\xAB", " Oui", " \xC2\xBB", NULL }, "guillemets");
}

static int
write_file(const char *path, const char *s, size_t n)
{
	FILE *fp = fopen(path, "wb");
	if (fp == NULL)
		return -1;
	fwrite(s, 1, n, fp);
	return fclose(fp);
}

static void
test_bad_files(void)
{
	static const struct {
		const char *text, *want, *desc;
	} cases[] = {
		{ "", "not a Vesper tokenizer", "empty file" },
		{ "\x7F" "ELF\x02\x01\x01", "not a Vesper tokenizer", "binary" },
		{ "vesper-tokenizer 2\n", "not a Vesper tokenizer", "other version" },
		{ "vesper-tokenizer 1\nvocab 326\n", ":2: expected 'normalize", "missing normalize" },
		{ "vesper-tokenizer 1\nnormalize nfc,zap\nvocab 326\nmerges 0\nend\n",
		    ":2: unknown normalisation step", "bad step" },
		{ "vesper-tokenizer 1\nnormalize all\nvocab 327\nmerges 1\n102 102\n",
		    "ends after 1 of 1|expected 'end'", "no end line" },
		{ "vesper-tokenizer 1\nnormalize all\nvocab 327\nmerges 2\n102 102\n",
		    "ends after 1 of 2|cannot fit", "truncated merges" },
		{ "vesper-tokenizer 1\nnormalize all\nvocab 327\nmerges 1\n102 400\nend\n",
		    "only ids 70 to 325", "id from the future" },
		{ "vesper-tokenizer 1\nnormalize all\nvocab 327\nmerges 1\n5 102\nend\n",
		    "only ids 70 to 325", "special id in a merge" },
		{ "vesper-tokenizer 1\nnormalize all\nvocab 328\nmerges 2\n102 102\n102 102\nend\n",
		    "repeats the pair", "pair merged twice" },
		{ "vesper-tokenizer 1\nnormalize all\nvocab 400\nmerges 1\n102 102\nend\n",
		    "its merges make 327", "vocab disagrees" },
		{ "vesper-tokenizer 1\nnormalize all\nvocab 327\nmerges 1\n102 0102\nend\n",
		    ":5: expected a merge", "leading zero" },
		{ "vesper-tokenizer 1\nnormalize all\nvocab 327\nmerges 1\n102 102\nend\njunk\n",
		    "expected 'end' as the last line", "text after end" },
		{ "vesper-tokenizer 1\nnormalize all\nvocab 327\nmerges 99999999\n",
		    "merges N' with N|cannot fit", "absurd merge count" },
	};
	char path[64];
	snprintf(path, sizeof path, "%s/bad.tok", tmpdir);
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct tok *t = NULL;
		write_file(path, cases[i].text, strlen(cases[i].text));
		int err = tok_load(path, &t);
		const char *msg = v_errmsg(err);
		int found = 0;
		char want[128];
		snprintf(want, sizeof want, "%s", cases[i].want);
		for (char *alt = strtok(want, "|"); alt; alt = strtok(NULL, "|"))
			if (strstr(msg, alt))
				found = 1;
		if (!ok(err < 0 && t == NULL && found && strstr(msg, "bad.tok"),
		    "refused: %s", cases[i].desc))
			diag("err %d: %s", err, msg);
		tok_free(t);
	}
	struct tok *t = NULL;
	const char *good = "vesper-tokenizer 1\nnormalize none\nvocab 327\nmerges 1\n102 102\nend\n";
	write_file(path, good, strlen(good));
	ok(tok_load(path, &t) == V_OK && tok_vocab_size(t) == 327 &&
	    tok_norm_steps(t) == 0, "a minimal file loads");
	/* The digest sha256sum(1) gives for those bytes. */
	is_str(t ? tok_sha256_hex(t) : "",
	    "0b0213e96e083f34beeecf434b6c39d9b27c2609575e382ce6d7653faebd425a",
	    "SHA-256 of the file as sha256sum computes it");
	tok_free(t);
}

/* A tokenizer trained on the dialogue fixture and some generated French,
 * with the given steps. */
static struct tok *
trained(unsigned steps, const char *name)
{
	const char *src = getenv("VESPER_SRC");
	char fix[512], path[128];
	struct tok_trainer *tr;
	struct tok *t = NULL;
	FILE *fp;

	snprintf(fix, sizeof fix, "%s/tests/tok/dialogue.txt", src ? src : ".");
	snprintf(path, sizeof path, "%s/%s", tmpdir, name);
	if (tok_trainer_new(steps, &tr))
		return NULL;
	tok_trainer_threads(tr, 2);
	if ((fp = fopen(fix, "rb")) != NULL) {
		char buf[8192];
		size_t n = fread(buf, 1, sizeof buf, fp);
		fclose(fp);
		tok_trainer_add(tr, buf, n);
	}
	static const char *const words[] = {
		"le ", "la ", "l'", "de ", "d'", "qu'", "un ", "une ", "maison ", "chat ",
		"aujourd'hui ", "été ", "à ", "où ", "œuvre ", "12 ", "2024 ", ", ", ". ",
		"« ", " »", "[Intervenant 1:] ", "[PII] ", "\n", "—", "ça ", "très "
	};
	unsigned rng = 12345;
	for (int d = 0; d < 400; d++) {
		char doc[600];
		size_t n = 0;
		for (int w = 0; w < 40; w++) {
			rng = rng * 1103515245u + 12345u;
			const char *s = words[(rng >> 16) % (sizeof words / sizeof words[0])];
			size_t l = strlen(s);
			if (n + l >= sizeof doc)
				break;
			memcpy(doc + n, s, l);
			n += l;
		}
		tok_trainer_add(tr, doc, n);
	}
	int err = tok_trainer_finish(tr, 1000, 2, path);
	tok_trainer_free(tr);
	if (err || tok_load(path, &t)) {
		diag("training failed: %s", v_errmsg(err));
		return NULL;
	}
	return t;
}

/* Random bytes biased towards what French text and hostile input hold. */
static size_t
random_text(unsigned *rng, char *out, size_t cap)
{
	static const char *const bits[] = {
		"a", "e", "s", " ", " ", "  ", "\n", "\r\n", "\r", "\t", "'", "\xE2\x80\x99",
		"\xC3\xA9", "\xC3\xA0", "\xC5\x93", "\xC2\xA0", "\xE2\x80\xAF", "\xC2\xAB",
		"\xC2\xBB", "\xEF\xAC\x81", "\xCC\x81", "\xE2\x80\x8B", "\xEF\xBB\xBF",
		"\x00", "\x01", "\x7F", "\xC2\x85", "\x80", "\xC3", "\xED\xA0\x80", "\xF5",
		"\xE2\x80", "\xF0\x9F\x98\x80", "\xF0\x9F", "[speaker001:]", "[speaker07",
		"[PII]", "[NOISE]", "[Intervenant 3:]", "[Intervenant 65:]", "<bos>", "<eos>",
		"l'", "qu'", "jusqu'", "aujourd'hui", "123", "4567", "!?", "...", "\xE2\x80\x95",
		"\xE2\x80\x90", "-", "\xE2\x80\x94", "\xE2\x80\xA8", "\xC2\xAD", "\xE1\x84\x80",
		"\xE1\x85\xA1", "\xEA\xB0\x80", "\xEF\xBF\xBD", "\xEF\xBF\xBE"
	};
	size_t n = 0;
	*rng = *rng * 1664525u + 1013904223u;
	size_t want = (*rng >> 8) % 200;
	for (size_t k = 0; k < want; k++) {
		*rng = *rng * 1664525u + 1013904223u;
		unsigned r = *rng >> 8;
		char raw[1];
		const char *s;
		size_t l;
		if (r % 7 == 0) {	/* any byte at all */
			raw[0] = (char)(r >> 8);
			s = raw;
			l = 1;
		} else {
			s = bits[(r >> 4) % (sizeof bits / sizeof bits[0])];
			l = s[0] ? strlen(s) : 1;
		}
		if (n + l > cap)
			break;
		memcpy(out + n, s, l);
		n += l;
	}
	return n;
}

static void
test_roundtrip(struct tok *t, const char *desc)
{
	struct tok_enc *e;
	struct tok_ids ids = { 0 };
	struct tok_buf a = { 0 }, b = { 0 };
	unsigned rng = 42;
	int bad = 0, fake = 0;
	char text[1200];

	if (!ok(t != NULL && tok_enc_new(t, &e) == V_OK, "%s: encoder", desc))
		return;
	for (int i = 0; i < 20000 && bad < 3; i++) {
		size_t n = random_text(&rng, text, sizeof text);
		ids.n = a.n = b.n = 0;
		if (tok_encode(e, text, n, &ids, NULL) ||
		    tok_normalize(tok_norm_steps(t), text, n, &a, NULL) ||
		    tok_decode(t, ids.v, ids.n, &b) ||
		    a.n != b.n || (a.n && memcmp(a.p, b.p, a.n) != 0)) {
			bad++;
			diag("case %d differs (%zu bytes normalised, %zu decoded)", i, a.n, b.n);
		}
		for (size_t k = 0; k < ids.n; k++)
			if (ids.v[k] <= TOK_EOS || ids.v[k] >= tok_vocab_size(t))
				fake++;
	}
	ok(bad == 0, "%s: decode(encode(x)) == normalize(x) for 20000 random inputs", desc);
	ok(fake == 0, "%s: no <pad>, <bos>, <eos> or out-of-range id from text", desc);
	tok_ids_free(&ids);
	tok_buf_free(&a);
	tok_buf_free(&b);
	tok_enc_free(e);
}

/* Plain BPE: merge the lowest-ranked adjacent pair, leftmost first. */
static size_t
reference_bpe(const struct tok *t, const unsigned char *p, size_t n, uint32_t *out)
{
	for (size_t i = 0; i < n; i++)
		out[i] = TOK_BYTE_0 + p[i];
	for (;;) {
		uint32_t best = UINT32_MAX;
		size_t at = 0;
		for (size_t i = 0; i + 1 < n; i++)
			for (uint32_t m = 0; m < t->nmerges && m < best; m++)
				if (t->merges[m][0] == out[i] && t->merges[m][1] == out[i + 1]) {
					best = m;
					at = i;
				}
		if (best == UINT32_MAX)
			return n;
		out[at] = t->merge_result[best];
		memmove(out + at + 1, out + at + 2, (n - at - 2) * sizeof *out);
		n--;
	}
}

static void
test_bpe_reference(struct tok *t)
{
	struct tok_enc *e;
	struct tok_ids ids = { 0 };
	static uint32_t want[4096];
	static unsigned char word[4096];
	unsigned rng = 7;
	int bad = 0;

	if (t == NULL || tok_enc_new(t, &e))
		return;
	/* Words of letters only are one pre-token, so that the whole word goes
	 * through BPE; lengths cover both the short and the heap path. */
	static const size_t lens[] = { 2, 3, 5, 8, 13, 40, 47, 48, 49, 64, 65, 300, 2000 };
	for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
		for (int rep = 0; rep < 4; rep++) {
			size_t n = lens[k];
			for (size_t i = 0; i < n; i++) {
				rng = rng * 1664525u + 1013904223u;
				word[i] = "aeeilmnorsstuu"[(rng >> 12) % 14];
			}
			ids.n = 0;
			size_t wn = reference_bpe(t, word, n, want);
			if (tok_encode_normalized(e, (char *)word, n, &ids) || ids.n != wn ||
			    memcmp(ids.v, want, wn * sizeof *want) != 0)
				bad++;
		}
	}
	ok(bad == 0, "BPE of words of 2 to 2000 letters matches the plain algorithm");
	tok_ids_free(&ids);
	tok_enc_free(e);
}

static void
test_specials(struct tok *t)
{
	struct tok_enc *e;
	struct tok_ids ids = { 0 };
	const char *s = "[speaker003:] Bonjour [PII] [Intervenant 65:] <bos>";

	if (t == NULL || tok_enc_new(t, &e))
		return;
	tok_encode(e, s, strlen(s), &ids, NULL);
	ok(ids.n > 3 && ids.v[0] == (uint32_t)tok_speaker_id(3), "speaker tag is one token (id %d)",
	    tok_speaker_id(3));
	int pii = 0, spk65 = 0, bos = 0;
	for (size_t i = 0; i < ids.n; i++) {
		pii += ids.v[i] == TOK_PII;
		spk65 += ids.v[i] >= TOK_SPEAKER_1 && ids.v[i] < TOK_N_SPECIAL && i > 0;
		bos += ids.v[i] == TOK_BOS;
	}
	ok(pii == 1, "[PII] is one token");
	ok(spk65 == 0, "[Intervenant 65:] has no token and stays text");
	ok(bos == 0, "<bos> in text is text");
	is_str(tok_special_name(TOK_SPEAKER_1 + 63), "[Intervenant 64:]", "names of speakers");
	is_int(tok_speaker_id(65), -1, "speaker 65 has no id");
	size_t len;
	ok(tok_token_bytes(t, TOK_BOS, &len) != NULL && len == 0, "<bos> decodes to nothing");
	ok(tok_token_bytes(t, tok_vocab_size(t), &len) == NULL, "no bytes beyond the vocabulary");
	uint32_t beyond = tok_vocab_size(t);
	struct tok_buf b = { 0 };
	ok(tok_decode(t, &beyond, 1, &b) == V_ERR_RANGE, "decode refuses an id beyond the vocabulary");
	tok_buf_free(&b);
	tok_ids_free(&ids);
	tok_enc_free(e);
}

/* Is s[0..n) well-formed UTF-8? */
static int
valid_utf8(const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t l = tok_utf8_next(s + i, n - i, &cp);
		if (cp == UINT32_MAX)
			return 0;
		i += l;
	}
	return 1;
}

/* What vgen does: decode one token at a time, print what is whole, hold
 * back an unfinished character.  Every piece printed must be well-formed
 * (the normalised text is) and the pieces must add up to the text. */
static void
test_streaming(struct tok *t)
{
	struct tok_enc *e;
	struct tok_ids ids = { 0 };
	struct tok_buf whole = { 0 }, pend = { 0 }, shown = { 0 };
	unsigned rng = 99;
	int bad = 0, split = 0;
	char text[1200];

	if (t == NULL || tok_enc_new(t, &e))
		return;
	for (int i = 0; i < 3000; i++) {
		size_t n = random_text(&rng, text, sizeof text);
		ids.n = whole.n = pend.n = shown.n = 0;
		tok_encode(e, text, n, &ids, NULL);
		tok_decode(t, ids.v, ids.n, &whole);
		for (size_t k = 0; k < ids.n; k++) {
			tok_decode(t, ids.v + k, 1, &pend);
			size_t ok_n = tok_utf8_complete((unsigned char *)pend.p, pend.n);
			if (ok_n < pend.n)
				split++;
			if (!valid_utf8((unsigned char *)pend.p, ok_n))
				bad++;
			tok_buf_put(&shown, pend.p, ok_n);
			memmove(pend.p, pend.p + ok_n, pend.n - ok_n);
			pend.n -= ok_n;
		}
		tok_buf_put(&shown, pend.p, pend.n);
		if (shown.n != whole.n || (whole.n && memcmp(shown.p, whole.p, whole.n)))
			bad++;
	}
	ok(bad == 0, "token-by-token decoding prints well-formed pieces that make the text");
	ok(split > 0, "some characters were split across tokens (%d)", split);
	tok_ids_free(&ids);
	tok_buf_free(&whole);
	tok_buf_free(&pend);
	tok_buf_free(&shown);
	tok_enc_free(e);
}

static void
test_utf8_complete(void)
{
	is_int(tok_utf8_complete((const unsigned char *)"ab", 2), 2, "ASCII is complete");
	is_int(tok_utf8_complete((const unsigned char *)"a\xC3", 2), 1, "hold back a lone lead byte");
	is_int(tok_utf8_complete((const unsigned char *)"\xE2\x80", 2), 0, "hold back 2 of 3 bytes");
	is_int(tok_utf8_complete((const unsigned char *)"\xE2\x80\x99", 3), 3, "3 of 3 is complete");
	is_int(tok_utf8_complete((const unsigned char *)"\xF0\x9F\x98", 3), 0, "3 of 4 held back");
	is_int(tok_utf8_complete((const unsigned char *)"a\xFF", 2), 2, "an impossible byte is not held");
	is_int(tok_utf8_complete((const unsigned char *)"\xED\xA0", 2), 2,
	    "a surrogate prefix cannot complete, not held");
}

int
main(void)
{
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	test_normalize();
	test_pretok();
	test_bad_files();
	test_utf8_complete();
	struct tok *t = trained(TOK_NORM_ALL, "all.tok");
	ok(t != NULL && tok_vocab_size(t) > 500, "trained a tokenizer (%u tokens)",
	    t ? tok_vocab_size(t) : 0);
	test_specials(t);
	test_bpe_reference(t);
	test_streaming(t);
	test_roundtrip(t, "all steps");
	tok_free(t);
	t = trained(TOK_NORM_ALL & ~TOK_NORM_UTF8, "raw.tok");
	test_roundtrip(t, "ill-formed bytes kept");
	tok_free(t);
	t = trained(0, "none.tok");
	test_roundtrip(t, "no normalisation");
	tok_free(t);

	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
	if (system(cmd) != 0)
		diag("could not remove %s", tmpdir);
	return done_testing();
}
