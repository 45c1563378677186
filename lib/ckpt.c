/* ckpt.c: write and read vtrain's checkpoint directories. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "ckpt.h"
#include "safetensors.h"
#include "verr.h"
#include "vio.h"
#include "vjson.h"

#define OPT_MAGIC "VSPROPT1"
#define OPT_HEAD 16

void
ckpt_dirname(long step, char *buf, size_t len)
{
	snprintf(buf, len, "step-%08ld", step);
}

/* Is name a step directory's name: "step-" then digits only? */
static int
is_step_name(const char *name, long *step)
{
	char *end;

	if (strncmp(name, "step-", 5) != 0 || name[5] < '0' || name[5] > '9')
		return 0;
	errno = 0;
	long s = strtol(name + 5, &end, 10);
	if (*end != '\0' || errno != 0 || s < 0)
		return 0;
	*step = s;
	return 1;
}

/* Remove a directory of plain files (a checkpoint: no subdirectories). */
static int
remove_flat_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char path[PATH_MAX];

	if (d == NULL)
		return errno == ENOENT ? V_OK :
		    v_error_errno(V_ERR_IO, "cannot open %s", dir);
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		if (unlink(path) != 0 && errno != ENOENT) {
			int err = v_error_errno(V_ERR_IO, "cannot remove %s", path);
			closedir(d);
			return err;
		}
	}
	closedir(d);
	if (rmdir(dir) != 0 && errno != ENOENT)
		return v_error_errno(V_ERR_IO, "cannot remove %s", dir);
	return V_OK;
}

/* Leftovers of a writer that died mid-checkpoint (.tmp-step-N.PID,
 * .old-step-N.PID, .latest.PID) whose process is gone. */
static void
remove_leftovers(const char *out)
{
	DIR *d = opendir(out);
	struct dirent *e;
	char path[PATH_MAX];

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		const char *n = e->d_name, *dot = strrchr(n, '.');
		char *end;
		if ((strncmp(n, ".tmp-step-", 10) != 0 &&
		    strncmp(n, ".old-step-", 10) != 0 &&
		    strncmp(n, ".latest.", 8) != 0) || dot == NULL || dot == n)
			continue;
		long pid = strtol(dot + 1, &end, 10);
		if (*end != '\0' || pid <= 0 || pid == (long)getpid() ||
		    kill((pid_t)pid, 0) == 0 || errno != ESRCH)
			continue;
		snprintf(path, sizeof path, "%s/%s", out, n);
		if (unlink(path) != 0)
			remove_flat_dir(path);
	}
	closedir(d);
}

static int
write_model(const char *path, const struct vlm_config *c, const char *tok,
    long step, const float *params)
{
	int n = vlm_layout(c, NULL), err;
	struct vlm_tensor *t = calloc((size_t)n, sizeof *t);
	struct st_wtensor *w = calloc((size_t)n, sizeof *w);
	char *cfg = vlm_config_json(c), stepbuf[32];

	if (t == NULL || w == NULL || cfg == NULL) {
		free(t);
		free(w);
		free(cfg);
		return v_error(V_ERR_NOMEM, "out of memory");
	}
	vlm_layout(c, t);
	for (int i = 0; i < n; i++) {
		w[i].name = t[i].name;
		w[i].dtype = ST_F32;
		w[i].f32 = params + t[i].offset;
		/* Vectors are 1-D, as Hugging Face stores norms. */
		if (t[i].rows == 1 && !t[i].is_matrix) {
			w[i].ndim = 1;
			w[i].shape[0] = t[i].cols;
		} else {
			w[i].ndim = 2;
			w[i].shape[0] = t[i].rows;
			w[i].shape[1] = t[i].cols;
		}
	}
	snprintf(stepbuf, sizeof stepbuf, "%ld", step);
	struct st_kv meta[] = {
		{ "format", "vesper" }, { "vesper.config", cfg },
		{ "vesper.tokenizer", tok }, { "vesper.step", stepbuf },
	};
	err = st_write(path, w, (size_t)n, meta, sizeof meta / sizeof meta[0]);
	free(t);
	free(w);
	free(cfg);
	return err;
}

static int
write_chunk(struct v_atomic *a, XXH64_state_t *h, const void *buf, size_t n,
    const char *path)
{
	XXH64_update(h, buf, n);
	return v_write_all(a->fp, buf, n, path);
}

static int
write_floats(struct v_atomic *a, XXH64_state_t *h, const float *x, size_t n,
    const char *path)
{
	unsigned char buf[4096];
	int err = V_OK;

	for (size_t i = 0; i < n && !err; ) {
		size_t k = 0;
		for (; k < sizeof buf / 4 && i < n; k++, i++) {
			uint32_t u;
			memcpy(&u, &x[i], 4);
			v_put_u32(buf + 4 * k, u);
		}
		err = write_chunk(a, h, buf, 4 * k, path);
	}
	return err;
}

static int
write_optimizer(const char *path, const float *m, const float *v, size_t P)
{
	struct v_atomic a;
	unsigned char head[OPT_HEAD], tail[8];
	XXH64_state_t *h = XXH64_createState();
	int err;

	if (h == NULL)
		return v_error(V_ERR_NOMEM, "out of memory");
	XXH64_reset(h, 0);
	memcpy(head, OPT_MAGIC, 8);
	v_put_u64(head + 8, (uint64_t)P);
	err = v_atomic_open(&a, path);
	if (!err)
		err = write_chunk(&a, h, head, sizeof head, path);
	if (!err)
		err = write_floats(&a, h, m, P, path);
	if (!err)
		err = write_floats(&a, h, v, P, path);
	if (!err) {
		v_put_u64(tail, XXH64_digest(h));
		err = v_write_all(a.fp, tail, sizeof tail, path);
	}
	XXH64_freeState(h);
	if (!err)
		err = v_atomic_commit(&a);
	if (err)
		v_atomic_abort(&a);
	return err;
}

static int
write_text(const char *path, const char *text)
{
	struct v_atomic a;
	int err = v_atomic_open(&a, path);

	if (!err)
		err = v_write_all(a.fp, text, strlen(text), path);
	if (!err)
		err = v_atomic_commit(&a);
	if (err)
		v_atomic_abort(&a);
	return err;
}

/* The step directories under out, newest first. */
static int
cmp_desc(const void *a, const void *b)
{
	long x = *(const long *)a, y = *(const long *)b;
	return x < y ? 1 : x > y ? -1 : 0;
}

static int
prune(const char *out, int keep, long current)
{
	DIR *d = opendir(out);
	struct dirent *e;
	long *steps = NULL, s;
	size_t n = 0, cap = 0;
	int err = V_OK;
	char path[PATH_MAX], name[32];

	if (d == NULL)
		return v_error_errno(V_ERR_IO, "cannot open %s", out);
	while ((e = readdir(d)) != NULL) {
		if (!is_step_name(e->d_name, &s))
			continue;
		if (n == cap) {
			long *t = realloc(steps, (cap = cap ? 2 * cap : 16) * sizeof *t);
			if (t == NULL) {
				err = v_error(V_ERR_NOMEM, "out of memory");
				break;
			}
			steps = t;
		}
		steps[n++] = s;
	}
	closedir(d);
	if (!err && steps != NULL)
		qsort(steps, n, sizeof *steps, cmp_desc);
	for (size_t i = (size_t)keep; !err && i < n; i++) {
		if (steps[i] == current)
			continue;
		ckpt_dirname(steps[i], name, sizeof name);
		snprintf(path, sizeof path, "%s/%s", out, name);
		err = remove_flat_dir(path);
	}
	free(steps);
	return err;
}

int
ckpt_save(const char *out, const struct vlm_config *c, const char *tok,
    long step, const float *params, const float *m, const float *v,
    const char *cursor, int keep)
{
	char name[32], tmp[PATH_MAX], fin[PATH_MAX], old[PATH_MAX];
	char f[PATH_MAX + 32], link_tmp[PATH_MAX], link[PATH_MAX];
	int err = v_mkdir_p(out);
	long pid = (long)getpid();
	struct stat sb;

	if (err)
		return err;
	remove_leftovers(out);
	ckpt_dirname(step, name, sizeof name);
	snprintf(tmp, sizeof tmp, "%s/.tmp-%s.%ld", out, name, pid);
	snprintf(fin, sizeof fin, "%s/%s", out, name);
	snprintf(old, sizeof old, "%s/.old-%s.%ld", out, name, pid);
	remove_flat_dir(tmp);
	if (mkdir(tmp, 0755) != 0)
		return v_error_errno(V_ERR_IO, "cannot create %s", tmp);
	snprintf(f, sizeof f, "%s/model.safetensors", tmp);
	err = write_model(f, c, tok, step, params);
	if (!err) {
		snprintf(f, sizeof f, "%s/optimizer.bin", tmp);
		err = write_optimizer(f, m, v, (size_t)vlm_param_count(c));
	}
	if (!err) {
		snprintf(f, sizeof f, "%s/cursor.json", tmp);
		err = write_text(f, cursor);
	}
	if (!err)
		err = v_fsync_dir(tmp);
	if (err) {
		remove_flat_dir(tmp);
		return err;
	}
	/* A checkpoint of the same step (after a rollback) is replaced: the
	 * old one moves aside first, since rename will not replace a
	 * non-empty directory. */
	if (lstat(fin, &sb) == 0 && rename(fin, old) != 0) {
		err = v_error_errno(V_ERR_IO, "cannot move %s aside", fin);
		remove_flat_dir(tmp);
		return err;
	}
	if (rename(tmp, fin) != 0) {
		err = v_error_errno(V_ERR_IO, "cannot rename %s to %s", tmp, fin);
		remove_flat_dir(tmp);
		return err;
	}
	remove_flat_dir(old);
	snprintf(link_tmp, sizeof link_tmp, "%s/.latest.%ld", out, pid);
	snprintf(link, sizeof link, "%s/latest", out);
	unlink(link_tmp);
	if (symlink(name, link_tmp) != 0)
		return v_error_errno(V_ERR_IO, "cannot create %s", link_tmp);
	if (rename(link_tmp, link) != 0) {
		err = v_error_errno(V_ERR_IO, "cannot replace %s", link);
		unlink(link_tmp);
		return err;
	}
	err = v_fsync_dir(out);
	if (!err && keep > 0)
		err = prune(out, keep, step);
	return err;
}

void
ckpt_free(struct ckpt *ck)
{
	free(ck->params);
	free(ck->m);
	free(ck->v);
	free(ck->cursor);
	free(ck->dir);
	memset(ck, 0, sizeof *ck);
}

/* err's detail, prefixed with "file: what: ". */
static int
error_in(int err, const char *file, const char *what)
{
	char why[512];

	/* v_error rewrites the detail in place: copy it first. */
	snprintf(why, sizeof why, "%s", v_errmsg(err));
	return v_error(err, "%s: %s: %s", file, what, why);
}

static int
read_model(const char *path, struct ckpt *ck)
{
	struct st_file f;
	int err = st_open(&f, path);
	const char *fmt, *cfg, *tok, *step;
	char *end;

	if (err)
		return err;
	fmt = st_meta(&f, "format");
	cfg = st_meta(&f, "vesper.config");
	tok = st_meta(&f, "vesper.tokenizer");
	step = st_meta(&f, "vesper.step");
	if (fmt == NULL || strcmp(fmt, "vesper") != 0 || cfg == NULL) {
		err = v_error(V_ERR_FORMAT, "%s: not a Vesper checkpoint (no "
		    "format \"vesper\" and vesper.config in its metadata)", path);
		goto out;
	}
	if ((err = vlm_config_from_json(cfg, &ck->cfg)) != V_OK) {
		err = error_in(err, path, "vesper.config");
		goto out;
	}
	if (tok == NULL)
		tok = "";
	if (strlen(tok) != 0 && (strlen(tok) != 64 || strspn(tok,
	    "0123456789abcdef") != 64)) {
		err = v_error(V_ERR_FORMAT, "%s: vesper.tokenizer is not a "
		    "SHA-256 in hexadecimal", path);
		goto out;
	}
	snprintf(ck->tokenizer, sizeof ck->tokenizer, "%s", tok);
	errno = 0;
	ck->step = step ? strtol(step, &end, 10) : 0;
	if (step != NULL && (*step == '\0' || *end != '\0' || errno || ck->step < 0)) {
		err = v_error(V_ERR_FORMAT, "%s: vesper.step '%s' is not a step",
		    path, step);
		goto out;
	}
	int n = vlm_layout(&ck->cfg, NULL);
	struct vlm_tensor *t = calloc((size_t)n, sizeof *t);
	ck->nparams = (size_t)vlm_param_count(&ck->cfg);
	ck->params = malloc(ck->nparams * sizeof(float));
	if (t == NULL || ck->params == NULL) {
		free(t);
		err = v_error(V_ERR_NOMEM, "out of memory for %s", path);
		goto out;
	}
	vlm_layout(&ck->cfg, t);
	if (f.n != (size_t)n)
		err = v_error(V_ERR_MISMATCH, "%s: %zu tensors where its "
		    "configuration makes %d", path, f.n, n);
	for (int i = 0; i < n && !err; i++) {
		const struct st_tensor *x = st_find(&f, t[i].name);
		int vec = t[i].rows == 1 && !t[i].is_matrix;
		if (x == NULL) {
			err = v_error(V_ERR_MISMATCH, "%s: no tensor %s", path, t[i].name);
			break;
		}
		if (vec ? !(x->ndim == 1 && x->shape[0] == t[i].cols) :
		    !(x->ndim == 2 && x->shape[0] == t[i].rows &&
		    x->shape[1] == t[i].cols)) {
			err = v_error(V_ERR_MISMATCH, "%s: %s has the wrong shape for "
			    "its configuration", path, t[i].name);
			break;
		}
		err = st_tensor_f32(x, ck->params + t[i].offset);
		if (err)
			err = error_in(err, path, t[i].name);
	}
	free(t);
out:
	st_close(&f);
	return err;
}

static int
read_optimizer(const char *path, struct ckpt *ck)
{
	char *buf;
	size_t len, P = ck->nparams;
	int err = v_slurp(path, 0, &buf, &len);
	const unsigned char *b = (const unsigned char *)buf;

	if (err)
		return err;
	if (len < OPT_HEAD + 8 || memcmp(b, OPT_MAGIC, 8) != 0)
		err = v_error(V_ERR_FORMAT, "%s: not a Vesper optimizer file", path);
	else if (v_get_u64(b + 8) != (uint64_t)P)
		err = v_error(V_ERR_MISMATCH, "%s: moments for %llu parameters, "
		    "the model has %zu", path,
		    (unsigned long long)v_get_u64(b + 8), P);
	else if (len != OPT_HEAD + 8 * P + 8)
		err = v_error(len < OPT_HEAD + 8 * P + 8 ? V_ERR_TRUNCATED :
		    V_ERR_FORMAT, "%s: %zu bytes where %zu were expected", path,
		    len, OPT_HEAD + 8 * P + 8);
	else if (XXH64(b, len - 8, 0) != v_get_u64(b + len - 8))
		err = v_error(V_ERR_CHECKSUM, "%s: checksum mismatch", path);
	if (!err) {
		ck->m = malloc(P * sizeof(float));
		ck->v = malloc(P * sizeof(float));
		if (ck->m == NULL || ck->v == NULL)
			err = v_error(V_ERR_NOMEM, "out of memory for %s", path);
	}
	for (size_t i = 0; !err && i < P; i++) {
		uint32_t u = v_get_u32(b + OPT_HEAD + 4 * i);
		uint32_t w = v_get_u32(b + OPT_HEAD + 4 * (P + i));
		memcpy(&ck->m[i], &u, 4);
		memcpy(&ck->v[i], &w, 4);
	}
	free(buf);
	return err;
}

int
ckpt_load(const char *path, struct ckpt *ck)
{
	char dir[PATH_MAX + 32], f[PATH_MAX + 32], real[PATH_MAX];
	struct stat sb;
	int err;

	memset(ck, 0, sizeof *ck);
	if (stat(path, &sb) != 0)
		return v_error_errno(V_ERR_NOTFOUND, "%s", path);
	if (S_ISREG(sb.st_mode)) {
		err = read_model(path, ck);
		if (err)
			ckpt_free(ck);
		return err;
	}
	snprintf(dir, sizeof dir, "%s", path);
	snprintf(f, sizeof f, "%s/latest", path);
	/* An output directory: its newest checkpoint. */
	if (stat(f, &sb) == 0 && S_ISDIR(sb.st_mode))
		snprintf(dir, sizeof dir, "%s", f);
	if (realpath(dir, real) == NULL)
		return v_error_errno(V_ERR_NOTFOUND, "%s", dir);
	ck->dir = strdup(real);
	if (ck->dir == NULL)
		return v_error(V_ERR_NOMEM, "out of memory");
	snprintf(f, sizeof f, "%s/model.safetensors", real);
	err = read_model(f, ck);
	if (!err) {
		snprintf(f, sizeof f, "%s/optimizer.bin", real);
		err = read_optimizer(f, ck);
	}
	if (!err) {
		size_t len;
		json_t *j;
		snprintf(f, sizeof f, "%s/cursor.json", real);
		err = v_slurp(f, 1 << 20, &ck->cursor, &len);
		if (!err && (err = v_json_parse(ck->cursor, len, f, 0, &j)) == V_OK) {
			if (!json_is_object(j))
				err = v_error(V_ERR_FORMAT, "%s: not a JSON object", f);
			json_decref(j);
		}
	}
	if (err)
		ckpt_free(ck);
	return err;
}
