/* vjson.c: jansson behind checked getters. */
#include <string.h>

#include "verr.h"
#include "vjson.h"

int
v_json_parse(const char *buf, size_t len, const char *name, long lineno,
    json_t **out)
{
	json_error_t je;
	json_t *v = json_loadb(buf, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);

	if (v == NULL) {
		if (lineno > 0)
			return v_error(V_ERR_FORMAT, "%s:%ld: invalid JSON at column %d: %s",
			    name, lineno, je.column, je.text);
		return v_error(V_ERR_FORMAT, "%s: invalid JSON at line %d column %d: %s",
		    name, je.line, je.column, je.text);
	}
	*out = v;
	return V_OK;
}

static int
member(const json_t *obj, const char *key, json_t **m)
{
	if (!json_is_object(obj))
		return v_error(V_ERR_FORMAT, "not a JSON object");
	*m = json_object_get(obj, key);
	if (*m == NULL)
		return v_error(V_ERR_NOTFOUND, "no \"%s\" member", key);
	return V_OK;
}

int
v_json_str(const json_t *obj, const char *key, const char **s, size_t *len)
{
	json_t *m;
	int err = member(obj, key, &m);

	if (err)
		return err;
	if (!json_is_string(m))
		return v_error(V_ERR_FORMAT, "\"%s\" is not a string", key);
	*s = json_string_value(m);
	if (len != NULL)
		*len = json_string_length(m);
	return V_OK;
}

int
v_json_int(const json_t *obj, const char *key, long long *v)
{
	json_t *m;
	int err = member(obj, key, &m);

	if (err)
		return err;
	if (!json_is_integer(m))
		return v_error(V_ERR_FORMAT, "\"%s\" is not an integer", key);
	*v = json_integer_value(m);
	return V_OK;
}

int
v_json_num(const json_t *obj, const char *key, double *v)
{
	json_t *m;
	int err = member(obj, key, &m);

	if (err)
		return err;
	if (!json_is_number(m))
		return v_error(V_ERR_FORMAT, "\"%s\" is not a number", key);
	*v = json_number_value(m);
	return V_OK;
}

char *
v_json_line(const json_t *v)
{
	return json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
}
