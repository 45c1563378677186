/* fetch.c: hub datasets, URLs and local files to JSON Lines documents. */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "archive_docs.h"
#include "fetch.h"
#include "fetch_docs.h"
#include "verr.h"
#include "vio.h"
#include "vjson.h"
#include "vhash.h"

#define TREE_FILE ".vesper-tree.json"
#define MAX_PAGES 100000

char *
fetch_default_cache(void)
{
	const char *x = getenv("XDG_CACHE_HOME");
	const char *h = getenv("HOME");
	char *p;

	if (x != NULL && *x == '/') {
		if ((p = malloc(strlen(x) + 8)) != NULL)
			sprintf(p, "%s/vesper", x);
		return p;
	}
	if (h != NULL && *h != '\0') {
		if ((p = malloc(strlen(h) + 16)) != NULL)
			sprintf(p, "%s/.cache/vesper", h);
		return p;
	}
	return NULL;
}

/* printf into a malloc'ed string. */
static char *
fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *
fmt(const char *f, ...)
{
	va_list ap;
	char *s;

	va_start(ap, f);
	int n = vsnprintf(NULL, 0, f, ap);
	va_end(ap);
	if (n < 0 || (s = malloc((size_t)n + 1)) == NULL)
		return NULL;
	va_start(ap, f);
	vsnprintf(s, (size_t)n + 1, f, ap);
	va_end(ap);
	return s;
}

static int
ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Percent-encode a path, keeping '/' and the unreserved characters. */
static char *
url_path(const char *s)
{
	static const char hexd[] = "0123456789ABCDEF";
	char *o = malloc(3 * strlen(s) + 1), *q = o;

	if (o == NULL)
		return NULL;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || strchr("-._~/", c)) {
			*q++ = (char)c;
		} else {
			*q++ = '%';
			*q++ = hexd[c >> 4];
			*q++ = hexd[c & 15];
		}
	}
	*q = '\0';
	return o;
}

/* A relative path that stays inside its directory: no empty, "." or ".."
 * segment, no leading slash, no backslash, no control character. */
static int
safe_relpath(const char *p)
{
	if (*p == '\0' || *p == '/' || strlen(p) > 1000)
		return 0;
	for (const char *s = p; *s; s++)
		if (*s == '\\' || (unsigned char)*s < 0x20)
			return 0;
	const char *seg = p;
	for (;;) {
		const char *sl = strchr(seg, '/');
		size_t n = sl ? (size_t)(sl - seg) : strlen(seg);
		if (n == 0 || (n == 1 && seg[0] == '.') ||
		    (n == 2 && seg[0] == '.' && seg[1] == '.'))
			return 0;
		if (sl == NULL)
			return 1;
		seg = sl + 1;
	}
}

int
fetch_revision_ok(const char *r)
{
	if (*r == '\0' || strlen(r) > 200 || strcmp(r, ".") == 0 || strcmp(r, "..") == 0)
		return 0;
	for (; *r; r++) {
		unsigned char c = (unsigned char)*r;
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'))
			return 0;
	}
	return 1;
}

static int
mkdir_for(const char *path)
{
	char *d = strdup(path);
	int err = V_OK;

	if (d == NULL)
		return v_error(V_ERR_NOMEM, "out of memory");
	char *sl = strrchr(d, '/');
	if (sl != NULL && sl != d) {
		*sl = '\0';
		err = v_mkdir_p(d);
	}
	free(d);
	return err;
}

struct tree_entry {
	char *path;
	int64_t size;
	int has_sha;
	unsigned char sha256[32];
	int has_oid;		/* a git blob id, for files not in LFS */
	unsigned char oid[20];
};

struct tree {
	struct tree_entry *e;
	size_t n;
};

static void
tree_free(struct tree *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->e[i].path);
	free(t->e);
	t->e = NULL;
	t->n = 0;
}

/* Turn the listing (a JSON array of tree objects) into t: files only. */
static int
tree_parse(const json_t *arr, const char *name, struct tree *t)
{
	size_t n = json_array_size(arr);

	t->n = 0;
	t->e = calloc(n ? n : 1, sizeof *t->e);
	if (t->e == NULL)
		return v_error(V_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < n; i++) {
		json_t *o = json_array_get(arr, i);
		const char *type, *path;
		long long size;
		if (v_json_str(o, "type", &type, NULL) || v_json_str(o, "path", &path, NULL))
			return v_error(V_ERR_FORMAT, "%s: entry %zu has no type or path", name, i);
		if (strcmp(type, "file") != 0)
			continue;
		if (!safe_relpath(path))
			return v_error(V_ERR_FORMAT, "%s: unsafe path \"%s\" in the listing",
			    name, path);
		if (v_json_int(o, "size", &size) || size < 0)
			return v_error(V_ERR_FORMAT, "%s: %s: no size", name, path);
		struct tree_entry *e = &t->e[t->n];
		json_t *lfs = json_object_get(o, "lfs");
		if (lfs != NULL) {
			const char *oid;
			long long lsize;
			if (v_json_str(lfs, "oid", &oid, NULL))
				return v_error(V_ERR_FORMAT, "%s: %s: LFS entry without oid",
				    name, path);
			if (strncmp(oid, "sha256:", 7) == 0)
				oid += 7;
			if (v_hex_decode(oid, e->sha256, 32, 1) != 0)
				return v_error(V_ERR_FORMAT, "%s: %s: bad LFS oid \"%s\"", name,
				    path, oid);
			e->has_sha = 1;
			if (v_json_int(lfs, "size", &lsize) == V_OK && lsize >= 0)
				size = lsize;
		}
		/* Outside LFS the listing's oid is the git blob id, which
		 * covers the content; in LFS it names the pointer file. */
		const char *oid;
		if (lfs == NULL && v_json_str(o, "oid", &oid, NULL) == V_OK) {
			if (v_hex_decode(oid, e->oid, 20, 1) != 0)
				return v_error(V_ERR_FORMAT, "%s: %s: bad oid \"%s\"", name,
				    path, oid);
			e->has_oid = 1;
		}
		e->size = size;
		if ((e->path = strdup(path)) == NULL)
			return v_error(V_ERR_NOMEM, "out of memory");
		t->n++;
	}
	return V_OK;
}

/* The listing of repo at rev, from the hub (saved in snap) or, offline,
 * from snap. */
static int
tree_get(const struct fetch_opts *o, const char *repo, const char *rev,
    const char *snap, struct tree *t)
{
	char *tpath = fmt("%s/%s", snap, TREE_FILE);
	json_t *all = NULL;
	char *body = NULL, *url = NULL, *next = NULL;
	size_t len;
	int err = V_OK;

	memset(t, 0, sizeof *t);
	if (tpath == NULL)
		return v_error(V_ERR_NOMEM, "out of memory");
	if (o->offline) {
		err = v_slurp(tpath, 256u << 20, &body, &len);
		if (err == V_ERR_NOTFOUND)
			err = v_error(V_ERR_NOTFOUND, "%s at %s is not in the cache %s "
			    "(run once without --offline)", repo, rev, o->cache);
		if (err == V_OK && (err = v_json_parse(body, len, tpath, 0, &all)) == V_OK &&
		    !json_is_array(all))
			err = v_error(V_ERR_FORMAT, "%s: not a listing", tpath);
		if (err == V_OK)
			err = tree_parse(all, tpath, t);
		goto done;
	}
	char *erev = url_path(rev);
	url = erev ? fmt("%s/api/datasets/%s/tree/%s?recursive=true", o->endpoint,
	    repo, erev) : NULL;
	free(erev);
	all = json_array();
	if (url == NULL || all == NULL) {
		err = v_error(V_ERR_NOMEM, "out of memory");
		goto done;
	}
	for (int page = 0; ; page++) {
		json_t *arr;
		if (page >= MAX_PAGES) {
			err = v_error(V_ERR_NET, "%s: more than %d pages of listing", repo,
			    MAX_PAGES);
			goto done;
		}
		free(body);
		body = NULL;
		if ((err = http_get(&o->http, url, 256u << 20, &body, &len, &next))) {
			if (err == V_ERR_NOTFOUND)
				err = v_error(V_ERR_NOTFOUND, "%s: no dataset %s at revision %s "
				    "(HTTP 404 from %s)", o->endpoint, repo, rev, url);
			goto done;
		}
		if ((err = v_json_parse(body, len, url, 0, &arr)))
			goto done;
		if (!json_is_array(arr)) {
			json_decref(arr);
			err = v_error(V_ERR_FORMAT, "%s: the listing is not a JSON array", url);
			goto done;
		}
		json_array_extend(all, arr);
		json_decref(arr);
		if (next == NULL)
			break;
		/* A next link that is an absolute path is resolved against the
		 * origin of the page that gave it. */
		char og[512];
		if (next[0] == '/' && (err = http_origin(url, og, sizeof og)))
			goto done;
		free(url);
		url = next[0] == '/' ? fmt("%s%s", og, next) : strdup(next);
		free(next);
		next = NULL;
		if (url == NULL) {
			err = v_error(V_ERR_NOMEM, "out of memory");
			goto done;
		}
	}
	if ((err = tree_parse(all, url, t)))
		goto done;
	/* Keep the listing for --offline. */
	char *text = json_dumps(all, JSON_COMPACT);
	struct v_atomic a;
	if (text == NULL) {
		err = v_error(V_ERR_NOMEM, "out of memory");
		goto done;
	}
	if ((err = v_mkdir_p(snap)) == V_OK && (err = v_atomic_open(&a, tpath)) == V_OK) {
		err = v_write_all(a.fp, text, strlen(text), tpath);
		if (err == V_OK)
			err = v_atomic_commit(&a);
		else
			v_atomic_abort(&a);
	}
	free(text);
done:
	if (err)
		tree_free(t);
	json_decref(all);
	free(body);
	free(url);
	free(next);
	free(tpath);
	return err;
}

/* Make sure e is in the cache at dest, downloading it if needed. */
static int
hub_file(const struct fetch_opts *o, const char *repo, const char *rev,
    const struct tree_entry *e, const char *dest)
{
	struct stat st;
	int err;

	if (stat(dest, &st) == 0 && (int64_t)st.st_size == e->size)
		return V_OK;	/* verified when it got its name */
	if (o->offline)
		return v_error(V_ERR_NOTFOUND, "%s: %s is not in the cache (offline)",
		    repo, e->path);
	if ((err = mkdir_for(dest)))
		return err;
	char *erev = url_path(rev), *epath = url_path(e->path);
	char *url = erev && epath ? fmt("%s/datasets/%s/resolve/%s/%s", o->endpoint,
	    repo, erev, epath) : NULL;
	free(erev);
	free(epath);
	if (url == NULL)
		return v_error(V_ERR_NOMEM, "out of memory");
	err = http_download(&o->http, url, dest, e->size, e->has_sha ? e->sha256 : NULL,
	    e->has_oid ? e->oid : NULL, e->path);
	free(url);
	return err;
}

/* Feed a plain file to a splitter. */
static int
feed_file(const char *path, struct docs_splitter *s)
{
	FILE *fp;
	static char buf[1 << 20];
	size_t n;
	int err = v_open_in(path, &fp);

	if (err)
		return err;
	while ((n = fread(buf, 1, sizeof buf, fp)) > 0)
		if ((err = docs_splitter_feed(s, buf, n)))
			break;
	if (err == V_OK && ferror(fp))
		err = v_error_errno(V_ERR_IO, "%s: read error", path);
	v_close_in(fp);
	if (err == V_OK)
		err = docs_splitter_end(s);
	return err;
}

static int
file_docs(FILE *out, const char *path, int format, const char *source,
    const char *idprefix, struct fetch_stats *st)
{
	struct docs_splitter s;

	docs_splitter_init(&s, out, format, path, source, idprefix);
	int err = feed_file(path, &s);
	st->docs += s.n;
	st->files++;
	docs_splitter_free(&s);
	return err;
}

/* Hub datasets ---------------------------------------------------------- */

struct hub_pick {
	const struct tree_entry *e;
	char subset[256];
	const char *split;
};

static int
cmp_pick(const void *a, const void *b)
{
	return strcmp(((const struct hub_pick *)a)->e->path,
	    ((const struct hub_pick *)b)->e->path);
}

/* Is p "FR/<subset>/<split>.txt"?  Fills subset and split. */
static int
claire_path(const char *p, char *subset, size_t len, const char **split)
{
	if (strncmp(p, "FR/", 3) != 0)
		return 0;
	const char *s = p + 3, *sl = strchr(s, '/');
	if (sl == NULL || sl == s || (size_t)(sl - s) >= len)
		return 0;
	if (strcmp(sl + 1, "train.txt") == 0)
		*split = "train";
	else if (strcmp(sl + 1, "test.txt") == 0)
		*split = "test";
	else
		return 0;
	memcpy(subset, s, (size_t)(sl - s));
	subset[sl - s] = '\0';
	return 1;
}

static int
in_list(const char *list, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = list; *p; ) {
		const char *c = strchr(p, ',');
		size_t k = c ? (size_t)(c - p) : strlen(p);
		if (k == n && strncmp(p, name, n) == 0)
			return 1;
		p += k + (c != NULL);
	}
	return 0;
}

/* <cache>/hub/datasets--<owner>-<name>, malloc'ed. */
static char *
repo_dir(const struct fetch_opts *o, const char *repo)
{
	char *r = strdup(repo);

	if (r == NULL)
		return NULL;
	for (char *p = r; *p; p++)
		if (*p == '/')
			*p = '-';
	char *s = fmt("%s/hub/datasets--%s", o->cache, r);
	free(r);
	return s;
}

static char *
snapshot_dir(const struct fetch_opts *o, const char *repo, const char *commit)
{
	char *d = repo_dir(o, repo);
	char *s = d ? fmt("%s/%s", d, commit) : NULL;

	free(d);
	return s;
}

static const char *
revision(const struct fetch_opts *o)
{
	return o->revision ? o->revision : FETCH_DEFAULT_REVISION;
}

static int
is_commit(const char *s)
{
	return strlen(s) == 40 && strspn(s, "0123456789abcdef") == 40;
}

/* The commit id that the revision names, into commit: a commit id as it
 * is; a branch or tag through the hub's revision API, remembered in
 * <repo dir>/refs/<revision> for --offline.  Everything after this uses
 * the commit, so that a branch that moves during a download cannot mix
 * files of two commits. */
static int
resolve_revision(const struct fetch_opts *o, const char *repo, char commit[41])
{
	const char *rev = revision(o);
	char *body = NULL, *url = NULL, *erev = NULL;
	char *rdir = repo_dir(o, repo);
	char *ref = rdir ? fmt("%s/refs/%s", rdir, rev) : NULL;
	json_t *j = NULL;
	const char *sha;
	size_t len;
	int err = V_OK;

	if (ref == NULL) {
		err = v_error(V_ERR_NOMEM, "out of memory");
		goto done;
	}
	if (!fetch_revision_ok(rev)) {
		err = v_error(V_ERR_ARG, "bad revision \"%s\"", rev);
		goto done;
	}
	if (is_commit(rev)) {
		memcpy(commit, rev, 41);
		goto done;
	}
	if (o->offline) {
		err = v_slurp(ref, 4096, &body, &len);
		if (err == V_ERR_NOTFOUND)
			err = v_error(V_ERR_NOTFOUND, "%s at %s is not in the cache %s (run "
			    "once without --offline)", repo, rev, o->cache);
		if (err)
			goto done;
		while (len > 0 && (body[len - 1] == '\n' || body[len - 1] == ' '))
			body[--len] = '\0';
		if (!is_commit(body)) {
			err = v_error(V_ERR_FORMAT, "%s: not a commit id", ref);
			goto done;
		}
		memcpy(commit, body, 41);
		goto done;
	}
	erev = url_path(rev);
	url = erev ? fmt("%s/api/datasets/%s/revision/%s", o->endpoint, repo, erev) : NULL;
	if (url == NULL) {
		err = v_error(V_ERR_NOMEM, "out of memory");
		goto done;
	}
	if ((err = http_get(&o->http, url, 16u << 20, &body, &len, NULL))) {
		if (err == V_ERR_NOTFOUND)
			err = v_error(V_ERR_NOTFOUND, "%s: no dataset %s at revision %s "
			    "(HTTP 404 from %s)", o->endpoint, repo, rev, url);
		goto done;
	}
	if ((err = v_json_parse(body, len, url, 0, &j)))
		goto done;
	if (v_json_str(j, "sha", &sha, NULL) || !is_commit(sha)) {
		err = v_error(V_ERR_FORMAT, "%s: no commit id (\"sha\") in the answer", url);
		goto done;
	}
	memcpy(commit, sha, 41);
	/* Remember it for --offline. */
	struct v_atomic a;
	if ((err = mkdir_for(ref)) == V_OK && (err = v_atomic_open(&a, ref)) == V_OK) {
		err = v_write_all(a.fp, commit, 40, ref);
		if (err == V_OK)
			err = v_write_all(a.fp, "\n", 1, ref);
		if (err == V_OK)
			err = v_atomic_commit(&a);
		else
			v_atomic_abort(&a);
	}
done:
	json_decref(j);
	free(body);
	free(url);
	free(erev);
	free(ref);
	free(rdir);
	return err;
}

/* The Claire files chosen by --subset and --split, sorted by path. */
static int
claire_pick(const struct fetch_opts *o, const struct tree *t, struct hub_pick **out,
    size_t *n, int list_all)
{
	struct hub_pick *p = calloc(t->n ? t->n : 1, sizeof *p);
	size_t k = 0;

	if (p == NULL)
		return v_error(V_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < t->n; i++) {
		struct hub_pick *h = &p[k];
		if (!claire_path(t->e[i].path, h->subset, sizeof h->subset, &h->split))
			continue;
		if (!list_all) {
			if (o->subsets != NULL && !in_list(o->subsets, h->subset))
				continue;
			if (strcmp(o->split, "all") != 0 && strcmp(o->split, h->split) != 0)
				continue;
		}
		h->e = &t->e[i];
		k++;
	}
	qsort(p, k, sizeof *p, cmp_pick);
	/* A subset asked for that the listing lacks is a typo to report. */
	if (o->subsets != NULL && !list_all) {
		for (const char *s = o->subsets; *s; ) {
			const char *c = strchr(s, ',');
			size_t len = c ? (size_t)(c - s) : strlen(s);
			int found = 0;
			for (size_t i = 0; i < t->n && !found; i++) {
				char sub[256];
				const char *sp;
				found = claire_path(t->e[i].path, sub, sizeof sub, &sp) &&
				    strlen(sub) == len && strncmp(sub, s, len) == 0;
			}
			if (!found) {
				free(p);
				return v_error(V_ERR_NOTFOUND, "%s has no subset \"%.*s\" "
				    "(vfetch --list claire shows them)", FETCH_CLAIRE_REPO,
				    (int)len, s);
			}
			s += len + (c != NULL);
		}
	}
	*out = p;
	*n = k;
	return V_OK;
}

int
fetch_list(const struct fetch_opts *o, FILE *out)
{
	char rev[41];
	struct tree t;
	struct hub_pick *p;
	size_t n;
	int err;

	if ((err = resolve_revision(o, FETCH_CLAIRE_REPO, rev)))
		return err;
	char *snap = snapshot_dir(o, FETCH_CLAIRE_REPO, rev);
	if (snap == NULL)
		return v_error(V_ERR_NOMEM, "out of memory");
	err = tree_get(o, FETCH_CLAIRE_REPO, rev, snap, &t);
	free(snap);
	if (err)
		return err;
	if ((err = claire_pick(o, &t, &p, &n, 1))) {
		tree_free(&t);
		return err;
	}
	fprintf(out, "%-40s %14s %14s\n", "subset", "train bytes", "test bytes");
	int64_t tt = 0, ts = 0;
	for (size_t i = 0; i < n; ) {
		int64_t tr = 0, te = 0;
		size_t j = i;
		for (; j < n && strcmp(p[j].subset, p[i].subset) == 0; j++) {
			if (strcmp(p[j].split, "train") == 0)
				tr += p[j].e->size;
			else
				te += p[j].e->size;
		}
		fprintf(out, "%-40s %14lld %14lld\n", p[i].subset, (long long)tr,
		    (long long)te);
		tt += tr;
		ts += te;
		i = j;
	}
	fprintf(out, "%-40s %14lld %14lld\n", "total", (long long)tt, (long long)ts);
	free(p);
	tree_free(&t);
	return V_OK;
}

static int
fetch_claire(const struct fetch_opts *o, FILE *out, struct fetch_stats *st)
{
	char rev[41];
	struct tree t;
	struct hub_pick *p = NULL;
	size_t n;
	int err;

	if ((err = resolve_revision(o, FETCH_CLAIRE_REPO, rev)))
		return err;
	memcpy(st->commit, rev, 41);
	char *snap = snapshot_dir(o, FETCH_CLAIRE_REPO, rev);
	if (snap == NULL)
		return v_error(V_ERR_NOMEM, "out of memory");
	if ((err = tree_get(o, FETCH_CLAIRE_REPO, rev, snap, &t))) {
		free(snap);
		return err;
	}
	if ((err = claire_pick(o, &t, &p, &n, 0)))
		goto done;
	if (n == 0) {
		err = v_error(V_ERR_NOTFOUND, "%s at %s: no FR/<subset>/%s.txt file",
		    FETCH_CLAIRE_REPO, rev, o->split);
		goto done;
	}
	/* Everything is downloaded and verified first, so that documents are
	 * written only when the whole selection is at hand. */
	for (size_t i = 0; i < n && err == V_OK; i++) {
		char *dest = fmt("%s/%s", snap, p[i].e->path);
		err = dest ? hub_file(o, FETCH_CLAIRE_REPO, rev, p[i].e, dest) :
		    v_error(V_ERR_NOMEM, "out of memory");
		free(dest);
	}
	for (size_t i = 0; i < n && err == V_OK; i++) {
		char *dest = fmt("%s/%s", snap, p[i].e->path);
		char *prefix = fmt("%s/%s", p[i].subset, p[i].split);
		if (dest == NULL || prefix == NULL)
			err = v_error(V_ERR_NOMEM, "out of memory");
		else
			err = file_docs(out, dest, o->format >= 0 ? o->format : DOCS_PARA,
			    p[i].subset, prefix, st);
		free(dest);
		free(prefix);
	}
done:
	free(p);
	free(snap);
	tree_free(&t);
	return err;
}

static int
fetch_tinystories(const struct fetch_opts *o, FILE *out, struct fetch_stats *st)
{
	static const char *const files[2] = {
		"TinyStoriesV2-GPT4-train.txt", "TinyStoriesV2-GPT4-valid.txt"
	};
	char rev[41];
	struct tree t;
	int err, lo = 0, hi = 2;

	if (strcmp(o->split, "train") == 0)
		hi = 1;
	else if (strcmp(o->split, "test") == 0)
		lo = 1;
	if ((err = resolve_revision(o, FETCH_TINYSTORIES_REPO, rev)))
		return err;
	memcpy(st->commit, rev, 41);
	char *snap = snapshot_dir(o, FETCH_TINYSTORIES_REPO, rev);
	if (snap == NULL)
		return v_error(V_ERR_NOMEM, "out of memory");
	if ((err = tree_get(o, FETCH_TINYSTORIES_REPO, rev, snap, &t))) {
		free(snap);
		return err;
	}
	const struct tree_entry *pick[2] = { NULL, NULL };
	for (int f = lo; f < hi; f++) {
		for (size_t i = 0; i < t.n; i++)
			if (strcmp(t.e[i].path, files[f]) == 0)
				pick[f] = &t.e[i];
		if (pick[f] == NULL) {
			err = v_error(V_ERR_NOTFOUND, "%s at %s has no %s",
			    FETCH_TINYSTORIES_REPO, rev, files[f]);
			goto done;
		}
	}
	for (int f = lo; f < hi && err == V_OK; f++) {
		char *dest = fmt("%s/%s", snap, files[f]);
		err = dest ? hub_file(o, FETCH_TINYSTORIES_REPO, rev, pick[f], dest) :
		    v_error(V_ERR_NOMEM, "out of memory");
		free(dest);
	}
	for (int f = lo; f < hi && err == V_OK; f++) {
		char *dest = fmt("%s/%s", snap, files[f]);
		err = dest ? file_docs(out, dest, o->format >= 0 ? o->format : DOCS_EOT,
		    "tinystories", f == 0 ? "tinystories/train" : "tinystories/valid", st) :
		    v_error(V_ERR_NOMEM, "out of memory");
		free(dest);
	}
done:
	free(snap);
	tree_free(&t);
	return err;
}

/* Local files, directories and archives --------------------------------- */

/* Names read when met inside a directory or an archive; anything else is
 * skipped (and counted). */
static int
texty(const char *name)
{
	const char *base = strrchr(name, '/');
	base = base ? base + 1 : name;
	if (*base == '.')
		return 0;
	const char *dot = strrchr(base, '.');
	return dot == NULL || ends_with(base, ".txt") || ends_with(base, ".text") ||
	    ends_with(base, ".md") || ends_with(base, ".jsonl") ||
	    ends_with(base, ".ndjson");
}

struct walk {
	const struct fetch_opts *o;
	FILE *out;
	struct fetch_stats *st;
	const char *source;
	const char *label;	/* the archive's label */
	int single;		/* a lone compressed file: always read */
	struct docs_splitter s;
	char *prefix, *name;
	int open;
};

static int
walk_begin(void *arg, const char *member)
{
	struct walk *w = arg;

	if (!w->single && !texty(member)) {
		w->st->skipped++;
		return 0;
	}
	free(w->prefix);
	free(w->name);
	w->prefix = fmt("%s/%s", w->label, member);
	w->name = fmt("%s: %s", w->label, member);
	if (w->prefix == NULL || w->name == NULL)
		return v_error(V_ERR_NOMEM, "out of memory");
	docs_splitter_init(&w->s, w->out, w->o->format >= 0 ? w->o->format :
	    docs_format_for(member), w->name, w->source, w->prefix);
	w->open = 1;
	return 1;
}

static int
walk_data(void *arg, const char *p, size_t n)
{
	struct walk *w = arg;
	return docs_splitter_feed(&w->s, p, n);
}

static int
walk_end(void *arg)
{
	struct walk *w = arg;
	int err = docs_splitter_end(&w->s);

	w->st->docs += w->s.n;
	w->st->files++;
	docs_splitter_free(&w->s);
	w->open = 0;
	return err;
}

static int
archive_docs(const struct fetch_opts *o, const char *path, const char *label,
    int kind, const char *source, FILE *out, struct fetch_stats *st)
{
	static const struct archive_visit v = { walk_begin, walk_data, walk_end };
	struct walk w;

	memset(&w, 0, sizeof w);
	w.o = o;
	w.out = out;
	w.st = st;
	w.source = source;
	w.label = label;
	w.single = kind == ARCHIVE_SINGLE;
	int err = archive_walk(path, kind, &v, &w);
	if (w.open) {
		st->docs += w.s.n;
		docs_splitter_free(&w.s);
	}
	free(w.prefix);
	free(w.name);
	return err;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int local_path(const struct fetch_opts *o, const char *path, const char *label,
    const char *source, int top, FILE *out, struct fetch_stats *st);

static int
local_dir(const struct fetch_opts *o, const char *path, const char *label,
    const char *source, FILE *out, struct fetch_stats *st)
{
	DIR *d = opendir(path);
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, cap = 0;
	int err = V_OK;

	if (d == NULL)
		return v_error_errno(V_ERR_IO, "%s", path);
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? 2 * cap : 64;
			char **nn = realloc(names, cap * sizeof *names);
			if (nn == NULL) {
				err = v_error(V_ERR_NOMEM, "out of memory");
				break;
			}
			names = nn;
		}
		if ((names[n] = strdup(de->d_name)) == NULL) {
			err = v_error(V_ERR_NOMEM, "out of memory");
			break;
		}
		n++;
	}
	closedir(d);
	/* Sorted, so that the output does not depend on the file system. */
	if (err == V_OK)
		qsort(names, n, sizeof *names, cmp_str);
	for (size_t i = 0; i < n && err == V_OK; i++) {
		char *p = fmt("%s/%s", path, names[i]);
		char *l = fmt("%s/%s", label, names[i]);
		if (p == NULL || l == NULL)
			err = v_error(V_ERR_NOMEM, "out of memory");
		else
			err = local_path(o, p, l, source, 0, out, st);
		free(p);
		free(l);
	}
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return err;
}

static int
local_path(const struct fetch_opts *o, const char *path, const char *label,
    const char *source, int top, FILE *out, struct fetch_stats *st)
{
	struct stat sb;

	if (strcmp(path, "-") == 0)
		return file_docs(out, "-", o->format >= 0 ? o->format : DOCS_PARA, source,
		    "stdin", st);
	if (stat(path, &sb) != 0)
		return v_error_errno(errno == ENOENT ? V_ERR_NOTFOUND : V_ERR_IO, "%s", path);
	if (S_ISDIR(sb.st_mode))
		return local_dir(o, path, label, source, out, st);
	if (!S_ISREG(sb.st_mode)) {
		if (top)
			return v_error(V_ERR_ARG, "%s: not a file or directory", path);
		st->skipped++;
		return V_OK;
	}
	int kind = archive_kind(path);
	if (kind != ARCHIVE_NONE)
		return archive_docs(o, path, label, kind, source, out, st);
	if (!top && !texty(path)) {
		st->skipped++;
		return V_OK;
	}
	return file_docs(out, path, o->format >= 0 ? o->format : docs_format_for(path),
	    source, label, st);
}

/* The "source" of a local input: its base name without the extensions. */
static char *
source_of(const char *path)
{
	const char *b = path;
	size_t n = strlen(path);

	while (n > 1 && b[n - 1] == '/')
		n--;
	for (size_t i = 0; i + 1 < n; i++)
		if (b[i] == '/')
			path = b + i + 1;
	n -= (size_t)(path - b);
	char *s = malloc(n + 1);
	if (s == NULL)
		return NULL;
	memcpy(s, path, n);
	s[n] = '\0';
	char *dot = strchr(s + 1, '.');
	if (dot != NULL && *s != '\0')
		*dot = '\0';
	return s;
}

static int
is_url(const char *s)
{
	return strncmp(s, "http://", 7) == 0 || strncmp(s, "https://", 8) == 0;
}

static int
fetch_url(const struct fetch_opts *o, const char *url, FILE *out, struct fetch_stats *st)
{
	unsigned char h[32], want[32];
	char hexd[17], name[256];
	int err;

	if (o->sha256 != NULL && v_hex_decode(o->sha256, want, 32, 1) != 0)
		return v_error(V_ERR_ARG, "--sha256: not 64 hexadecimal digits");
	EVP_Digest(url, strlen(url), h, NULL, EVP_sha256(), NULL);
	v_hex_encode(h, 8, hexd);
	/* The file name: the last path segment, in a safe alphabet. */
	const char *q = url + strcspn(url, "?#");
	const char *b = q;
	while (b > url && b[-1] != '/')
		b--;
	size_t k = 0;
	for (; b < q && k < sizeof name - 1; b++)
		name[k++] = (strchr("-_.", *b) || (*b >= '0' && *b <= '9') ||
		    (*b >= 'a' && *b <= 'z') || (*b >= 'A' && *b <= 'Z')) ? *b : '_';
	name[k] = '\0';
	if (k == 0 || name[0] == '.')
		snprintf(name, sizeof name, "download");
	char *dest = fmt("%s/url/%s/%s", o->cache, hexd, name);
	if (dest == NULL)
		return v_error(V_ERR_NOMEM, "out of memory");
	struct stat sb;
	if (stat(dest, &sb) != 0) {
		if (o->offline) {
			err = v_error(V_ERR_NOTFOUND, "%s is not in the cache (offline)", url);
			goto done;
		}
		if ((err = mkdir_for(dest)) ||
		    (err = http_download(&o->http, url, dest, -1, o->sha256 ? want : NULL,
		    NULL, url)))
			goto done;
	}
	char *src = o->source ? strdup(o->source) : source_of(name);
	if (src == NULL) {
		err = v_error(V_ERR_NOMEM, "out of memory");
		goto done;
	}
	int kind = archive_kind(name);
	if (kind != ARCHIVE_NONE)
		err = archive_docs(o, dest, name, kind, src, out, st);
	else
		err = file_docs(out, dest, o->format >= 0 ? o->format :
		    docs_format_for(name), src, name, st);
	free(src);
done:
	free(dest);
	return err;
}

int
fetch_run(const struct fetch_opts *o, const char *source, FILE *out,
    struct fetch_stats *st)
{
	if (strcmp(source, "claire") == 0)
		return fetch_claire(o, out, st);
	if (strcmp(source, "tinystories") == 0)
		return fetch_tinystories(o, out, st);
	if (is_url(source))
		return fetch_url(o, source, out, st);
	char *src = o->source ? strdup(o->source) : source_of(source);
	if (src == NULL)
		return v_error(V_ERR_NOMEM, "out of memory");
	const char *b = strrchr(source, '/');
	const char *label = b && b[1] ? b + 1 : source;
	int err = local_path(o, source, label, src, 1, out, st);
	free(src);
	return err;
}
