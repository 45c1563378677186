/* verr.h: error values shared by the whole library.
 *
 * Library code never prints and never exits.  A function that fails returns
 * one of the negative V_ERR_* values and, where it knows more (a file name,
 * a line number), records a one-line detail with v_error().  The program
 * turns both into a message with v_errmsg(). */
#ifndef VESPER_VERR_H
#define VESPER_VERR_H

enum {
	V_OK = 0,
	V_ERR_NOMEM = -1,	/* out of memory */
	V_ERR_IO = -2,		/* read, write, open or rename failed */
	V_ERR_FORMAT = -3,	/* input is not in the expected format */
	V_ERR_ARG = -4,		/* bad argument or option value */
	V_ERR_RANGE = -5,	/* value out of range */
	V_ERR_UNSUPPORTED = -6,	/* valid but not supported (version, dtype) */
	V_ERR_TRUNCATED = -7,	/* input ends early */
	V_ERR_CHECKSUM = -8,	/* checksum or hash mismatch */
	V_ERR_NET = -9,		/* network or HTTP failure */
	V_ERR_DEVICE = -10,	/* GPU or backend failure */
	V_ERR_NOTFOUND = -11,	/* file, key or resource missing */
	V_ERR_INTERRUPTED = -12,	/* stopped by a signal */
	V_ERR_NUMERIC = -13,	/* NaN, infinity or overflow */
	V_ERR_MISMATCH = -14,	/* two inputs disagree (shape, vocabulary) */
	V_ERR_NOTIMPL = -15,	/* not built yet */
	V_ERR_COUNT_ = 16
};

/* The fixed name of an error value ("input ends early"). */
const char *v_strerror(int err);

/* Record a detail for err (printf-style) and return err, so that a failing
 * function can write `return v_error(V_ERR_FORMAT, "%s: bad magic", path);`.
 * The detail is per thread. */
int v_error(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Like v_error, adding strerror(errno) at the end of the detail. */
int v_error_errno(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* The message for the last error of this thread: the recorded detail if
 * there is one, else v_strerror(err). */
const char *v_errmsg(int err);

/* Forget the recorded detail. */
void v_errclear(void);

#endif
