/* archive_docs.h: the members of an archive (tar, tar.gz, tar.zst,
 * tar.xz, tar.bz2, zip, 7z) or of a single compressed file (.gz, .zst,
 * .xz, .bz2), read through libarchive and handed over in chunks.
 * Only regular files are visited; member names are used as labels and
 * never as paths to write to, so a hostile name ("../x") is harmless. */
#ifndef VESPER_ARCHIVE_DOCS_H
#define VESPER_ARCHIVE_DOCS_H

#include <stddef.h>

enum { ARCHIVE_NONE, ARCHIVE_MULTI, ARCHIVE_SINGLE };

/* What the file name says: ARCHIVE_MULTI for an archive of files,
 * ARCHIVE_SINGLE for one compressed file, ARCHIVE_NONE otherwise. */
int archive_kind(const char *name);
/* The name without its compression suffix (into out), for ARCHIVE_SINGLE. */
void archive_strip_suffix(const char *name, char *out, size_t len);

struct archive_visit {
	/* A member is starting: 1 to read it, 0 to skip it, or an error. */
	int (*begin)(void *arg, const char *member);
	int (*data)(void *arg, const char *p, size_t n);
	int (*end)(void *arg);
};

/* Visit the members of path (kind from archive_kind).  Errors name the
 * archive and the member. */
int archive_walk(const char *path, int kind, const struct archive_visit *v, void *arg);

#endif
