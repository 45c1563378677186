/* fuzz_docs.c: libFuzzer target for vfetch's text-to-documents splitter.
 * The first byte picks the format and the chunk size; whatever the input,
 * every line written must be a JSON object with string id, source and text
 * (so the escaping and the UTF-8 checks hold), and chunking must not
 * change the result. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "../../lib/fetch_docs.h"
#include "../../lib/verr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *
run(const char *p, size_t n, int format, size_t chunk, int *err, size_t *len)
{
	FILE *f = tmpfile();
	struct docs_splitter s;

	docs_splitter_init(&s, f, format, "fuzz", "src", "id");
	*err = V_OK;
	for (size_t i = 0; i < n && *err == V_OK; i += chunk)
		*err = docs_splitter_feed(&s, p + i, n - i < chunk ? n - i : chunk);
	if (*err == V_OK)
		*err = docs_splitter_end(&s);
	docs_splitter_free(&s);
	*len = (size_t)ftell(f);
	rewind(f);
	char *out = malloc(*len + 1);
	if (fread(out, 1, *len, f) != *len)
		abort();
	out[*len] = '\0';
	fclose(f);
	return out;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	int format = data[0] % 5;
	size_t chunk = 1 + (data[0] >> 3);
	const char *p = (const char *)data + 1;
	size_t n = size - 1, la, lb;
	int ea, eb;
	char *a = run(p, n, format, n ? n : 1, &ea, &la);
	char *b = run(p, n, format, chunk, &eb, &lb);

	if (ea != eb || (ea == V_OK && (la != lb || memcmp(a, b, la) != 0)))
		abort();
	if (ea == V_OK) {
		for (char *line = a; *line != '\0'; ) {
			char *nl = strchr(line, '\n');
			if (nl == NULL)
				abort();
			json_error_t je;
			json_t *o = json_loadb(line, (size_t)(nl - line), JSON_ALLOW_NUL, &je);
			if (!json_is_object(o) || !json_is_string(json_object_get(o, "id")) ||
			    !json_is_string(json_object_get(o, "source")) ||
			    !json_is_string(json_object_get(o, "text")))
				abort();
			json_decref(o);
			line = nl + 1;
		}
	}
	free(a);
	free(b);
	return 0;
}
