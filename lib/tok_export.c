/* tok_export.c: a Hugging Face tokenizer.json for a Vesper tokenizer.
 *
 * The normalizer is a sequence of NFC and Replace steps in the order
 * tok_normalize applies them; the pre-tokenizer is tok_pretok_regex
 * (Split, "Isolated") followed by the byte-to-character mapping of GPT-2's
 * byte-level BPE, without its own regular expression; the model is BPE with
 * the same merges, so that `tokenizers` gives the same ids.  Two things it
 * cannot say: [speakerNNN:] is rewritten only for the 64 speakers that have
 * a token (vtokenize rewrites 001 to 999), and ill-formed UTF-8 cannot reach
 * it (a Python str is always well-formed). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "tok_impl.h"
#include "verr.h"
#include "vio.h"

/* GPT-2's map from bytes to printable characters: the printable bytes of
 * Latin-1 stand for themselves, the others take the code points from 256
 * up, in byte order. */
static void
byte_chars(uint32_t map[256])
{
	uint32_t next = 256;
	for (int b = 0; b < 256; b++) {
		int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) ||
		    (b >= 0xAE && b <= 0xFF);
		map[b] = printable ? (uint32_t)b : next++;
	}
}

static size_t
put_utf8(char *o, uint32_t cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xC0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	o[0] = (char)(0xE0 | (cp >> 12));
	o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
	o[2] = (char)(0x80 | (cp & 0x3F));
	return 3;
}

/* The byte-level spelling of token id in buf (at most 2 bytes per byte). */
static char *
spell(const struct tok *t, const uint32_t map[256], uint32_t id, struct tok_buf *b)
{
	size_t n;
	const unsigned char *p = tok_token_bytes(t, id, &n);

	b->n = 0;
	if (tok_buf_grow(b, 2 * n + 1))
		return NULL;
	for (size_t i = 0; i < n; i++)
		b->n += put_utf8(b->p + b->n, map[p[i]]);
	b->p[b->n] = '\0';
	return b->p;
}

static json_t *
replace(const char *kind, const char *pattern, const char *content)
{
	return json_pack("{s:s, s:{s:s}, s:s}", "type", "Replace",
	    "pattern", kind, pattern, "content", content);
}

#define HSPACE " \\x{A0}\\x{2007}\\x{2009}\\x{200A}\\x{202F}"

static json_t *
normalizer(unsigned steps)
{
	json_t *seq = json_array();

	if (steps & TOK_NORM_NFC)
		json_array_append_new(seq, json_pack("{s:s}", "type", "NFC"));
	if (steps & TOK_NORM_NEWLINES) {
		json_array_append_new(seq, replace("String", "\r\n", "\n"));
		json_array_append_new(seq, replace("Regex",
		    "[\\r\\x{85}\\x{2028}\\x{2029}]", "\n"));
	}
	if (steps & TOK_NORM_CONTROLS)
		json_array_append_new(seq, replace("Regex",
		    "[\\x{00}-\\x{08}\\x{0B}\\x{0C}\\x{0E}-\\x{1F}\\x{7F}-\\x{9F}]", ""));
	if (steps & TOK_NORM_INVISIBLE)
		json_array_append_new(seq, replace("Regex",
		    "[\\x{AD}\\x{200B}-\\x{200D}\\x{2060}\\x{FEFF}]", ""));
	if (steps & TOK_NORM_LIGATURES) {
		static const char *const lig[][2] = {
			{ "\xEF\xAC\x80", "ff" }, { "\xEF\xAC\x81", "fi" },
			{ "\xEF\xAC\x82", "fl" }, { "\xEF\xAC\x83", "ffi" },
			{ "\xEF\xAC\x84", "ffl" }, { "\xEF\xAC\x85", "st" },
			{ "\xEF\xAC\x86", "st" }
		};
		for (size_t i = 0; i < sizeof lig / sizeof lig[0]; i++)
			json_array_append_new(seq, replace("String", lig[i][0], lig[i][1]));
	}
	if (steps & TOK_NORM_APOSTROPHES)
		json_array_append_new(seq, replace("Regex",
		    "[\\x{2018}\\x{2019}\\x{201B}\\x{2BC}\\x{2032}\\x{FF07}]", "'"));
	if (steps & TOK_NORM_SPACES)
		json_array_append_new(seq, replace("Regex",
		    "[\\x{A0}\\x{2007}\\x{2009}\\x{200A}\\x{202F}]", " "));
	if (steps & TOK_NORM_DASHES) {
		json_array_append_new(seq, replace("Regex",
		    "[\\x{2010}\\x{2011}\\x{2212}\\x{FE63}\\x{FF0D}]", "-"));
		json_array_append_new(seq, replace("String", "\xE2\x80\x95",
		    "\xE2\x80\x94"));
		json_array_append_new(seq, replace("String", "\xE2\x80\x92",
		    "\xE2\x80\x93"));
	}
	if (steps & TOK_NORM_QUOTES) {
		json_array_append_new(seq, replace("Regex", "\xC2\xAB[" HSPACE "]*",
		    "\xC2\xAB "));
		json_array_append_new(seq, replace("Regex", "[" HSPACE "]*\xC2\xBB",
		    " \xC2\xBB"));
	}
	if (steps & TOK_NORM_SPEAKERS) {
		for (int n = 1; n <= TOK_SPEAKERS; n++) {
			char from[32], to[32];
			snprintf(from, sizeof from, "[speaker%03d:]", n);
			snprintf(to, sizeof to, "[Intervenant %d:]", n);
			json_array_append_new(seq, replace("String", from, to));
		}
	}
	if (json_array_size(seq) == 0) {
		json_decref(seq);
		return json_null();
	}
	return json_pack("{s:s, s:o}", "type", "Sequence", "normalizers", seq);
}

int
tok_export_hf(const struct tok *t, const char *path)
{
	uint32_t map[256];
	struct tok_buf b = { 0 }, b2 = { 0 };
	json_t *root = NULL, *added, *vocab, *merges;
	int err = V_OK;

	byte_chars(map);
	added = json_array();
	vocab = json_object();
	merges = json_array();
	if (!added || !vocab || !merges) {
		err = v_error(V_ERR_NOMEM, "out of memory for tokenizer.json");
		goto out;
	}
	for (uint32_t id = 0; id < TOK_N_SPECIAL; id++) {
		const char *name = tok_special_name(id);
		json_array_append_new(added, json_pack(
		    "{s:i, s:s, s:b, s:b, s:b, s:b, s:b}", "id", (json_int_t)id,
		    "content", name, "single_word", 0, "lstrip", 0, "rstrip", 0,
		    "normalized", id >= TOK_PII, "special", 1));
		json_object_set_new(vocab, name, json_integer(id));
	}
	for (uint32_t id = TOK_BYTE_0; id < tok_vocab_size(t); id++) {
		const char *s = spell(t, map, id, &b);
		if (s == NULL) {
			err = v_error(V_ERR_NOMEM, "out of memory");
			goto out;
		}
		json_object_set_new(vocab, s, json_integer(id));
	}
	for (uint32_t m = 0; m < t->nmerges; m++) {
		const char *l = spell(t, map, t->merges[m][0], &b);
		const char *r = spell(t, map, t->merges[m][1], &b2);
		if (!l || !r) {
			err = v_error(V_ERR_NOMEM, "out of memory");
			goto out;
		}
		json_array_append_new(merges, json_pack("[s, s]", l, r));
	}
	root = json_pack("{s:s, s:n, s:n, s:o, s:o, s:{s:s, s:[{s:s, s:{s:s}, s:s, s:b},"
	    " {s:s, s:b, s:b, s:b}]}, s:n, s:{s:s, s:b, s:b, s:b},"
	    " s:{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:b, s:o, s:o}}",
	    "version", "1.0", "truncation", "padding",
	    "added_tokens", added,
	    "normalizer", normalizer(tok_norm_steps(t)),
	    "pre_tokenizer", "type", "Sequence", "pretokenizers",
	    "type", "Split", "pattern", "Regex", tok_pretok_regex,
	    "behavior", "Isolated", "invert", 0,
	    "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 0,
	    "use_regex", 0,
	    "post_processor",
	    "decoder", "type", "ByteLevel", "add_prefix_space", 0,
	    "trim_offsets", 0, "use_regex", 0,
	    "model", "type", "BPE", "dropout", "unk_token",
	    "continuing_subword_prefix", "end_of_word_suffix",
	    "fuse_unk", 0, "byte_fallback", 0, "ignore_merges", 0,
	    "vocab", vocab, "merges", merges);
	added = vocab = merges = NULL;	/* owned by root, or freed by json_pack */
	if (root == NULL) {
		err = v_error(V_ERR_NOMEM, "cannot build tokenizer.json");
		goto out;
	}
	struct v_atomic af;
	if ((err = v_atomic_open(&af, path)))
		goto out;
	if (json_dumpf(root, af.fp, JSON_PRESERVE_ORDER | JSON_INDENT(1)) != 0 ||
	    fputc('\n', af.fp) == EOF) {
		err = v_error_errno(V_ERR_IO, "%s: write error", path);
		v_atomic_abort(&af);
		goto out;
	}
	if (af.path == NULL) {
		if (fflush(af.fp) != 0)
			err = v_error_errno(V_ERR_IO, "%s: write error", path);
	} else if ((err = v_atomic_commit(&af))) {
		v_atomic_abort(&af);
	}
out:
	json_decref(root);
	json_decref(added);
	json_decref(vocab);
	json_decref(merges);
	tok_buf_free(&b);
	tok_buf_free(&b2);
	return err;
}
