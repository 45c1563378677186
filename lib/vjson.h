/* vjson.h: a thin layer over jansson (Debian's libjansson).
 *
 * Parsing turns jansson's error into a v_error detail with the line and
 * column; the getters check types so that a document with a wrong field
 * type is an error, not a crash. */
#ifndef VESPER_VJSON_H
#define VESPER_VJSON_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

/* Parse buf[0..len) as one JSON value; name and lineno (0: none) locate it
 * in the detail of an error. */
int v_json_parse(const char *buf, size_t len, const char *name, long lineno,
    json_t **out);

/* The string member key of obj: V_ERR_NOTFOUND when absent,
 * V_ERR_FORMAT when not a string.  *s stays owned by obj. */
int v_json_str(const json_t *obj, const char *key, const char **s, size_t *len);
/* An integer member. */
int v_json_int(const json_t *obj, const char *key, long long *v);
/* A number member (integer or real). */
int v_json_num(const json_t *obj, const char *key, double *v);

/* A compact, one-line serialisation (malloc'ed), keys in insertion order. */
char *v_json_line(const json_t *v);

#endif
