/* vio.c: checked I/O and atomic output files. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "verr.h"
#include "vio.h"

int
v_open_in(const char *path, FILE **fp)
{
	if (strcmp(path, "-") == 0) {
		*fp = stdin;
		return V_OK;
	}
	*fp = fopen(path, "rb");
	if (*fp == NULL)
		return v_error_errno(errno == ENOENT ? V_ERR_NOTFOUND : V_ERR_IO,
		    "%s", path);
	return V_OK;
}

void
v_close_in(FILE *fp)
{
	if (fp != NULL && fp != stdin)
		fclose(fp);
}

int
v_read_exact(FILE *fp, void *buf, size_t n, const char *name)
{
	size_t got = fread(buf, 1, n, fp);

	if (got == n)
		return V_OK;
	if (ferror(fp))
		return v_error_errno(V_ERR_IO, "%s: read error", name);
	return v_error(V_ERR_TRUNCATED, "%s: input ends early (%zu of %zu bytes)",
	    name, got, n);
}

int
v_write_all(FILE *fp, const void *buf, size_t n, const char *name)
{
	if (n > 0 && fwrite(buf, 1, n, fp) != n)
		return v_error_errno(V_ERR_IO, "%s: write error", name);
	return V_OK;
}

int
v_slurp(const char *path, size_t max, char **buf, size_t *len)
{
	FILE *fp;
	char *b = NULL;
	size_t n = 0, cap = 0;
	int err = v_open_in(path, &fp);

	if (err)
		return err;
	for (;;) {
		if (cap - n < 65536) {
			size_t ncap = cap ? cap * 2 : 1 << 16;
			char *nb = realloc(b, ncap + 1);
			if (nb == NULL) {
				free(b);
				v_close_in(fp);
				return v_error(V_ERR_NOMEM, "%s: out of memory", path);
			}
			b = nb;
			cap = ncap;
		}
		size_t got = fread(b + n, 1, cap - n, fp);
		n += got;
		if (max && n > max) {
			free(b);
			v_close_in(fp);
			return v_error(V_ERR_RANGE, "%s: larger than %zu bytes", path, max);
		}
		if (got == 0)
			break;
	}
	if (ferror(fp)) {
		free(b);
		v_close_in(fp);
		return v_error_errno(V_ERR_IO, "%s: read error", path);
	}
	v_close_in(fp);
	b[n] = '\0';
	*buf = b;
	*len = n;
	return V_OK;
}

int
v_close_stdout(void)
{
	int bad = fflush(stdout) != 0 || ferror(stdout);

	if (fclose(stdout) != 0)
		bad = 1;
	if (bad)
		return v_error_errno(V_ERR_IO, "standard output: write error");
	return V_OK;
}

int
v_map_file(const char *path, const unsigned char **base, size_t *size)
{
	struct stat sb;
	int fd, err = V_OK;

	*base = NULL;
	*size = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return v_error_errno(errno == ENOENT ? V_ERR_NOTFOUND : V_ERR_IO, "%s", path);
	if (fstat(fd, &sb) != 0)
		err = v_error_errno(V_ERR_IO, "%s", path);
	else if (!S_ISREG(sb.st_mode))
		err = v_error(V_ERR_FORMAT, "%s: not a regular file", path);
	else if (sb.st_size > 0) {
		void *m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (m == MAP_FAILED)
			err = v_error_errno(V_ERR_IO, "%s: mmap", path);
		else {
			*base = m;
			*size = (size_t)sb.st_size;
		}
	}
	close(fd);
	return err;
}

void
v_unmap_file(const unsigned char *base, size_t size)
{
	if (base != NULL)
		munmap((void *)base, size);
}

int
v_mkdir_p(const char *path)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof buf)
		return v_error(V_ERR_ARG, "bad directory name '%s'", path);
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; ; p++) {
		if (*p == '/' || *p == '\0') {
			char c = *p;
			*p = '\0';
			if (mkdir(buf, 0777) != 0 && errno != EEXIST)
				return v_error_errno(V_ERR_IO, "mkdir %s", buf);
			*p = c;
			if (c == '\0')
				break;
		}
	}
	struct stat st;
	if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
		return v_error(V_ERR_IO, "%s: not a directory", path);
	return V_OK;
}

int
v_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY);

	if (fd < 0)
		return v_error_errno(V_ERR_IO, "%s", dir);
	/* Some file systems refuse fsync on a directory; that is not a
	 * failure of ours. */
	if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS) {
		int e = v_error_errno(V_ERR_IO, "fsync %s", dir);
		close(fd);
		return e;
	}
	close(fd);
	return V_OK;
}

/* Temporary names of files being written, for v_atomic_cleanup_all.  The
 * table holds copies so that a signal handler never touches the heap.
 * Programs write several outputs from several threads at once (vshard's
 * shards), so a slot is claimed with an atomic exchange, and mkstemp
 * writes the name into the claimed slot itself: a signal that arrives once
 * the file exists always finds its name there. */
#define MAX_PENDING 256
static char pending[MAX_PENDING][PATH_MAX];
static atomic_int pending_used[MAX_PENDING];
/* Set by v_atomic_cleanup_all: the process is going, and a file another
 * thread creates after the cleanup must not outlive it. */
static atomic_int pending_dying;

/* Create a temporary file from template in a claimed slot; the slot's
 * index, or -1 with errno set. */
static int
pending_create(const char *template, int *fd)
{
	if (strlen(template) >= PATH_MAX) {
		errno = ENAMETOOLONG;
		return -1;
	}
	for (int i = 0; i < MAX_PENDING; i++) {
		int expect = 0;
		if (atomic_compare_exchange_strong(&pending_used[i], &expect, 1)) {
			strcpy(pending[i], template);
			*fd = mkstemp(pending[i]);
			if (*fd >= 0 && atomic_load(&pending_dying)) {
				unlink(pending[i]);
				close(*fd);
				*fd = -1;
				errno = EINTR;
			}
			if (*fd < 0) {
				int e = errno;
				atomic_store(&pending_used[i], 0);
				errno = e;
				return -1;
			}
			return i;
		}
	}
	errno = EMFILE;
	return -1;
}

static void
pending_drop(int slot)
{
	if (slot >= 0)
		atomic_store(&pending_used[slot], 0);
}

void
v_atomic_cleanup_all(void)
{
	atomic_store(&pending_dying, 1);
	for (int i = 0; i < MAX_PENDING; i++)
		if (atomic_load(&pending_used[i]))
			unlink(pending[i]);
}

static char *
dir_of(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *d;

	if (slash == NULL)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	d = malloc((size_t)(slash - path) + 1);
	if (d != NULL) {
		memcpy(d, path, (size_t)(slash - path));
		d[slash - path] = '\0';
	}
	return d;
}

int
v_atomic_open(struct v_atomic *a, const char *path)
{
	memset(a, 0, sizeof *a);
	a->slot = -1;
	if (strcmp(path, "-") == 0) {
		a->fp = stdout;
		return V_OK;
	}
	size_t n = strlen(path);
	a->path = strdup(path);
	a->tmp = malloc(n + 16);
	if (a->path == NULL || a->tmp == NULL) {
		free(a->path);
		free(a->tmp);
		return v_error(V_ERR_NOMEM, "out of memory");
	}
	/* The temporary name sits beside the final one, so that rename never
	 * crosses a file system, and starts with the final name so that a
	 * leftover is recognisable. */
	snprintf(a->tmp, n + 16, "%s.tmp.XXXXXX", path);
	int fd = -1;
	a->slot = pending_create(a->tmp, &fd);
	if (a->slot >= 0)
		strcpy(a->tmp, pending[a->slot]);
	if (fd < 0) {
		int e = v_error_errno(V_ERR_IO, "cannot create %s", path);
		free(a->path);
		free(a->tmp);
		a->path = a->tmp = NULL;
		return e;
	}
	(void)fchmod(fd, 0644);	/* mkstemp makes 0600; outputs are ordinary files */
	a->fp = fdopen(fd, "wb");
	if (a->fp == NULL) {
		close(fd);
		v_atomic_abort(a);
		return v_error_errno(V_ERR_IO, "cannot open %s", path);
	}
	return V_OK;
}

int
v_atomic_commit(struct v_atomic *a)
{
	int err = V_OK;

	if (a->path == NULL) {	/* standard output */
		if (fflush(a->fp) != 0 || ferror(a->fp))
			return v_error_errno(V_ERR_IO, "standard output: write error");
		return V_OK;
	}
	if (fflush(a->fp) != 0 || ferror(a->fp))
		err = v_error_errno(V_ERR_IO, "%s: write error", a->path);
	else if (fsync(fileno(a->fp)) != 0)
		err = v_error_errno(V_ERR_IO, "%s: fsync", a->path);
	if (fclose(a->fp) != 0 && err == V_OK)
		err = v_error_errno(V_ERR_IO, "%s: write error", a->path);
	a->fp = NULL;
	if (err == V_OK && rename(a->tmp, a->path) != 0)
		err = v_error_errno(V_ERR_IO, "rename to %s", a->path);
	if (err != V_OK) {
		v_atomic_abort(a);
		return err;
	}
	pending_drop(a->slot);
	char *d = dir_of(a->path);
	if (d != NULL) {
		err = v_fsync_dir(d);
		free(d);
	}
	free(a->path);
	free(a->tmp);
	a->path = a->tmp = NULL;
	a->slot = -1;
	return err;
}

void
v_atomic_abort(struct v_atomic *a)
{
	if (a->path == NULL)
		return;
	if (a->fp != NULL)
		fclose(a->fp);
	a->fp = NULL;
	if (a->tmp != NULL)
		unlink(a->tmp);
	pending_drop(a->slot);
	free(a->path);
	free(a->tmp);
	a->path = a->tmp = NULL;
	a->slot = -1;
}

double
v_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
