/* vopt.c: strict number parsing for options. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "verr.h"
#include "vopt.h"

int
v_parse_int(const char *s, long long min, long long max, long long *out)
{
	char *end;
	long long v;

	errno = 0;
	if (s == NULL || *s == '\0')
		return v_error(V_ERR_ARG, "empty number");
	v = strtoll(s, &end, 10);
	if (*end != '\0' || end == s)
		return v_error(V_ERR_ARG, "'%s' is not a whole number", s);
	if (errno == ERANGE || v < min || v > max)
		return v_error(V_ERR_RANGE, "'%s' is out of range [%lld, %lld]",
		    s, min, max);
	*out = v;
	return V_OK;
}

int
v_parse_real(const char *s, double min, double max, double *out)
{
	char *end;
	double v;

	errno = 0;
	if (s == NULL || *s == '\0')
		return v_error(V_ERR_ARG, "empty number");
	v = strtod(s, &end);
	if (*end != '\0' || end == s || !isfinite(v))
		return v_error(V_ERR_ARG, "'%s' is not a number", s);
	if (errno == ERANGE || v < min || v > max)
		return v_error(V_ERR_RANGE, "'%s' is out of range [%g, %g]",
		    s, min, max);
	*out = v;
	return V_OK;
}

int
v_parse_count(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;
	uint64_t mul = 1;

	errno = 0;
	if (s == NULL || *s == '\0')
		return v_error(V_ERR_ARG, "empty number");
	if (*s == '-' || *s == '+')
		return v_error(V_ERR_ARG, "'%s' is not a count", s);
	v = strtoull(s, &end, 10);
	if (end == s)
		return v_error(V_ERR_ARG, "'%s' is not a count", s);
	if (*end != '\0') {
		static const char sfx[] = "kMGT";
		const char *k = strchr(sfx, end[0]);
		if (k == NULL && end[0] == 'K')
			k = sfx;
		if (k == NULL)
			return v_error(V_ERR_ARG, "'%s': unknown suffix '%s'", s, end);
		int binary = end[1] == 'i';
		if (end[1 + binary] != '\0')
			return v_error(V_ERR_ARG, "'%s': unknown suffix '%s'", s, end);
		for (long i = 0; i <= k - sfx; i++)
			mul *= binary ? 1024 : 1000;
	}
	if (errno == ERANGE || (v != 0 && mul > UINT64_MAX / v))
		return v_error(V_ERR_RANGE, "'%s' is too large", s);
	v *= mul;
	if (v < min || v > max)
		return v_error(V_ERR_RANGE, "'%s' is out of range [%llu, %llu]",
		    s, (unsigned long long)min, (unsigned long long)max);
	*out = v;
	return V_OK;
}
