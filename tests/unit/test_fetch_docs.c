/* test_fetch_docs.c: UTF-8 checking, JSON escaping, document splitting
 * (the same documents whatever the chunk sizes), origins for the token
 * rule, and archive kinds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "tap.h"
#include "../../lib/archive_docs.h"
#include "../../lib/fetch_docs.h"
#include "../../lib/http.h"
#include "../../lib/verr.h"

/* A plain reference: decode each sequence by its lead byte. */
static size_t
ref_utf8(const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n; ) {
		unsigned c = s[i], cp, k;
		if (c < 0x80) {
			i++;
			continue;
		}
		if ((c & 0xE0) == 0xC0)
			k = 1, cp = c & 0x1F;
		else if ((c & 0xF0) == 0xE0)
			k = 2, cp = c & 0x0F;
		else if ((c & 0xF8) == 0xF0)
			k = 3, cp = c & 0x07;
		else
			return i;
		if (i + k >= n)
			return i;
		for (unsigned j = 1; j <= k; j++) {
			if ((s[i + j] & 0xC0) != 0x80)
				return i;
			cp = (cp << 6) | (s[i + j] & 0x3F);
		}
		static const unsigned min[4] = { 0, 0x80, 0x800, 0x10000 };
		if (cp < min[k] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return i;
		i += k + 1;
	}
	return n;
}

static int
utf8_ok(const char *s, size_t n)
{
	return docs_utf8_check((const unsigned char *)s, n) == n;
}

/* Run a splitter over text in chunks of `chunk` bytes (0: all at once)
 * and return what it wrote (malloc'ed). */
static char *
split(const char *text, size_t n, int format, size_t chunk, int *err)
{
	FILE *fp = tmpfile();
	struct docs_splitter s;
	size_t len;

	docs_splitter_init(&s, fp, format, "t.txt", "src", "t");
	*err = V_OK;
	for (size_t i = 0; i < n && *err == V_OK; ) {
		size_t k = chunk == 0 || n - i < chunk ? n - i : chunk;
		*err = docs_splitter_feed(&s, text + i, k);
		i += k;
	}
	if (*err == V_OK)
		*err = docs_splitter_end(&s);
	docs_splitter_free(&s);
	len = (size_t)ftell(fp);
	rewind(fp);
	char *out = calloc(1, len + 1);
	if (fread(out, 1, len, fp) != len)
		abort();
	fclose(fp);
	return out;
}

static int
count_lines(const char *s)
{
	int n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

int
main(void)
{
	/* UTF-8. */
	ok(utf8_ok("Ça ira, 日本, 😀", strlen("Ça ira, 日本, 😀")), "valid UTF-8 of 1 to 4 bytes");
	ok(!utf8_ok("\xC0\x80", 2), "overlong NUL refused");
	ok(!utf8_ok("\xE0\x80\xAF", 3), "overlong three-byte form refused");
	ok(!utf8_ok("\xED\xA0\x80", 3), "UTF-16 surrogate refused");
	ok(!utf8_ok("\xF4\x90\x80\x80", 4), "beyond U+10FFFF refused");
	ok(!utf8_ok("abc\xC3", 4), "a sequence cut at the end refused");
	ok(!utf8_ok("\x80", 1), "a lone continuation byte refused");
	ok(!utf8_ok("abcdefgh\xFF", 9), "a bad byte after an ASCII run refused");
	is_int(docs_utf8_check((const unsigned char *)"abcdefghij\xFE", 11), 10,
	    "the offset of the first bad byte");

	/* Escaping round-trips through a JSON parser. */
	const char raw[] = "quote \" backslash \\ tab \t nl \n ctl \x01 del \x7f é";
	char *esc = NULL;
	size_t ecap = 0;
	FILE *fp = tmpfile();
	is_int(docs_write(fp, "id\"1", "s\\", raw, sizeof raw - 1, &esc, &ecap), V_OK,
	    "write a document with every kind of escape");
	rewind(fp);
	char line[512] = "";
	if (fgets(line, sizeof line, fp) == NULL)
		abort();
	json_error_t je;
	json_t *o = json_loads(line, 0, &je);
	ok(o != NULL, "the line is JSON: %s", line);
	is_str(json_string_value(json_object_get(o, "text")), raw, "text round-trips");
	is_str(json_string_value(json_object_get(o, "id")), "id\"1", "id round-trips");
	is_str(json_string_value(json_object_get(o, "source")), "s\\", "source round-trips");
	ok(strstr(line, "\\u0001") != NULL, "a control character is \\u-escaped");
	json_decref(o);
	fclose(fp);
	fp = tmpfile();
	is_int(docs_write(fp, "x", "s", "\xC3(", 2, &esc, &ecap), V_ERR_FORMAT,
	    "invalid UTF-8 text is refused");
	fclose(fp);
	free(esc);

	/* Random strings: the word-at-a-time paths of the checker and the
	 * escaper agree with a byte-at-a-time reference and with jansson. */
	{
		unsigned seed = 12345;
		int agree = 1, round = 1;
		static const unsigned char pool[] = {
			'a', 'Z', ' ', '"', '\\', '\n', '\t', 0x01, 0x1f, 0x7f,
			0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x98, 0x80, 0x80,
			0xbf, 0xc0, 0xed, 0xa0, 0xf4, 0x90, 0xff
		};
		for (int t = 0; t < 20000; t++) {
			unsigned char buf[48];
			size_t n = (size_t)(rand_r(&seed) % 41);
			for (size_t i = 0; i < n; i++)
				buf[i] = (rand_r(&seed) % 3) ? (unsigned char)('a' + rand_r(&seed) % 26)
				    : pool[rand_r(&seed) % sizeof pool];
			size_t fast = docs_utf8_check(buf, n), slow = ref_utf8(buf, n);
			if (fast != slow) {
				agree = 0;
				diag("case %d: checker %zu, reference %zu", t, fast, slow);
				break;
			}
			if (fast != n)
				continue;
			FILE *f = tmpfile();
			char *e = NULL, line[512];
			size_t ec = 0;
			docs_write(f, "i", "s", (const char *)buf, n, &e, &ec);
			free(e);
			rewind(f);
			if (fgets(line, sizeof line, f) == NULL)
				abort();
			fclose(f);
			json_t *j = json_loads(line, JSON_ALLOW_NUL, &je);
			json_t *tx = json_object_get(j, "text");
			if (j == NULL || json_string_length(tx) != n ||
			    memcmp(json_string_value(tx), buf, n) != 0) {
				round = 0;
				diag("case %d does not round-trip: %s", t, line);
				json_decref(j);
				break;
			}
			json_decref(j);
		}
		ok(agree, "the UTF-8 checker agrees with the reference on 20000 random strings");
		ok(round, "and every valid one round-trips through JSON");
	}

	/* Splitting does not depend on where the chunks end. */
	const char text[] =
	    "\xEF\xBB\xBF[A:] Bonjour\r\n[B:] Salut\r\n \t\r\n\n\n[A:] Encore\n"
	    "une ligne<|endoftext|>après la marque\n<|endoftext|>\n\nfin sans retour";
	static const int formats[] = { DOCS_PARA, DOCS_EOT, DOCS_LINE, DOCS_WHOLE };
	static const int docs[] = { 3, 3, 6, 1 };
	for (int f = 0; f < 4; f++) {
		int err;
		char *whole = split(text, sizeof text - 1, formats[f], 0, &err);
		is_int(err, V_OK, "format %d: split", formats[f]);
		is_int(count_lines(whole), docs[f], "format %d: %d documents", formats[f], docs[f]);
		int same = 1;
		for (size_t c = 1; c <= 17; c++) {
			char *part = split(text, sizeof text - 1, formats[f], c, &err);
			same &= err == V_OK && strcmp(part, whole) == 0;
			free(part);
		}
		ok(same, "format %d: chunks of 1 to 17 bytes give the same output", formats[f]);
		if (formats[f] == DOCS_PARA)
			ok(strstr(whole, "\"text\":\"[A:] Bonjour\\n[B:] Salut\"") != NULL &&
			    strstr(whole, "\xEF\xBB\xBF") == NULL,
			    "para: CRLF and the byte order mark are gone, turns are lines");
		if (formats[f] == DOCS_EOT)
			ok(strstr(whole, "\"id\":\"t/1\",\"source\":\"src\",\"text\":\"après la marque\"")
			    != NULL, "eot: a marker inside a line ends a document");
		free(whole);
	}
	int err;
	char *bad = split("ok\nnot \xFF ok\n", 12, DOCS_PARA, 3, &err);
	is_int(err, V_ERR_FORMAT, "invalid UTF-8 in a line is an error");
	ok(strstr(v_errmsg(err), "t.txt:2") != NULL, "naming the file and line: %s",
	    v_errmsg(err));
	free(bad);
	bad = split("{\"text\": 3}\n", 12, DOCS_JSONL, 0, &err);
	is_int(err, V_ERR_FORMAT, "jsonl: a text that is not a string is an error");
	free(bad);
	bad = split("{\"text\":\"a\\u0000b\",\"id\":7}\n", 26, DOCS_JSONL, 0, &err);
	is_int(err, V_OK, "jsonl: an embedded NUL is kept");
	ok(strstr(bad, "\"id\":\"7\"") && strstr(bad, "a\\u0000b"), "and an integer id kept: %s", bad);
	free(bad);

	/* Origins decide where the token may go. */
	char og[256];
	static const char *const cases[][2] = {
		{ "HTTPS://HuggingFace.co/datasets/x", "https://huggingface.co:443" },
		{ "http://127.0.0.1:8080/a?b", "http://127.0.0.1:8080" },
		{ "https://user:pw@h.example/x", "https://h.example:443" },
		{ "http://[::1]:9/x", "http://[::1]:9" },
		{ "http://h.example", "http://h.example:80" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		is_int(http_origin(cases[i][0], og, sizeof og), V_OK, "origin of %s", cases[i][0]);
		is_str(og, cases[i][1], "is %s", cases[i][1]);
	}
	is_int(http_origin("ftp://h/x", og, sizeof og), V_ERR_ARG, "ftp is refused");
	is_int(http_origin("huggingface.co", og, sizeof og), V_ERR_ARG, "no scheme is refused");
	char a[256], b[256];
	http_origin("https://huggingface.co", a, sizeof a);
	http_origin("https://huggingface.co.evil.example/", b, sizeof b);
	ok(strcmp(a, b) != 0, "a look-alike host is another origin");
	http_origin("https://huggingface.co:444/", b, sizeof b);
	ok(strcmp(a, b) != 0, "another port is another origin");

	/* Archive kinds. */
	is_int(archive_kind("a.tar.zst"), ARCHIVE_MULTI, "tar.zst is an archive");
	is_int(archive_kind("a.7z"), ARCHIVE_MULTI, "7z is an archive");
	is_int(archive_kind("a.zip"), ARCHIVE_MULTI, "zip is an archive");
	is_int(archive_kind("a.txt.gz"), ARCHIVE_SINGLE, "txt.gz is one compressed file");
	is_int(archive_kind("a.txt"), ARCHIVE_NONE, "txt is neither");
	char nm[64];
	archive_strip_suffix("notes.jsonl.zst", nm, sizeof nm);
	is_str(nm, "notes.jsonl", "the compression suffix comes off");
	is_int(docs_format_for(nm), DOCS_JSONL, "and the format follows the inner name");
	return done_testing();
}
