/* vio.h: checked input/output and atomic replacement of output files.
 *
 * An output file is written under a temporary name in its final directory,
 * flushed, fsync'ed and renamed over the final name only when complete, so
 * that a program killed half-way never leaves a truncated file under the
 * final name.  Temporary files still open are remembered so that a signal
 * handler can remove them (v_atomic_cleanup_all is async-signal-safe). */
#ifndef VESPER_VIO_H
#define VESPER_VIO_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Open path for reading; "-" is standard input. */
int v_open_in(const char *path, FILE **fp);
/* Close a stream from v_open_in (leaves stdin open). */
void v_close_in(FILE *fp);

/* Read exactly n bytes: V_OK, V_ERR_TRUNCATED at end of file, V_ERR_IO. */
int v_read_exact(FILE *fp, void *buf, size_t n, const char *name);
/* Write all n bytes or fail with V_ERR_IO naming the stream. */
int v_write_all(FILE *fp, const void *buf, size_t n, const char *name);

/* Read a whole file ("-" for stdin) into a malloc'ed, NUL-terminated buffer.
 * Fails with V_ERR_RANGE beyond max bytes (0: no limit). */
int v_slurp(const char *path, size_t max, char **buf, size_t *len);

/* Flush and close standard output, reporting a write error (a full disk, a
 * closed pipe) that stdio kept to itself until now. */
int v_close_stdout(void);

/* Map a regular file read-only: *base is NULL for an empty file.  A
 * directory or other non-regular file is V_ERR_FORMAT. */
int v_map_file(const char *path, const unsigned char **base, size_t *size);
void v_unmap_file(const unsigned char *base, size_t size);

/* mkdir -p. */
int v_mkdir_p(const char *path);
/* fsync a directory so that a rename in it is durable. */
int v_fsync_dir(const char *dir);

struct v_atomic {
	char *path;	/* final name; NULL for standard output */
	char *tmp;	/* temporary name while open */
	FILE *fp;	/* write here */
	int slot;	/* index in the cleanup table, or -1 */
};

/* Start writing path ("-": standard output, written directly). */
int v_atomic_open(struct v_atomic *a, const char *path);
/* Flush, fsync, close and rename onto the final name. */
int v_atomic_commit(struct v_atomic *a);
/* Close and remove the temporary file; safe after a failed commit. */
void v_atomic_abort(struct v_atomic *a);
/* Remove every temporary file still open; for signal handlers. */
void v_atomic_cleanup_all(void);

/* Monotonic seconds. */
double v_now(void);

/* Little-endian stores and loads, independent of the host's order. */
static inline void v_put_u16(unsigned char *p, uint16_t v)
{ p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); }
static inline void v_put_u32(unsigned char *p, uint32_t v)
{ for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static inline void v_put_u64(unsigned char *p, uint64_t v)
{ for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static inline uint16_t v_get_u16(const unsigned char *p)
{ return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t v_get_u32(const unsigned char *p)
{ uint32_t v = 0; for (int i = 3; i >= 0; i--) v = (v << 8) | p[i]; return v; }
static inline uint64_t v_get_u64(const unsigned char *p)
{ uint64_t v = 0; for (int i = 7; i >= 0; i--) v = (v << 8) | p[i]; return v; }

#endif
