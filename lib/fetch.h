/* fetch.h: corpora from the Hugging Face hub, URLs and local files, as
 * JSON Lines documents.
 *
 * A hub revision that is not a commit id (a branch, a tag) is first turned
 * into one with GET <endpoint>/api/datasets/<repo>/revision/<revision>
 * (the "sha" of the answer), remembered in the cache for --offline; the
 * files are then listed at that commit with the tree API
 *   GET <endpoint>/api/datasets/<repo>/tree/<commit>?recursive=true
 * (paginated: the next page is the Link header's rel="next"), and each
 * file is fetched from <endpoint>/datasets/<repo>/resolve/<revision>/<path>
 * into the cache, checked against the size and the LFS SHA-256 (or, for a
 * file outside LFS, the git blob id) that the listing gives before it gets
 * its final name:
 *   <cache>/hub/datasets--<owner>-<name>/refs/<revision>   (the commit id)
 *   <cache>/hub/datasets--<owner>-<name>/<commit>/<path>
 *   <cache>/hub/datasets--<owner>-<name>/<commit>/.vesper-tree.json
 * The saved listing is what --offline works from.  A URL is cached under
 *   <cache>/url/<first 16 hex digits of the URL's SHA-256>/<file name>. */
#ifndef VESPER_FETCH_H
#define VESPER_FETCH_H

#include <stdint.h>
#include <stdio.h>

#include "http.h"

#define FETCH_ENDPOINT "https://huggingface.co"
#define FETCH_CLAIRE_REPO "OpenLLM-France/Claire-Dialogue-French-0.1"
#define FETCH_TINYSTORIES_REPO "roneneldan/TinyStories"
/* The revision used when none is given.  A branch name follows the
 * dataset (vfetch reports the commit it found); pass a commit id with
 * --revision to pin the exact bytes. */
#define FETCH_DEFAULT_REVISION "main"

struct fetch_opts {
	const char *cache;	/* cache directory */
	const char *endpoint;	/* hub base URL */
	const char *revision;	/* NULL: FETCH_DEFAULT_REVISION */
	const char *subsets;	/* claire: comma-separated subset names, or NULL */
	const char *split;	/* "train", "test" or "all" (claire, tinystories) */
	int offline;
	const char *source;	/* local files: the "source" field, or NULL */
	int format;		/* DOCS_* or -1: by the file name */
	const char *sha256;	/* URL sources: expected hex SHA-256, or NULL */
	struct http_opts http;
};

struct fetch_stats {
	uint64_t docs, files, skipped;
	char commit[41];	/* the commit a hub source came from, or "" */
};

/* Write the documents of source ("claire", "tinystories", a URL, a file,
 * a directory or an archive) to out. */
int fetch_run(const struct fetch_opts *o, const char *source, FILE *out,
    struct fetch_stats *st);

/* Claire: print its subsets with the sizes of their files to out. */
int fetch_list(const struct fetch_opts *o, FILE *out);

/* Is r a revision name vfetch accepts (a branch, tag or commit id made of
 * letters, digits, '-', '_' and '.', usable as one directory name)? */
int fetch_revision_ok(const char *r);

/* The default cache: $XDG_CACHE_HOME/vesper, else $HOME/.cache/vesper
 * (malloc'ed; NULL when neither variable is set). */
char *fetch_default_cache(void);

#endif
