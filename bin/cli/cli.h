/* cli.h: what every program does the same way: usage and help, messages
 * on stderr prefixed with the program's name, exit codes (0 success, 1 bad
 * input or failed operation, 2 bad usage), checked option numbers, signals
 * that remove half-written outputs, and a checked close of stdout.
 * Program-side only: the library never prints or exits. */
#ifndef VESPER_CLI_H
#define VESPER_CLI_H

#include <stdint.h>

extern const char *cli_prog;

/* usage: the synopsis, one line per form, each starting with the program's
 * name, exactly as in the man page's SYNOPSIS. */
void cli_init(const char *prog, const char *usage);

/* -h: the usage on stdout, exit 0. */
_Noreturn void cli_help(void);
/* The usage on stderr, exit 2. */
_Noreturn void cli_usage(void);
/* "prog: message", then the usage, exit 2. */
_Noreturn void cli_bad_usage(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
/* "prog: <v_errmsg(err)>", exit 1. */
_Noreturn void cli_fatal(int err);
/* "prog: message", exit 1. */
_Noreturn void cli_die(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
void cli_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "prog: message" for a feature an issue has not built yet; exit 1. */
_Noreturn void cli_not_built(const char *what);

/* Option numbers: a bad value is a usage error naming the option. */
long long cli_int(const char *opt, const char *s, long long min, long long max);
double cli_real(const char *opt, const char *s, double min, double max);
uint64_t cli_count(const char *opt, const char *s, uint64_t min, uint64_t max);

/* On SIGINT, SIGTERM and SIGHUP remove temporary outputs, then die of the
 * signal as usual. */
void cli_signals(void);

/* Close stdout, checking for a write error; returns the exit status. */
int cli_exit_status(int status);

#endif
