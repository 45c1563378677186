/* verr.c: error names and a per-thread detail message. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "verr.h"

static _Thread_local char detail[1024];
static _Thread_local int detail_err;

static const char *const names[V_ERR_COUNT_] = {
	"success",
	"out of memory",
	"input/output error",
	"bad format",
	"bad argument",
	"value out of range",
	"not supported",
	"input ends early",
	"checksum mismatch",
	"network error",
	"device error",
	"not found",
	"interrupted",
	"numerical error (NaN or infinity)",
	"inputs disagree",
	"not implemented yet",
};

const char *
v_strerror(int err)
{
	if (err > 0 || -err >= V_ERR_COUNT_)
		return "unknown error";
	return names[-err];
}

static int
record(int err, int with_errno, const char *fmt, va_list ap)
{
	int saved = errno;
	int n = vsnprintf(detail, sizeof detail, fmt, ap);

	if (n < 0)
		detail[0] = '\0';
	if (with_errno && n >= 0 && (size_t)n < sizeof detail)
		snprintf(detail + n, sizeof detail - n, ": %s", strerror(saved));
	detail_err = err;
	errno = saved;
	return err;
}

int
v_error(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	record(err, 0, fmt, ap);
	va_end(ap);
	return err;
}

int
v_error_errno(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	record(err, 1, fmt, ap);
	va_end(ap);
	return err;
}

const char *
v_errmsg(int err)
{
	if (detail[0] != '\0' && detail_err == err)
		return detail;
	return v_strerror(err);
}

void
v_errclear(void)
{
	detail[0] = '\0';
	detail_err = 0;
}
