/* safetensors.h: read and write Hugging Face safetensors files.
 *
 * The format (https://github.com/huggingface/safetensors): an unsigned
 * 64-bit little-endian header length N, then N bytes of a JSON object, then
 * the data.  Each member of the object but "__metadata__" names a tensor:
 *   "name": {"dtype": "F32", "shape": [rows, cols], "data_offsets": [b, e]}
 * where [b, e) is relative to the first byte after the header.  The optional
 * "__metadata__" member maps strings to strings.  Tensors are row-major and
 * little-endian.
 *
 * Reading maps the file read-only and checks everything before returning:
 * the header length against the file, the JSON, each dtype and shape, that
 * each tensor's bytes equal its element count times its dtype's size, that
 * the offsets tile the data exactly (no gap, no overlap, nothing past the
 * end, nothing unclaimed), names unique.  After st_open succeeds every
 * st_tensor's data pointer is valid for nbytes bytes.
 *
 * Writing pads the header with spaces so that the data starts at a multiple
 * of 8 bytes (the format's rule, which also keeps our F32 tensors aligned),
 * and goes through v_atomic_* so that no partial file appears under the
 * final name. */
#ifndef VESPER_SAFETENSORS_H
#define VESPER_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

enum st_dtype {
	ST_BOOL, ST_U8, ST_I8, ST_I16, ST_U16, ST_F16, ST_BF16, ST_I32,
	ST_U32, ST_F32, ST_F64, ST_I64, ST_U64, ST_F8_E4M3, ST_F8_E5M2,
	ST_DTYPE_COUNT_
};

#define ST_MAX_DIMS 8
/* The largest header we accept, as the reference implementation does:
 * hostile lengths must not make us parse gigabytes of JSON. */
#define ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)

/* "F32" -> ST_F32; -1 for a name we do not know. */
int st_dtype_parse(const char *s);
/* ST_F32 -> "F32" ("?" outside the enum). */
const char *st_dtype_name(int dtype);
/* Bytes per element (0 outside the enum). */
size_t st_dtype_size(int dtype);

struct st_tensor {
	const char *name;	/* NUL-terminated, owned by the st_file */
	int dtype;		/* enum st_dtype */
	int ndim;		/* 0 for a scalar */
	int64_t shape[ST_MAX_DIMS];
	uint64_t numel;		/* product of shape (1 for a scalar) */
	uint64_t nbytes;	/* numel * st_dtype_size(dtype) */
	uint64_t offset;	/* of the data from the start of the file */
	/* Into the mapping.  Aligned to 8 bytes in files we write; a foreign
	 * file may misalign it, so read through st_tensor_f32 or memcpy. */
	const void *data;
};

struct st_kv {
	const char *key;
	const char *value;
};

struct st_file {
	char *path;		/* as given (the name in error messages) */
	const unsigned char *base;	/* the whole file */
	size_t size;
	int mapped;		/* base is a mapping to munmap on close */
	uint64_t data_start;	/* 8 + the header length */
	size_t n;		/* tensors, in header order */
	struct st_tensor *t;
	size_t n_meta;		/* __metadata__ pairs, in header order */
	struct st_kv *meta;
	void *priv_;		/* the parsed header, owning the strings */
};

/* Map path read-only and validate it.  On failure *f is left closed (safe to
 * st_close) and the error names path. */
int st_open(struct st_file *f, const char *path);
/* Validate a file already in memory (the fuzz targets use this); buf must
 * outlive f.  name is used in error messages. */
int st_open_mem(struct st_file *f, const void *buf, size_t len,
    const char *name);
void st_close(struct st_file *f);

/* The tensor called name, or NULL. */
const struct st_tensor *st_find(const struct st_file *f, const char *name);
/* The __metadata__ value for key, or NULL. */
const char *st_meta(const struct st_file *f, const char *key);

/* Convert a floating-point tensor (F32, F16, BF16, F64) to numel floats in
 * out; V_ERR_UNSUPPORTED for other dtypes. */
int st_tensor_f32(const struct st_tensor *t, float *out);

/* One tensor to write.  data holds nbytes in dtype's layout; or, when f32
 * is set instead, numel floats that the writer converts to dtype (F32, BF16
 * or F16, rounding to nearest even) as it writes, without a second copy of
 * the model in memory. */
struct st_wtensor {
	const char *name;
	int dtype;
	int ndim;
	int64_t shape[ST_MAX_DIMS];
	const void *data;
	const float *f32;
};

/* Write tensors t[0..n) and metadata meta[0..n_meta) (may be 0) to path
 * ("-" for stdout), atomically, data in the order given.  Checks names
 * (non-empty, unique, not "__metadata__"), dtypes and shapes first.
 *
 * A file (not stdout) also gets ST_SHA256_KEY: the SHA-256 of its data
 * section, hashed as it is written and patched into space the header keeps
 * for it, so that `vckpt verify` can detect damage.  A value for that key
 * among meta (copied from another file) is dropped, never trusted. */
#define ST_SHA256_KEY "vesper.data_sha256"
int st_write(const char *path, const struct st_wtensor *t, size_t n,
    const struct st_kv *meta, size_t n_meta);

/* Vesper's conventions (vesper-checkpoint(5)).  A checkpoint is a
 * directory holding model.safetensors or the file itself: open either; a
 * run's output directory opens its latest step. */
int st_open_checkpoint(struct st_file *f, const char *path);
/* Where to write a checkpoint named output: output itself when it ends in
 * .safetensors or is "-", else output/model.safetensors after creating the
 * directory.  Malloc'ed in *path. */
int st_checkpoint_output(const char *output, char **path);
/* The SHA-256 of f's data section in hexadecimal. */
int st_data_sha256(const struct st_file *f, char hex[65]);
struct vlm_config;
/* The model configuration in the "vesper.config" metadata, checked. */
int st_vesper_config(const struct st_file *f, struct vlm_config *c);

#endif
