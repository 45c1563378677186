/* safetensors.c: a validating reader (mmap) and an atomic writer. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "bf16.h"
#include "safetensors.h"
#include "verr.h"
#include "vio.h"
#include "vlm_config.h"
#include "vhash.h"

/* Tensors are little-endian in the file and F32 data is copied as it
 * lies, in both directions. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c copies F32 data as it lies: little-endian hosts only"
#endif

static const struct {
	const char *name;
	size_t size;
} dtypes[ST_DTYPE_COUNT_] = {
	[ST_BOOL] = { "BOOL", 1 }, [ST_U8] = { "U8", 1 }, [ST_I8] = { "I8", 1 },
	[ST_I16] = { "I16", 2 }, [ST_U16] = { "U16", 2 },
	[ST_F16] = { "F16", 2 }, [ST_BF16] = { "BF16", 2 },
	[ST_I32] = { "I32", 4 }, [ST_U32] = { "U32", 4 },
	[ST_F32] = { "F32", 4 }, [ST_F64] = { "F64", 8 },
	[ST_I64] = { "I64", 8 }, [ST_U64] = { "U64", 8 },
	[ST_F8_E4M3] = { "F8_E4M3", 1 }, [ST_F8_E5M2] = { "F8_E5M2", 1 },
};

int
st_dtype_parse(const char *s)
{
	for (int i = 0; i < ST_DTYPE_COUNT_; i++)
		if (strcmp(s, dtypes[i].name) == 0)
			return i;
	return -1;
}

const char *
st_dtype_name(int dtype)
{
	return dtype >= 0 && dtype < ST_DTYPE_COUNT_ ? dtypes[dtype].name : "?";
}

size_t
st_dtype_size(int dtype)
{
	return dtype >= 0 && dtype < ST_DTYPE_COUNT_ ? dtypes[dtype].size : 0;
}

/* numel and nbytes of a shape, refusing anything that overflows 64 bits. */
static int
shape_bytes(const int64_t *shape, int ndim, int dtype, uint64_t *numel,
    uint64_t *nbytes)
{
	uint64_t n = 1;

	for (int i = 0; i < ndim; i++) {
		if (shape[i] < 0)
			return -1;
		uint64_t d = (uint64_t)shape[i];
		if (d != 0 && n > UINT64_MAX / d)
			return -1;
		n *= d;
	}
	uint64_t sz = st_dtype_size(dtype);
	if (sz == 0 || (n != 0 && n > UINT64_MAX / sz))
		return -1;
	*numel = n;
	*nbytes = n * sz;
	return 0;
}

void
st_close(struct st_file *f)
{
	if (f->mapped)
		v_unmap_file(f->base, f->size);
	if (f->priv_ != NULL)
		json_decref((json_t *)f->priv_);
	free(f->t);
	free(f->meta);
	free(f->path);
	memset(f, 0, sizeof *f);
}

static int
cmp_offset(const void *a, const void *b)
{
	const struct st_tensor *x = *(const struct st_tensor *const *)a;
	const struct st_tensor *y = *(const struct st_tensor *const *)b;

	if (x->offset != y->offset)
		return x->offset < y->offset ? -1 : 1;
	/* Empty tensors share an offset with the next one; keep them first
	 * so that the tiling check sees [b,b) then [b,e). */
	if (x->nbytes != y->nbytes)
		return x->nbytes < y->nbytes ? -1 : 1;
	return 0;
}

static int
parse_tensor(const char *path, const char *name, json_t *v,
    struct st_tensor *t, uint64_t data_len)
{
	json_t *jd, *js, *jo;

	if (!json_is_object(v))
		return v_error(V_ERR_FORMAT, "%s: tensor \"%s\" is not a JSON object",
		    path, name);
	jd = json_object_get(v, "dtype");
	js = json_object_get(v, "shape");
	jo = json_object_get(v, "data_offsets");
	if (!json_is_string(jd) || !json_is_array(js) || !json_is_array(jo))
		return v_error(V_ERR_FORMAT,
		    "%s: tensor \"%s\" needs a string dtype, a shape and data_offsets",
		    path, name);
	t->name = name;
	t->dtype = st_dtype_parse(json_string_value(jd));
	if (t->dtype < 0)
		return v_error(V_ERR_UNSUPPORTED, "%s: tensor \"%s\": unknown dtype \"%.32s\"",
		    path, name, json_string_value(jd));
	size_t nd = json_array_size(js);
	if (nd > ST_MAX_DIMS)
		return v_error(V_ERR_UNSUPPORTED, "%s: tensor \"%s\" has %zu dimensions (at most %d)",
		    path, name, nd, ST_MAX_DIMS);
	t->ndim = (int)nd;
	for (size_t i = 0; i < nd; i++) {
		json_t *d = json_array_get(js, i);
		if (!json_is_integer(d) || json_integer_value(d) < 0)
			return v_error(V_ERR_FORMAT,
			    "%s: tensor \"%s\": shape[%zu] is not a non-negative integer",
			    path, name, i);
		t->shape[i] = (int64_t)json_integer_value(d);
	}
	if (shape_bytes(t->shape, t->ndim, t->dtype, &t->numel, &t->nbytes) != 0)
		return v_error(V_ERR_RANGE, "%s: tensor \"%s\": shape too large", path, name);
	if (json_array_size(jo) != 2 || !json_is_integer(json_array_get(jo, 0)) ||
	    !json_is_integer(json_array_get(jo, 1)))
		return v_error(V_ERR_FORMAT, "%s: tensor \"%s\": data_offsets is not [begin, end]",
		    path, name);
	json_int_t b = json_integer_value(json_array_get(jo, 0));
	json_int_t e = json_integer_value(json_array_get(jo, 1));
	if (b < 0 || e < b)
		return v_error(V_ERR_FORMAT, "%s: tensor \"%s\": data_offsets [%lld, %lld] is not a range",
		    path, name, (long long)b, (long long)e);
	if ((uint64_t)e > data_len)
		return v_error(V_ERR_TRUNCATED,
		    "%s: tensor \"%s\": data_offsets end %lld is past the data (%llu bytes)",
		    path, name, (long long)e, (unsigned long long)data_len);
	if ((uint64_t)(e - b) != t->nbytes)
		return v_error(V_ERR_FORMAT,
		    "%s: tensor \"%s\": shape and dtype make %llu bytes but data_offsets hold %lld",
		    path, name, (unsigned long long)t->nbytes, (long long)(e - b));
	t->offset = (uint64_t)b;
	return V_OK;
}

static int
parse(struct st_file *f)
{
	const char *path = f->path;
	json_error_t je;
	json_t *h, *v;
	const char *key;
	size_t nt = 0, nm = 0, i;

	if (f->size < 8)
		return v_error(V_ERR_TRUNCATED, "%s: %zu bytes, too short for a safetensors header",
		    path, f->size);
	uint64_t hlen = v_get_u64(f->base);
	if (hlen > f->size - 8)
		return v_error(V_ERR_TRUNCATED,
		    "%s: header length %llu is beyond the end of the file (%zu bytes)",
		    path, (unsigned long long)hlen, f->size);
	if (hlen > ST_MAX_HEADER)
		return v_error(V_ERR_RANGE, "%s: header length %llu is over the %llu-byte limit",
		    path, (unsigned long long)hlen, (unsigned long long)ST_MAX_HEADER);
	if (hlen < 2 || f->base[8] != '{')
		return v_error(V_ERR_FORMAT, "%s: the header is not a JSON object", path);
	h = json_loadb((const char *)f->base + 8, (size_t)hlen,
	    JSON_REJECT_DUPLICATES, &je);
	if (h == NULL)
		return v_error(V_ERR_FORMAT, "%s: header is not valid JSON (column %d): %s",
		    path, je.column, je.text);
	f->priv_ = h;
	if (!json_is_object(h))
		return v_error(V_ERR_FORMAT, "%s: the header is not a JSON object", path);

	json_object_foreach(h, key, v) {
		if (strcmp(key, "__metadata__") == 0) {
			if (!json_is_object(v))
				return v_error(V_ERR_FORMAT, "%s: __metadata__ is not an object", path);
			nm = json_object_size(v);
		} else {
			nt++;
		}
	}
	f->t = calloc(nt ? nt : 1, sizeof *f->t);
	f->meta = calloc(nm ? nm : 1, sizeof *f->meta);
	struct st_tensor **order = calloc(nt ? nt : 1, sizeof *order);
	if (f->t == NULL || f->meta == NULL || order == NULL) {
		free(order);
		return v_error(V_ERR_NOMEM, "%s: out of memory for %zu tensors", path, nt);
	}

	uint64_t data_start = 8 + hlen, data_len = f->size - data_start;
	f->data_start = data_start;
	int err = V_OK;
	json_object_foreach(h, key, v) {
		if (strcmp(key, "__metadata__") == 0) {
			const char *mk;
			json_t *mv;
			json_object_foreach(v, mk, mv) {
				if (!json_is_string(mv)) {
					err = v_error(V_ERR_FORMAT,
					    "%s: __metadata__ \"%s\" is not a string", path, mk);
					goto out;
				}
				f->meta[f->n_meta].key = mk;
				f->meta[f->n_meta].value = json_string_value(mv);
				f->n_meta++;
			}
			continue;
		}
		if (key[0] == '\0') {
			err = v_error(V_ERR_FORMAT, "%s: a tensor has an empty name", path);
			goto out;
		}
		struct st_tensor *t = &f->t[f->n];
		if ((err = parse_tensor(path, key, v, t, data_len)) != V_OK)
			goto out;
		t->offset += data_start;
		t->data = f->base + t->offset;
		order[f->n++] = t;
	}

	/* The tensors must tile the data: sorted by offset, each starts where
	 * the previous ended, and the last ends at the end of the file. */
	qsort(order, f->n, sizeof *order, cmp_offset);
	uint64_t at = data_start;
	for (i = 0; i < f->n; i++) {
		if (order[i]->offset < at) {
			err = v_error(V_ERR_FORMAT, "%s: tensors \"%s\" and \"%s\" overlap",
			    path, order[i - 1]->name, order[i]->name);
			goto out;
		}
		if (order[i]->offset > at) {
			err = v_error(V_ERR_FORMAT,
			    "%s: %llu bytes before tensor \"%s\" belong to no tensor",
			    path, (unsigned long long)(order[i]->offset - at), order[i]->name);
			goto out;
		}
		at += order[i]->nbytes;
	}
	if (at != f->size)
		err = v_error(V_ERR_FORMAT, "%s: %llu bytes after the last tensor belong to no tensor",
		    path, (unsigned long long)(f->size - at));
out:
	free(order);
	return err;
}

int
st_open_mem(struct st_file *f, const void *buf, size_t len, const char *name)
{
	memset(f, 0, sizeof *f);
	f->path = strdup(name);
	if (f->path == NULL)
		return v_error(V_ERR_NOMEM, "out of memory");
	f->base = buf;
	f->size = len;
	int err = parse(f);
	if (err)
		st_close(f);
	return err;
}

int
st_open(struct st_file *f, const char *path)
{
	int err;

	memset(f, 0, sizeof *f);
	if ((err = v_map_file(path, &f->base, &f->size)))
		return err;
	f->mapped = f->base != NULL;
	f->path = strdup(path);
	if (f->path == NULL) {
		st_close(f);
		return v_error(V_ERR_NOMEM, "out of memory");
	}
	err = parse(f);
	if (err)
		st_close(f);
	return err;
}

const struct st_tensor *
st_find(const struct st_file *f, const char *name)
{
	for (size_t i = 0; i < f->n; i++)
		if (strcmp(f->t[i].name, name) == 0)
			return &f->t[i];
	return NULL;
}

const char *
st_meta(const struct st_file *f, const char *key)
{
	for (size_t i = 0; i < f->n_meta; i++)
		if (strcmp(f->meta[i].key, key) == 0)
			return f->meta[i].value;
	return NULL;
}

int
st_tensor_f32(const struct st_tensor *t, float *out)
{
	const unsigned char *p = t->data;
	uint64_t n = t->numel;

	switch (t->dtype) {
	case ST_F32:
		memcpy(out, p, n * 4);
		return V_OK;
	case ST_BF16:
		for (uint64_t i = 0; i < n; i++)
			out[i] = v_bf16_to_f32(v_get_u16(p + 2 * i));
		return V_OK;
	case ST_F16:
		for (uint64_t i = 0; i < n; i++)
			out[i] = v_f16_to_f32(v_get_u16(p + 2 * i));
		return V_OK;
	case ST_F64:
		for (uint64_t i = 0; i < n; i++) {
			double d;
			memcpy(&d, p + 8 * i, 8);
			out[i] = (float)d;
		}
		return V_OK;
	default:
		return v_error(V_ERR_UNSUPPORTED, "tensor \"%s\": %s is not a float dtype",
		    t->name, st_dtype_name(t->dtype));
	}
}

/* Write and hash (when md is not NULL). */
static int
emit(FILE *fp, EVP_MD_CTX *md, const void *buf, size_t n, const char *path)
{
	if (md != NULL && n > 0 && EVP_DigestUpdate(md, buf, n) != 1)
		return v_error(V_ERR_NOMEM, "%s: SHA-256 failed", path);
	return v_write_all(fp, buf, n, path);
}

/* Write n floats converted to dtype, a buffer at a time. */
static int
write_converted(FILE *fp, EVP_MD_CTX *md, const float *x, uint64_t n,
    int dtype, const char *path)
{
	unsigned char buf[8192];
	size_t per = dtype == ST_F32 ? 4 : 2, chunk = sizeof buf / per;

	for (uint64_t i = 0; i < n; i += chunk) {
		size_t m = n - i < chunk ? (size_t)(n - i) : chunk;
		for (size_t j = 0; j < m; j++) {
			float v = x[i + j];
			if (dtype == ST_F32)
				memcpy(buf + 4 * j, &v, 4);
			else if (dtype == ST_BF16)
				v_put_u16(buf + 2 * j, v_f32_to_bf16(v));
			else
				v_put_u16(buf + 2 * j, v_f32_to_f16(v));
		}
		int err = emit(fp, md, buf, m * per, path);
		if (err)
			return err;
	}
	return V_OK;
}

int
st_data_sha256(const struct st_file *f, char hex[65])
{
	unsigned char d[32];
	unsigned int dn = 0;

	if (EVP_Digest(f->base + f->data_start, f->size - f->data_start, d, &dn,
	    EVP_sha256(), NULL) != 1)
		return v_error(V_ERR_NOMEM, "%s: SHA-256 failed", f->path);
	v_hex_encode(d, 32, hex);
	return V_OK;
}

int
st_write(const char *path, const struct st_wtensor *t, size_t n,
    const struct st_kv *meta, size_t n_meta)
{
	json_t *h = json_object();
	uint64_t off = 0, numel, nbytes;
	int err = V_OK;

	int hashed = strcmp(path, "-") != 0;
	static const char zero_hex[] =
	    "0000000000000000000000000000000000000000000000000000000000000000";
	EVP_MD_CTX *md = NULL;

	if (h == NULL)
		return v_error(V_ERR_NOMEM, "out of memory");
	if (n_meta > 0 || hashed) {
		json_t *m = json_object();
		if (m == NULL || json_object_set_new(h, "__metadata__", m) != 0) {
			err = v_error(V_ERR_NOMEM, "out of memory");
			goto out;
		}
		if (hashed && json_object_set_new(m, ST_SHA256_KEY, json_string(zero_hex)) != 0) {
			err = v_error(V_ERR_NOMEM, "out of memory");
			goto out;
		}
		for (size_t i = 0; i < n_meta; i++)
			if (strcmp(meta[i].key, ST_SHA256_KEY) != 0 &&
			    json_object_set_new(m, meta[i].key, json_string(meta[i].value)) != 0) {
				err = v_error(V_ERR_ARG, "%s: metadata \"%s\" is not UTF-8",
				    path, meta[i].key);
				goto out;
			}
	}
	for (size_t i = 0; i < n; i++) {
		const struct st_wtensor *w = &t[i];
		if (w->name == NULL || w->name[0] == '\0' ||
		    strcmp(w->name, "__metadata__") == 0) {
			err = v_error(V_ERR_ARG, "%s: tensor %zu has a bad name", path, i);
			goto out;
		}
		if (json_object_get(h, w->name) != NULL) {
			err = v_error(V_ERR_ARG, "%s: two tensors are called \"%s\"", path, w->name);
			goto out;
		}
		if (w->ndim < 0 || w->ndim > ST_MAX_DIMS ||
		    shape_bytes(w->shape, w->ndim, w->dtype, &numel, &nbytes) != 0) {
			err = v_error(V_ERR_ARG, "%s: tensor \"%s\": bad dtype or shape", path, w->name);
			goto out;
		}
		if (w->f32 != NULL && w->dtype != ST_F32 && w->dtype != ST_BF16 &&
		    w->dtype != ST_F16) {
			err = v_error(V_ERR_ARG, "%s: tensor \"%s\": cannot convert floats to %s",
			    path, w->name, st_dtype_name(w->dtype));
			goto out;
		}
		if (w->f32 == NULL && w->data == NULL && nbytes > 0) {
			err = v_error(V_ERR_ARG, "%s: tensor \"%s\" has no data", path, w->name);
			goto out;
		}
		json_t *shape = json_array();
		for (int d = 0; d < w->ndim; d++)
			json_array_append_new(shape, json_integer((json_int_t)w->shape[d]));
		json_t *e = json_pack("{s:s, s:o, s:[I, I]}", "dtype", st_dtype_name(w->dtype),
		    "shape", shape, "data_offsets", (json_int_t)off, (json_int_t)(off + nbytes));
		if (e == NULL || json_object_set_new(h, w->name, e) != 0) {
			err = v_error(V_ERR_ARG, "%s: tensor name \"%s\" is not UTF-8", path, w->name);
			goto out;
		}
		off += nbytes;
	}

	char *js = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
	if (js == NULL) {
		err = v_error(V_ERR_NOMEM, "out of memory");
		goto out;
	}
	size_t jl = strlen(js), padded = (jl + 7) / 8 * 8;
	unsigned char len8[8];
	v_put_u64(len8, padded);

	/* Where the hash goes once the data has been through it. */
	long hash_at = 0;
	if (hashed) {
		char pat[128];
		snprintf(pat, sizeof pat, "\"%s\":\"%s\"", ST_SHA256_KEY, zero_hex);
		char *p = strstr(js, pat);
		hash_at = p ? (long)(8 + (p - js) + strlen(ST_SHA256_KEY) + 4) : 0;
		md = EVP_MD_CTX_new();
		if (p == NULL || md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
			free(js);
			err = v_error(V_ERR_NOMEM, "%s: cannot set up SHA-256", path);
			goto out;
		}
	}

	struct v_atomic a;
	if ((err = v_atomic_open(&a, path)) != V_OK) {
		free(js);
		goto out;
	}
	err = v_write_all(a.fp, len8, 8, path);
	if (!err)
		err = v_write_all(a.fp, js, jl, path);
	if (!err)
		err = v_write_all(a.fp, "       ", padded - jl, path);
	free(js);
	for (size_t i = 0; i < n && !err; i++) {
		const struct st_wtensor *w = &t[i];
		shape_bytes(w->shape, w->ndim, w->dtype, &numel, &nbytes);
		if (w->f32 != NULL)
			err = write_converted(a.fp, md, w->f32, numel, w->dtype, path);
		else if (nbytes > 0)
			err = emit(a.fp, md, w->data, nbytes, path);
	}
	if (!err && hashed) {
		unsigned char d[32];
		unsigned int dn = 0;
		char hex[65];
		if (EVP_DigestFinal_ex(md, d, &dn) != 1)
			err = v_error(V_ERR_NOMEM, "%s: SHA-256 failed", path);
		v_hex_encode(d, 32, hex);
		if (!err && (fseek(a.fp, hash_at, SEEK_SET) != 0 ||
		    fwrite(hex, 1, 64, a.fp) != 64))
			err = v_error_errno(V_ERR_IO, "%s: cannot record the hash", path);
	}
	if (!err)
		err = v_atomic_commit(&a);
	if (err)
		v_atomic_abort(&a);
out:
	EVP_MD_CTX_free(md);
	json_decref(h);
	return err;
}

int
st_open_checkpoint(struct st_file *f, const char *path)
{
	struct stat sb;

	if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
		/* A step directory, or a run's directory whose latest link
		 * names the newest step. */
		size_t n = strlen(path) + sizeof "/latest/model.safetensors";
		char *p = malloc(n);
		if (p == NULL)
			return v_error(V_ERR_NOMEM, "out of memory");
		snprintf(p, n, "%s/model.safetensors", path);
		if (stat(p, &sb) != 0) {
			snprintf(p, n, "%s/latest/model.safetensors", path);
			if (stat(p, &sb) != 0)
				snprintf(p, n, "%s/model.safetensors", path);
		}
		int err = st_open(f, p);
		free(p);
		return err;
	}
	return st_open(f, path);
}

int
st_vesper_config(const struct st_file *f, struct vlm_config *c)
{
	const char *js = st_meta(f, "vesper.config");

	if (js == NULL)
		return v_error(V_ERR_NOTFOUND,
		    "%s: no vesper.config in the metadata (not a Vesper checkpoint?)", f->path);
	int err = vlm_config_from_json(js, c);
	if (err == V_OK)
		err = vlm_config_check(c);
	if (err) {
		char why[512];	/* v_errmsg's buffer is the one v_error writes */
		snprintf(why, sizeof why, "%s", v_errmsg(err));
		return v_error(err, "%s: vesper.config: %s", f->path, why);
	}
	return V_OK;
}

int
st_checkpoint_output(const char *output, char **path)
{
	size_t n = strlen(output);
	int err;

	if (strcmp(output, "-") == 0 ||
	    (n >= 12 && strcmp(output + n - 12, ".safetensors") == 0)) {
		*path = strdup(output);
	} else {
		if ((err = v_mkdir_p(output)) != V_OK)
			return err;
		*path = malloc(n + sizeof "/model.safetensors");
		if (*path != NULL)
			snprintf(*path, n + sizeof "/model.safetensors",
			    "%s/model.safetensors", output);
	}
	return *path == NULL ? v_error(V_ERR_NOMEM, "out of memory") : V_OK;
}
