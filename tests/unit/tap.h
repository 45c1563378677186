/* tap.h: a minimal Test Anything Protocol producer for C unit tests.
 * Each test file includes it once; prove reads what it prints. */
#ifndef VESPER_TAP_H
#define VESPER_TAP_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_n, tap_failed;

static void
tap_vok(int cond, const char *fmt, va_list ap)
{
	tap_n++;
	printf("%sok %d - ", cond ? "" : "not ", tap_n);
	vprintf(fmt, ap);
	putchar('\n');
	if (!cond)
		tap_failed++;
	fflush(stdout);
}

static int ok(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3), unused));
static int
ok(int cond, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	tap_vok(cond, fmt, ap);
	va_end(ap);
	return cond;
}

static void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2), unused));
static void
diag(const char *fmt, ...)
{
	va_list ap;
	printf("# ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

/* ok() for integers, printing both values on failure. */
#define is_int(got, want, ...) do { \
	long long g_ = (long long)(got), w_ = (long long)(want); \
	if (!ok(g_ == w_, __VA_ARGS__)) \
		diag("got %lld, want %lld", g_, w_); \
} while (0)

#define is_str(got, want, ...) do { \
	const char *g_ = (got), *w_ = (want); \
	if (!ok(g_ != NULL && strcmp(g_, w_) == 0, __VA_ARGS__)) \
		diag("got \"%s\", want \"%s\"", g_ ? g_ : "(null)", w_); \
} while (0)

/* Relative closeness: |got - want| <= tol * max(1, |want|). */
#define is_near(got, want, tol, ...) do { \
	double g_ = (got), w_ = (want); \
	double s_ = fabs(w_) > 1 ? fabs(w_) : 1; \
	if (!ok(fabs(g_ - w_) <= (tol) * s_, __VA_ARGS__)) \
		diag("got %.9g, want %.9g (tolerance %g)", g_, w_, (double)(tol)); \
} while (0)

static int
done_testing(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}

#endif
