/* archive_docs.c: walking archives with libarchive. */
#include <stdio.h>
#include <string.h>

#include <archive.h>
#include <archive_entry.h>

#include "archive_docs.h"
#include "verr.h"

static int
ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

static const char *const multi[] = {
	".tar", ".tar.gz", ".tgz", ".tar.zst", ".tzst", ".tar.xz", ".txz",
	".tar.bz2", ".tbz2", ".zip", ".7z", NULL
};
static const char *const single[] = { ".gz", ".zst", ".xz", ".bz2", NULL };

int
archive_kind(const char *name)
{
	for (int i = 0; multi[i] != NULL; i++)
		if (ends_with(name, multi[i]))
			return ARCHIVE_MULTI;
	for (int i = 0; single[i] != NULL; i++)
		if (ends_with(name, single[i]))
			return ARCHIVE_SINGLE;
	return ARCHIVE_NONE;
}

void
archive_strip_suffix(const char *name, char *out, size_t len)
{
	snprintf(out, len, "%s", name);
	for (int i = 0; single[i] != NULL; i++)
		if (ends_with(out, single[i])) {
			out[strlen(out) - strlen(single[i])] = '\0';
			return;
		}
}

int
archive_walk(const char *path, int kind, const struct archive_visit *v, void *arg)
{
	struct archive *a = archive_read_new();
	struct archive_entry *e;
	char member[1024];
	int err = V_OK, r;

	if (a == NULL)
		return v_error(V_ERR_NOMEM, "out of memory");
	archive_read_support_filter_all(a);
	if (kind == ARCHIVE_SINGLE) {
		archive_read_support_format_raw(a);
	} else {
		archive_read_support_format_tar(a);
		archive_read_support_format_gnutar(a);
		archive_read_support_format_zip(a);
		archive_read_support_format_7zip(a);
	}
	if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK) {
		err = v_error(V_ERR_FORMAT, "%s: %s", path, archive_error_string(a));
		goto done;
	}
	while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK ||
	    r == ARCHIVE_WARN) {
		if (kind == ARCHIVE_SINGLE) {
			const char *base = strrchr(path, '/');
			archive_strip_suffix(base ? base + 1 : path, member, sizeof member);
		} else {
			if (archive_entry_filetype(e) != AE_IFREG)
				continue;
			const char *name = archive_entry_pathname_utf8(e);
			if (name == NULL)
				name = archive_entry_pathname(e);
			snprintf(member, sizeof member, "%s", name ? name : "?");
		}
		int want = v->begin(arg, member);
		if (want < 0) {
			err = want;
			goto done;
		}
		if (want == 0)
			continue;
		for (;;) {
			const void *buf;
			size_t n;
			la_int64_t off;
			r = archive_read_data_block(a, &buf, &n, &off);
			if (r == ARCHIVE_EOF)
				break;
			if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
				err = v_error(V_ERR_FORMAT, "%s: %s: %s", path, member,
				    archive_error_string(a));
				goto done;
			}
			if (n > 0 && (err = v->data(arg, buf, n)))
				goto done;
		}
		if ((err = v->end(arg)))
			goto done;
	}
	if (r != ARCHIVE_EOF)
		err = v_error(V_ERR_FORMAT, "%s: %s", path, archive_error_string(a));
done:
	archive_read_free(a);
	return err;
}
