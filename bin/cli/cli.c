/* cli.c: shared program behaviour. */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../lib/verr.h"
#include "../../lib/vio.h"
#include "../../lib/vopt.h"
#include "cli.h"

const char *cli_prog = "vesper";
static const char *cli_usage_text = "";

void
cli_init(const char *prog, const char *usage)
{
	cli_prog = prog;
	cli_usage_text = usage;
}

static void
print_usage(FILE *fp)
{
	const char *p = cli_usage_text;
	int first = 1;

	while (*p != '\0') {
		const char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);
		fprintf(fp, "%s%.*s\n", first ? "usage: " : "       ", (int)n, p);
		first = 0;
		p += n;
		if (*p == '\n')
			p++;
	}
}

void
cli_help(void)
{
	print_usage(stdout);
	exit(cli_exit_status(0));
}

void
cli_usage(void)
{
	print_usage(stderr);
	exit(2);
}

void
cli_bad_usage(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", cli_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	cli_usage();
}

void
cli_fatal(int err)
{
	fprintf(stderr, "%s: %s\n", cli_prog, v_errmsg(err));
	v_atomic_cleanup_all();
	exit(1);
}

void
cli_die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", cli_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	v_atomic_cleanup_all();
	exit(1);
}

void
cli_warn(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", cli_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void
cli_not_built(const char *what)
{
	cli_die("%s is not implemented yet", what);
}

long long
cli_int(const char *opt, const char *s, long long min, long long max)
{
	long long v;
	int err = v_parse_int(s, min, max, &v);

	if (err)
		cli_bad_usage("%s: %s", opt, v_errmsg(err));
	return v;
}

double
cli_real(const char *opt, const char *s, double min, double max)
{
	double v;
	int err = v_parse_real(s, min, max, &v);

	if (err)
		cli_bad_usage("%s: %s", opt, v_errmsg(err));
	return v;
}

uint64_t
cli_count(const char *opt, const char *s, uint64_t min, uint64_t max)
{
	uint64_t v;
	int err = v_parse_count(s, min, max, &v);

	if (err)
		cli_bad_usage("%s: %s", opt, v_errmsg(err));
	return v;
}

static void
on_signal(int sig)
{
	v_atomic_cleanup_all();
	signal(sig, SIG_DFL);
	raise(sig);
}

void
cli_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

int
cli_exit_status(int status)
{
	int err = v_close_stdout();

	if (err) {
		fprintf(stderr, "%s: %s\n", cli_prog, v_errmsg(err));
		v_atomic_cleanup_all();
		return status ? status : 1;
	}
	return status;
}
