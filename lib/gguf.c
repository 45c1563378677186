/* gguf.c: a streaming GGUF v3 writer and a checking reader. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"
#include "verr.h"
#include "vio.h"

/* Block size and bytes per block of the ggml types (ggml.c's type table). */
static const struct {
	uint32_t type;
	const char *name;
	uint32_t block, bytes;
} types[] = {
	{ 0, "F32", 1, 4 }, { 1, "F16", 1, 2 }, { 2, "Q4_0", 32, 18 },
	{ 3, "Q4_1", 32, 20 }, { 6, "Q5_0", 32, 22 }, { 7, "Q5_1", 32, 24 },
	{ 8, "Q8_0", 32, 34 }, { 9, "Q8_1", 32, 36 }, { 10, "Q2_K", 256, 84 },
	{ 11, "Q3_K", 256, 110 }, { 12, "Q4_K", 256, 144 },
	{ 13, "Q5_K", 256, 176 }, { 14, "Q6_K", 256, 210 },
	{ 15, "Q8_K", 256, 292 }, { 24, "I8", 1, 1 }, { 25, "I16", 1, 2 },
	{ 26, "I32", 1, 4 }, { 27, "I64", 1, 8 }, { 28, "F64", 1, 8 },
	{ 30, "BF16", 1, 2 },
};

static int
type_index(uint32_t type)
{
	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
		if (types[i].type == type)
			return (int)i;
	return -1;
}

uint64_t
gguf_type_bytes(uint32_t type, uint64_t n)
{
	int i = type_index(type);

	if (i < 0 || n % types[i].block != 0)
		return 0;
	uint64_t blocks = n / types[i].block;
	if (blocks > UINT64_MAX / types[i].bytes)
		return 0;
	return blocks * types[i].bytes;
}

const char *
gguf_type_name(uint32_t type)
{
	int i = type_index(type);
	return i < 0 ? "?" : types[i].name;
}

/* Scalar value sizes; 0 for STRING and ARRAY. */
static const uint8_t vsize[GGUF_VTYPE_COUNT_] = {
	[GGUF_U8] = 1, [GGUF_I8] = 1, [GGUF_U16] = 2, [GGUF_I16] = 2,
	[GGUF_U32] = 4, [GGUF_I32] = 4, [GGUF_F32] = 4, [GGUF_BOOL] = 1,
	[GGUF_U64] = 8, [GGUF_I64] = 8, [GGUF_F64] = 8,
};

/* ---- writer ---- */

void
gguf_w_init(struct gguf_writer *w)
{
	memset(w, 0, sizeof *w);
}

static void
put(struct gguf_writer *w, const void *p, size_t n)
{
	if (w->err)
		return;
	if (w->kv_len + n > w->kv_cap) {
		size_t cap = w->kv_cap ? w->kv_cap : 4096;
		while (cap < w->kv_len + n)
			cap *= 2;
		unsigned char *b = realloc(w->kv, cap);
		if (b == NULL) {
			w->err = v_error(V_ERR_NOMEM, "out of memory for GGUF metadata");
			return;
		}
		w->kv = b;
		w->kv_cap = cap;
	}
	memcpy(w->kv + w->kv_len, p, n);
	w->kv_len += n;
}

static void
put_u32(struct gguf_writer *w, uint32_t v)
{
	unsigned char b[4];
	v_put_u32(b, v);
	put(w, b, 4);
}

static void
put_u64(struct gguf_writer *w, uint64_t v)
{
	unsigned char b[8];
	v_put_u64(b, v);
	put(w, b, 8);
}

static void
put_str(struct gguf_writer *w, const char *s, size_t n)
{
	put_u64(w, n);
	put(w, s, n);
}

static void
key(struct gguf_writer *w, const char *k, uint32_t type)
{
	put_str(w, k, strlen(k));
	put_u32(w, type);
	w->n_kv++;
}

void
gguf_w_str(struct gguf_writer *w, const char *k, const char *v)
{
	key(w, k, GGUF_STRING);
	put_str(w, v, strlen(v));
}

void
gguf_w_u32(struct gguf_writer *w, const char *k, uint32_t v)
{
	key(w, k, GGUF_U32);
	put_u32(w, v);
}

void
gguf_w_i32(struct gguf_writer *w, const char *k, int32_t v)
{
	key(w, k, GGUF_I32);
	put_u32(w, (uint32_t)v);
}

void
gguf_w_f32(struct gguf_writer *w, const char *k, float v)
{
	uint32_t u;
	memcpy(&u, &v, 4);
	key(w, k, GGUF_F32);
	put_u32(w, u);
}

void
gguf_w_bool(struct gguf_writer *w, const char *k, int v)
{
	unsigned char b = v != 0;
	key(w, k, GGUF_BOOL);
	put(w, &b, 1);
}

void
gguf_w_arr_str(struct gguf_writer *w, const char *k, const char *const *v,
    const size_t *len, size_t n)
{
	key(w, k, GGUF_ARRAY);
	put_u32(w, GGUF_STRING);
	put_u64(w, n);
	for (size_t i = 0; i < n; i++)
		put_str(w, v[i], len != NULL ? len[i] : strlen(v[i]));
}

void
gguf_w_arr_i32(struct gguf_writer *w, const char *k, const int32_t *v, size_t n)
{
	key(w, k, GGUF_ARRAY);
	put_u32(w, GGUF_I32);
	put_u64(w, n);
	for (size_t i = 0; i < n; i++)
		put_u32(w, (uint32_t)v[i]);
}

static uint64_t
align_up(uint64_t x, uint64_t a)
{
	return (x + a - 1) / a * a;
}

void
gguf_w_tensor(struct gguf_writer *w, const char *name, uint32_t type,
    uint32_t ndim, const uint64_t *ne)
{
	uint64_t n = 1;

	if (w->err)
		return;
	if (ndim < 1 || ndim > GGUF_MAX_DIMS) {
		w->err = v_error(V_ERR_ARG, "GGUF tensor %s: %u dimensions", name, ndim);
		return;
	}
	for (uint32_t d = 0; d < ndim; d++)
		n *= ne[d];
	uint64_t nb = gguf_type_bytes(type, n);
	if (nb == 0 && n != 0) {
		w->err = v_error(V_ERR_ARG, "GGUF tensor %s: %llu elements do not fill %s blocks",
		    name, (unsigned long long)n, gguf_type_name(type));
		return;
	}
	if (w->n_t == w->cap_t) {
		size_t cap = w->cap_t ? 2 * w->cap_t : 64;
		struct gguf_wtensor *t = realloc(w->t, cap * sizeof *t);
		if (t == NULL) {
			w->err = v_error(V_ERR_NOMEM, "out of memory");
			return;
		}
		w->t = t;
		w->cap_t = cap;
	}
	struct gguf_wtensor *t = &w->t[w->n_t];
	memset(t, 0, sizeof *t);
	t->name = strdup(name);
	if (t->name == NULL) {
		w->err = v_error(V_ERR_NOMEM, "out of memory");
		return;
	}
	t->ndim = ndim;
	t->type = type;
	memcpy(t->ne, ne, ndim * sizeof *ne);
	t->offset = w->data_size;
	t->nbytes = nb;
	w->data_size = align_up(w->data_size + nb, GGUF_DEFAULT_ALIGN);
	w->n_t++;
}

static const unsigned char zeros[GGUF_DEFAULT_ALIGN];

int
gguf_w_begin(struct gguf_writer *w, const char *path)
{
	unsigned char hdr[24];
	int err;

	if (w->err)
		return w->err;
	/* The tensor infos follow the key/values in the same buffer. */
	size_t kv_end = w->kv_len;
	for (size_t i = 0; i < w->n_t; i++) {
		struct gguf_wtensor *t = &w->t[i];
		put_str(w, t->name, strlen(t->name));
		put_u32(w, t->ndim);
		for (uint32_t d = 0; d < t->ndim; d++)
			put_u64(w, t->ne[d]);
		put_u32(w, t->type);
		put_u64(w, t->offset);
	}
	if (w->err)
		return w->err;
	memcpy(hdr, "GGUF", 4);
	v_put_u32(hdr + 4, 3);
	v_put_u64(hdr + 8, w->n_t);
	v_put_u64(hdr + 16, w->n_kv);
	if ((err = v_atomic_open(&w->a, path)) != V_OK)
		return err;
	w->open = 1;
	w->path = strdup(path);
	if (w->path == NULL)
		return v_error(V_ERR_NOMEM, "out of memory");
	uint64_t head = 24 + w->kv_len;
	err = v_write_all(w->a.fp, hdr, 24, path);
	if (!err)
		err = v_write_all(w->a.fp, w->kv, w->kv_len, path);
	if (!err)
		err = v_write_all(w->a.fp, zeros, align_up(head, GGUF_DEFAULT_ALIGN) - head, path);
	w->kv_len = kv_end;
	return err;
}

int
gguf_w_data(struct gguf_writer *w, const void *buf, size_t n)
{
	if (!w->open || w->next >= w->n_t)
		return v_error(V_ERR_ARG, "GGUF: data for no declared tensor");
	struct gguf_wtensor *t = &w->t[w->next];
	if (n != t->nbytes)
		return v_error(V_ERR_ARG, "GGUF tensor %s: %zu bytes given, %llu declared",
		    t->name, n, (unsigned long long)t->nbytes);
	int err = v_write_all(w->a.fp, buf, n, w->path);
	uint64_t end = w->written + n, pad = align_up(end, GGUF_DEFAULT_ALIGN) - end;
	if (!err)
		err = v_write_all(w->a.fp, zeros, pad, w->path);
	w->written = end + pad;
	w->next++;
	return err;
}

int
gguf_w_commit(struct gguf_writer *w)
{
	if (!w->open)
		return v_error(V_ERR_ARG, "GGUF: commit before begin");
	if (w->next != w->n_t)
		return v_error(V_ERR_ARG, "%s: %zu of %zu tensors written", w->path,
		    w->next, w->n_t);
	int err = v_atomic_commit(&w->a);
	w->open = 0;
	return err;
}

void
gguf_w_free(struct gguf_writer *w)
{
	if (w->open)
		v_atomic_abort(&w->a);
	for (size_t i = 0; i < w->n_t; i++)
		free(w->t[i].name);
	free(w->t);
	free(w->kv);
	free(w->path);
	memset(w, 0, sizeof *w);
}

/* ---- reader ---- */

struct cur {
	const unsigned char *p;
	size_t left;
	const char *path;
};

static int
need(struct cur *c, uint64_t n, const char *what)
{
	if (n > c->left)
		return v_error(V_ERR_TRUNCATED, "%s: the file ends inside %s", c->path, what);
	return V_OK;
}

static int
get_u32(struct cur *c, uint32_t *v, const char *what)
{
	int err = need(c, 4, what);
	if (err)
		return err;
	*v = v_get_u32(c->p);
	c->p += 4;
	c->left -= 4;
	return V_OK;
}

static int
get_u64(struct cur *c, uint64_t *v, const char *what)
{
	int err = need(c, 8, what);
	if (err)
		return err;
	*v = v_get_u64(c->p);
	c->p += 8;
	c->left -= 8;
	return V_OK;
}

/* A string as a malloc'ed, NUL-terminated copy; an embedded NUL is refused
 * because every name is later used as a C string. */
static int
get_str(struct cur *c, char **s, const char *what)
{
	uint64_t n;
	int err = get_u64(c, &n, what);

	if (err)
		return err;
	if ((err = need(c, n, what)) != V_OK)
		return err;
	if (memchr(c->p, 0, n) != NULL)
		return v_error(V_ERR_FORMAT, "%s: %s holds a NUL byte", c->path, what);
	*s = malloc(n + 1);
	if (*s == NULL)
		return v_error(V_ERR_NOMEM, "out of memory");
	memcpy(*s, c->p, n);
	(*s)[n] = '\0';
	c->p += n;
	c->left -= n;
	return V_OK;
}

/* Skip a value of type t (not an array of arrays), checking its length. */
static int
skip_value(struct cur *c, uint32_t t, const char *k)
{
	if (t >= GGUF_VTYPE_COUNT_)
		return v_error(V_ERR_FORMAT, "%s: key %s: unknown value type %u", c->path, k, t);
	if (t == GGUF_STRING) {
		uint64_t n;
		int err = get_u64(c, &n, "a string value");
		if (!err)
			err = need(c, n, "a string value");
		if (err)
			return err;
		c->p += n;
		c->left -= n;
		return V_OK;
	}
	int err = need(c, vsize[t], "a value");
	if (err)
		return err;
	c->p += vsize[t];
	c->left -= vsize[t];
	return V_OK;
}

void
gguf_close(struct gguf_file *f)
{
	for (size_t i = 0; i < f->n_kv; i++) {
		free(f->kv[i].key);
		free(f->kv[i].str);
	}
	for (size_t i = 0; i < f->n_t; i++)
		free(f->t[i].name);
	free(f->kv);
	free(f->t);
	if (f->mapped)
		v_unmap_file(f->base, f->size);
	free(f->path);
	memset(f, 0, sizeof *f);
}

static int
cmp_off(const void *a, const void *b)
{
	const struct gguf_tensor *x = *(const struct gguf_tensor *const *)a;
	const struct gguf_tensor *y = *(const struct gguf_tensor *const *)b;
	return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int
parse(struct gguf_file *f)
{
	struct cur c = { f->base, f->size, f->path };
	uint64_t nt, nkv;
	int err;

	if (f->size < 4 || memcmp(f->base, "GGUF", 4) != 0)
		return v_error(V_ERR_FORMAT, "%s: not a GGUF file (bad magic)", f->path);
	c.p += 4;
	c.left -= 4;
	if ((err = get_u32(&c, &f->version, "the header")) ||
	    (err = get_u64(&c, &nt, "the header")) ||
	    (err = get_u64(&c, &nkv, "the header")))
		return err;
	if (f->version != 2 && f->version != 3)
		return v_error(V_ERR_UNSUPPORTED, "%s: GGUF version %u (2 and 3 are known)",
		    f->path, f->version);
	/* Each key/value takes at least 13 bytes and each tensor info 24, so
	 * counts beyond what the file could hold are refused before any
	 * allocation sized by them. */
	if (nkv > c.left / 13 || nt > c.left / 24)
		return v_error(V_ERR_TRUNCATED, "%s: %llu keys and %llu tensors cannot fit in %zu bytes",
		    f->path, (unsigned long long)nkv, (unsigned long long)nt, f->size);
	f->kv = calloc(nkv ? nkv : 1, sizeof *f->kv);
	f->t = calloc(nt ? nt : 1, sizeof *f->t);
	if (f->kv == NULL || f->t == NULL)
		return v_error(V_ERR_NOMEM, "out of memory");

	f->align = GGUF_DEFAULT_ALIGN;
	for (uint64_t i = 0; i < nkv; i++) {
		struct gguf_kv *kv = &f->kv[f->n_kv];
		if ((err = get_str(&c, &kv->key, "a key")) != V_OK)
			return err;
		f->n_kv++;
		for (size_t j = 0; j + 1 < f->n_kv; j++)
			if (strcmp(f->kv[j].key, kv->key) == 0)
				return v_error(V_ERR_FORMAT, "%s: key %s appears twice", f->path, kv->key);
		if ((err = get_u32(&c, &kv->type, "a key's type")) != V_OK)
			return err;
		kv->val = c.p;
		if (kv->type == GGUF_ARRAY) {
			if ((err = get_u32(&c, &kv->arr_type, "an array")) ||
			    (err = get_u64(&c, &kv->arr_n, "an array")))
				return err;
			if (kv->arr_type == GGUF_ARRAY || kv->arr_type >= GGUF_VTYPE_COUNT_)
				return v_error(V_ERR_UNSUPPORTED, "%s: key %s: arrays of type %u",
				    f->path, kv->key, kv->arr_type);
			if (kv->arr_type != GGUF_STRING) {
				if (kv->arr_n > c.left / vsize[kv->arr_type])
					return v_error(V_ERR_TRUNCATED, "%s: key %s: %llu elements pass the end",
					    f->path, kv->key, (unsigned long long)kv->arr_n);
				c.p += kv->arr_n * vsize[kv->arr_type];
				c.left -= kv->arr_n * vsize[kv->arr_type];
			} else {
				if (kv->arr_n > c.left / 8)
					return v_error(V_ERR_TRUNCATED, "%s: key %s: %llu strings pass the end",
					    f->path, kv->key, (unsigned long long)kv->arr_n);
				for (uint64_t j = 0; j < kv->arr_n; j++)
					if ((err = skip_value(&c, GGUF_STRING, kv->key)) != V_OK)
						return err;
			}
		} else if (kv->type == GGUF_STRING) {
			if ((err = get_str(&c, &kv->str, "a string value")) != V_OK)
				return err;
		} else if ((err = skip_value(&c, kv->type, kv->key)) != V_OK) {
			return err;
		}
		kv->val_len = (uint64_t)(c.p - kv->val);
		if (strcmp(kv->key, "general.alignment") == 0) {
			if (kv->type != GGUF_U32)
				return v_error(V_ERR_FORMAT, "%s: general.alignment is not a u32", f->path);
			f->align = v_get_u32(kv->val);
			if (f->align == 0 || (f->align & (f->align - 1)) != 0)
				return v_error(V_ERR_FORMAT, "%s: general.alignment %u is not a power of two",
				    f->path, f->align);
		}
	}

	for (uint64_t i = 0; i < nt; i++) {
		struct gguf_tensor *t = &f->t[f->n_t];
		if ((err = get_str(&c, &t->name, "a tensor name")) != V_OK)
			return err;
		f->n_t++;
		if (strlen(t->name) >= 64)
			return v_error(V_ERR_FORMAT, "%s: tensor name %.64s... is 64 bytes or more",
			    f->path, t->name);
		if ((err = get_u32(&c, &t->ndim, "a tensor info")) != V_OK)
			return err;
		if (t->ndim < 1 || t->ndim > GGUF_MAX_DIMS)
			return v_error(V_ERR_FORMAT, "%s: tensor %s has %u dimensions",
			    f->path, t->name, t->ndim);
		uint64_t n = 1;
		for (uint32_t d = 0; d < t->ndim; d++) {
			if ((err = get_u64(&c, &t->ne[d], "a tensor info")) != V_OK)
				return err;
			if (t->ne[d] > INT64_MAX || (t->ne[d] != 0 && n > INT64_MAX / t->ne[d]))
				return v_error(V_ERR_RANGE, "%s: tensor %s is too large", f->path, t->name);
			n *= t->ne[d];
		}
		if ((err = get_u32(&c, &t->type, "a tensor info")) ||
		    (err = get_u64(&c, &t->offset, "a tensor info")))
			return err;
		if (type_index(t->type) < 0)
			return v_error(V_ERR_UNSUPPORTED, "%s: tensor %s: unknown ggml type %u",
			    f->path, t->name, t->type);
		t->nbytes = gguf_type_bytes(t->type, n);
		if (t->nbytes == 0 && n != 0)
			return v_error(V_ERR_FORMAT, "%s: tensor %s: %llu elements are not whole %s blocks",
			    f->path, t->name, (unsigned long long)n, gguf_type_name(t->type));
		for (size_t j = 0; j + 1 < f->n_t; j++)
			if (strcmp(f->t[j].name, t->name) == 0)
				return v_error(V_ERR_FORMAT, "%s: tensor %s appears twice", f->path, t->name);
	}
	f->data_off = align_up(f->size - c.left, f->align);
	if (f->data_off > f->size && f->n_t > 0)
		return v_error(V_ERR_TRUNCATED, "%s: the file ends before the tensor data", f->path);

	struct gguf_tensor **order = malloc((f->n_t ? f->n_t : 1) * sizeof *order);
	if (order == NULL)
		return v_error(V_ERR_NOMEM, "out of memory");
	for (size_t i = 0; i < f->n_t; i++)
		order[i] = &f->t[i];
	qsort(order, f->n_t, sizeof *order, cmp_off);
	uint64_t end = 0;
	err = V_OK;
	for (size_t i = 0; i < f->n_t && !err; i++) {
		struct gguf_tensor *t = order[i];
		if (t->offset % f->align != 0)
			err = v_error(V_ERR_FORMAT, "%s: tensor %s: offset %llu is not aligned to %u",
			    f->path, t->name, (unsigned long long)t->offset, f->align);
		else if (t->offset < end)
			err = v_error(V_ERR_FORMAT, "%s: tensors %s and %s overlap", f->path,
			    order[i - 1]->name, t->name);
		else if (t->offset > f->size - f->data_off ||
		    t->nbytes > f->size - f->data_off - t->offset)
			err = v_error(V_ERR_TRUNCATED, "%s: tensor %s passes the end of the file",
			    f->path, t->name);
		else {
			t->data = f->base + f->data_off + t->offset;
			end = t->offset + t->nbytes;
		}
	}
	free(order);
	return err;
}

int
gguf_open_mem(struct gguf_file *f, const void *buf, size_t len, const char *name)
{
	memset(f, 0, sizeof *f);
	f->path = strdup(name);
	if (f->path == NULL)
		return v_error(V_ERR_NOMEM, "out of memory");
	f->base = buf;
	f->size = len;
	int err = parse(f);
	if (err)
		gguf_close(f);
	return err;
}

int
gguf_open(struct gguf_file *f, const char *path)
{
	int err;

	memset(f, 0, sizeof *f);
	if ((err = v_map_file(path, &f->base, &f->size)))
		return err;
	f->mapped = f->base != NULL;
	f->path = strdup(path);
	if (f->path == NULL) {
		gguf_close(f);
		return v_error(V_ERR_NOMEM, "out of memory");
	}
	err = parse(f);
	if (err)
		gguf_close(f);
	return err;
}

const struct gguf_kv *
gguf_find_kv(const struct gguf_file *f, const char *k)
{
	for (size_t i = 0; i < f->n_kv; i++)
		if (strcmp(f->kv[i].key, k) == 0)
			return &f->kv[i];
	return NULL;
}

const struct gguf_tensor *
gguf_find_tensor(const struct gguf_file *f, const char *name)
{
	for (size_t i = 0; i < f->n_t; i++)
		if (strcmp(f->t[i].name, name) == 0)
			return &f->t[i];
	return NULL;
}

int
gguf_kv_uint(const struct gguf_file *f, const char *k, uint64_t *v)
{
	const struct gguf_kv *kv = gguf_find_kv(f, k);

	if (kv == NULL)
		return v_error(V_ERR_NOTFOUND, "%s: no key %s", f->path, k);
	switch (kv->type) {
	case GGUF_U8: case GGUF_BOOL: *v = kv->val[0]; return V_OK;
	case GGUF_U16: *v = v_get_u16(kv->val); return V_OK;
	case GGUF_U32: *v = v_get_u32(kv->val); return V_OK;
	case GGUF_U64: *v = v_get_u64(kv->val); return V_OK;
	case GGUF_I8: case GGUF_I16: case GGUF_I32: case GGUF_I64: {
		int64_t s = kv->type == GGUF_I8 ? (int8_t)kv->val[0] :
		    kv->type == GGUF_I16 ? (int16_t)v_get_u16(kv->val) :
		    kv->type == GGUF_I32 ? (int32_t)v_get_u32(kv->val) :
		    (int64_t)v_get_u64(kv->val);
		if (s < 0)
			break;
		*v = (uint64_t)s;
		return V_OK;
	}
	default:
		break;
	}
	return v_error(V_ERR_FORMAT, "%s: key %s is not a non-negative integer", f->path, k);
}
