/* gguf.h: write llama.cpp's GGUF (version 3) and read it back.
 *
 * The file (https://github.com/ggml-org/ggml/blob/master/docs/gguf.md),
 * little-endian: "GGUF", version (u32), tensor count (u64), key/value count
 * (u64); the key/value pairs (a string key, a u32 type, the value); the
 * tensor infos (a string name, u32 dimension count, u64 sizes fastest
 * first, u32 ggml type, u64 offset into the data); padding to the
 * alignment (general.alignment, 32 by default); the data, each tensor at an
 * aligned offset.  A string is a u64 length and that many bytes, no NUL.
 *
 * The writer streams: declare the key/values and tensors, begin (which
 * writes everything up to the data), then hand it each tensor's bytes in
 * order, then commit (atomic, like every Vesper output).  The reader
 * checks every length against the file and exists to verify what the
 * writer made and to be fuzzed. */
#ifndef VESPER_GGUF_H
#define VESPER_GGUF_H

#include <stddef.h>
#include <stdint.h>

#include "vio.h"

enum gguf_vtype {
	GGUF_U8, GGUF_I8, GGUF_U16, GGUF_I16, GGUF_U32, GGUF_I32, GGUF_F32,
	GGUF_BOOL, GGUF_STRING, GGUF_ARRAY, GGUF_U64, GGUF_I64, GGUF_F64,
	GGUF_VTYPE_COUNT_
};

/* The ggml tensor types Vesper writes (the reader knows more). */
enum {
	GGML_TYPE_F32 = 0, GGML_TYPE_F16 = 1, GGML_TYPE_Q4_0 = 2,
	GGML_TYPE_Q8_0 = 8, GGML_TYPE_BF16 = 30
};

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGN 32

/* Bytes of n elements of a ggml type, 0 if the type is unknown or n is not
 * a whole number of its blocks. */
uint64_t gguf_type_bytes(uint32_t type, uint64_t n);
const char *gguf_type_name(uint32_t type);

struct gguf_wtensor {
	char *name;
	uint32_t ndim, type;
	uint64_t ne[GGUF_MAX_DIMS];
	uint64_t offset, nbytes;
};

struct gguf_writer {
	unsigned char *kv;	/* the serialised key/values */
	size_t kv_len, kv_cap;
	uint64_t n_kv;
	struct gguf_wtensor *t;
	size_t n_t, cap_t;
	uint64_t data_size;
	size_t next;		/* the tensor gguf_w_data writes next */
	uint64_t written;	/* data bytes written */
	int err;		/* the first error of a kv or tensor call */
	int open;
	struct v_atomic a;
	char *path;
};

void gguf_w_init(struct gguf_writer *w);
/* Key/values.  Errors (out of memory) are kept and returned by begin. */
void gguf_w_str(struct gguf_writer *w, const char *key, const char *v);
void gguf_w_u32(struct gguf_writer *w, const char *key, uint32_t v);
void gguf_w_i32(struct gguf_writer *w, const char *key, int32_t v);
void gguf_w_f32(struct gguf_writer *w, const char *key, float v);
void gguf_w_bool(struct gguf_writer *w, const char *key, int v);
void gguf_w_arr_str(struct gguf_writer *w, const char *key,
    const char *const *v, const size_t *len, size_t n);
void gguf_w_arr_i32(struct gguf_writer *w, const char *key,
    const int32_t *v, size_t n);
/* A tensor of ne[0..ndim) elements, ne[0] the fastest (a (rows, cols)
 * matrix is ne = {cols, rows}). */
void gguf_w_tensor(struct gguf_writer *w, const char *name, uint32_t type,
    uint32_t ndim, const uint64_t *ne);
/* Write the header to path.  Then gguf_w_data once per tensor, in order,
 * with exactly its bytes; then gguf_w_commit. */
int gguf_w_begin(struct gguf_writer *w, const char *path);
int gguf_w_data(struct gguf_writer *w, const void *buf, size_t n);
int gguf_w_commit(struct gguf_writer *w);
/* Free; removes the temporary file of an uncommitted writer. */
void gguf_w_free(struct gguf_writer *w);

struct gguf_kv {
	char *key;
	uint32_t type;		/* enum gguf_vtype */
	uint32_t arr_type;	/* for GGUF_ARRAY */
	uint64_t arr_n;
	const unsigned char *val;	/* the value's bytes in the file */
	uint64_t val_len;
	char *str;		/* GGUF_STRING: a NUL-terminated copy */
};

struct gguf_tensor {
	char *name;
	uint32_t ndim, type;
	uint64_t ne[GGUF_MAX_DIMS];
	uint64_t offset;	/* from the start of the data */
	uint64_t nbytes;
	const void *data;
};

struct gguf_file {
	char *path;
	const unsigned char *base;
	size_t size;
	int mapped;
	uint32_t version, align;
	uint64_t data_off;
	size_t n_kv, n_t;
	struct gguf_kv *kv;
	struct gguf_tensor *t;
};

int gguf_open(struct gguf_file *f, const char *path);
int gguf_open_mem(struct gguf_file *f, const void *buf, size_t len,
    const char *name);
void gguf_close(struct gguf_file *f);
const struct gguf_kv *gguf_find_kv(const struct gguf_file *f, const char *key);
const struct gguf_tensor *gguf_find_tensor(const struct gguf_file *f,
    const char *name);
/* A scalar key as an unsigned integer (U8..U64, I8..I64 >= 0, BOOL). */
int gguf_kv_uint(const struct gguf_file *f, const char *key, uint64_t *v);

#endif
