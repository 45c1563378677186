/* vopt.h: numbers from the command line, checked when parsed.
 *
 * Each parser accepts the whole string or nothing, checks the range, and
 * records a detail naming the value and the range it must lie in. */
#ifndef VESPER_VOPT_H
#define VESPER_VOPT_H

#include <stdint.h>

/* A decimal integer in [min, max]. */
int v_parse_int(const char *s, long long min, long long max, long long *out);
/* A finite real number in [min, max]. */
int v_parse_real(const char *s, double min, double max, double *out);
/* A count with an optional suffix k, M, G, T (powers of 1000) or
 * Ki, Mi, Gi, Ti (powers of 1024): "64M", "1Gi", "4096". */
int v_parse_count(const char *s, uint64_t min, uint64_t max, uint64_t *out);

#endif
