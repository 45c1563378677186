/* fetch_docs.h: text to JSON Lines documents (vesper-docs(5)).
 *
 * A splitter takes a file's bytes in chunks of any size and writes one
 * JSON object a document, {"id":…,"source":…,"text":…}, to a stream.
 * How the text is cut into documents is the format:
 *   para   blank-line-separated paragraphs (the Claire dialogues: one
 *          dialogue a paragraph, one speech turn a line);
 *   eot    documents separated by "<|endoftext|>" (TinyStories);
 *   line   one document a non-blank line;
 *   whole  the whole file is one document;
 *   jsonl  one JSON object a line with a string "text" (and optionally
 *          "id" and "source", kept when they are strings).
 * Lines may end in LF or CRLF; a UTF-8 byte order mark at the start is
 * dropped.  Text must be valid UTF-8: anything else is an error naming the
 * file and the line, as is a document beyond DOCS_MAX_BYTES. */
#ifndef VESPER_FETCH_DOCS_H
#define VESPER_FETCH_DOCS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define DOCS_MAX_BYTES (256u << 20)

enum docs_format { DOCS_PARA, DOCS_EOT, DOCS_LINE, DOCS_WHOLE, DOCS_JSONL };

/* "para", "eot", ... -> DOCS_*; -1 when unknown. */
int docs_format_parse(const char *s);
/* The format a file name suggests: jsonl for *.jsonl and *.ndjson, else
 * para. */
int docs_format_for(const char *name);

struct docs_splitter {
	FILE *out;
	int format;
	const char *name;	/* the file, for errors */
	const char *source;	/* "source" of each document */
	const char *idprefix;	/* ids are "<idprefix>/<n>" */
	uint64_t lineno;	/* lines seen */
	uint64_t doc_line;	/* line where the current document began */
	uint64_t n;		/* documents written by this splitter */
	char *line;		/* the incomplete line carried between chunks */
	size_t llen, lcap;
	char *doc;		/* the document being gathered */
	size_t dlen, dcap;
	int have_doc;		/* doc holds a started document */
	int started;		/* past the byte order mark, or sure there is none */
	char bom[3];		/* the first bytes, held back until then */
	int nbom;
	char *esc;		/* escaping buffer */
	size_t ecap;
};

void docs_splitter_init(struct docs_splitter *s, FILE *out, int format,
    const char *name, const char *source, const char *idprefix);
int docs_splitter_feed(struct docs_splitter *s, const char *data, size_t n);
/* End of the file: the last line and document. */
int docs_splitter_end(struct docs_splitter *s);
void docs_splitter_free(struct docs_splitter *s);

/* Write one document as a JSON line; text must be valid UTF-8 (checked). */
int docs_write(FILE *out, const char *id, const char *source, const char *text,
    size_t len, char **esc, size_t *ecap);

/* Is buf[0..n) valid UTF-8 (no overlong forms, no surrogates)?  Returns
 * the offset of the first bad byte, or n. */
size_t docs_utf8_check(const unsigned char *buf, size_t n);

#endif
