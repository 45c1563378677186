/* test_gguf.c: the GGUF writer read back by the reader, and the reader on
 * malformed files (every length field too large, truncation at every
 * byte). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../lib/gguf.h"
#include "../../lib/quant.h"
#include "../../lib/verr.h"
#include "../../lib/vio.h"
#include "tap.h"

static char dir[] = "/tmp/test_gguf.XXXXXX";

static unsigned char *
slurp(const char *path, size_t *n)
{
	char *b;
	if (v_slurp(path, 0, &b, n) != V_OK)
		return NULL;
	return (unsigned char *)b;
}

static int
write_sample(const char *path)
{
	struct gguf_writer w;
	float vec[8], mat[4 * 64];
	unsigned char q8[4 * 2 * VQ_Q8_0_BYTES];
	const char *toks[] = { "<bos>", "a", "é" };
	int32_t types[] = { 3, 1, 1 };
	uint64_t ne_vec[1] = { 8 }, ne_mat[2] = { 64, 4 };

	for (int i = 0; i < 8; i++)
		vec[i] = (float)i;
	for (int i = 0; i < 4 * 64; i++)
		mat[i] = (float)((i * 37) % 101 - 50) / 50.0f;
	vq_q8_0(mat, 4 * 64, q8);
	gguf_w_init(&w);
	gguf_w_str(&w, "general.architecture", "llama");
	gguf_w_u32(&w, "llama.block_count", 4);
	gguf_w_f32(&w, "llama.rope.freq_base", 10000.0f);
	gguf_w_bool(&w, "tokenizer.ggml.add_bos_token", 1);
	gguf_w_i32(&w, "test.negative", -5);
	gguf_w_arr_str(&w, "tokenizer.ggml.tokens", toks, NULL, 3);
	gguf_w_arr_i32(&w, "tokenizer.ggml.token_type", types, 3);
	gguf_w_tensor(&w, "output_norm.weight", GGML_TYPE_F32, 1, ne_vec);
	gguf_w_tensor(&w, "blk.0.ffn_up.weight", GGML_TYPE_Q8_0, 2, ne_mat);
	int err = gguf_w_begin(&w, path);
	if (!err)
		err = gguf_w_data(&w, vec, sizeof vec);
	if (!err)
		err = gguf_w_data(&w, q8, sizeof q8);
	if (!err)
		err = gguf_w_commit(&w);
	gguf_w_free(&w);
	return err;
}

static void
test_roundtrip(const char *path)
{
	struct gguf_file f;
	uint64_t v;

	int err = gguf_open(&f, path);
	if (!ok(err == V_OK, "the reader opens what the writer wrote"))
		diag("%s", v_errmsg(err));
	if (err)
		return;
	is_int(f.version, 3, "version 3");
	is_int(f.n_kv, 7, "7 keys");
	is_int(f.n_t, 2, "2 tensors");
	is_int(f.data_off % 32, 0, "data aligned to 32");
	is_str(gguf_find_kv(&f, "general.architecture")->str, "llama", "a string key");
	ok(gguf_kv_uint(&f, "llama.block_count", &v) == V_OK && v == 4, "a u32 key");
	ok(gguf_kv_uint(&f, "tokenizer.ggml.add_bos_token", &v) == V_OK && v == 1, "a bool key");
	is_int(gguf_kv_uint(&f, "test.negative", &v), V_ERR_FORMAT, "a negative i32 is no uint");
	is_int(gguf_kv_uint(&f, "no.such.key", &v), V_ERR_NOTFOUND, "an absent key");
	const struct gguf_kv *kv = gguf_find_kv(&f, "tokenizer.ggml.tokens");
	ok(kv && kv->type == GGUF_ARRAY && kv->arr_type == GGUF_STRING && kv->arr_n == 3,
	    "a string array of 3");
	float fb;
	kv = gguf_find_kv(&f, "llama.rope.freq_base");
	ok(kv && kv->type == GGUF_F32 && (memcpy(&fb, kv->val, 4), fb == 10000.0f), "an f32 key");

	const struct gguf_tensor *t = gguf_find_tensor(&f, "output_norm.weight");
	ok(t && t->type == GGML_TYPE_F32 && t->ndim == 1 && t->ne[0] == 8 && t->nbytes == 32,
	    "an F32 vector");
	ok(t && ((const float *)t->data)[7] == 7.0f, "its data");
	t = gguf_find_tensor(&f, "blk.0.ffn_up.weight");
	ok(t && t->type == GGML_TYPE_Q8_0 && t->ne[0] == 64 && t->ne[1] == 4 &&
	    t->nbytes == 8 * VQ_Q8_0_BYTES && t->offset % 32 == 0, "a Q8_0 matrix, aligned");
	if (t) {
		float back[256], mat[256];
		for (int i = 0; i < 256; i++)
			mat[i] = (float)((i * 37) % 101 - 50) / 50.0f;
		vq_q8_0_dequant(t->data, 256, back);
		ok(vq_rel_rms(mat, back, 256) < 0.01, "its data dequantises");
	}
	gguf_close(&f);
}

static void
test_writer_errors(void)
{
	struct gguf_writer w;
	uint64_t ne[2] = { 33, 2 };
	char path[300];

	snprintf(path, sizeof path, "%s/bad.gguf", dir);
	gguf_w_init(&w);
	gguf_w_tensor(&w, "x", GGML_TYPE_Q4_0, 2, ne);
	is_int(gguf_w_begin(&w, path), V_ERR_ARG, "33 columns are not Q4_0 blocks");
	gguf_w_free(&w);
	ok(access(path, F_OK) != 0, "nothing written");

	ne[0] = 32;
	gguf_w_init(&w);
	gguf_w_tensor(&w, "x", GGML_TYPE_F32, 2, ne);
	is_int(gguf_w_begin(&w, path), V_OK, "begin");
	is_int(gguf_w_data(&w, "abc", 3), V_ERR_ARG, "the wrong number of bytes is refused");
	is_int(gguf_w_commit(&w), V_ERR_ARG, "commit with a tensor missing is refused");
	gguf_w_free(&w);
	ok(access(path, F_OK) != 0, "an uncommitted writer leaves no file");
}

static void
bad(const unsigned char *buf, size_t n, const char *desc, int want)
{
	struct gguf_file f;
	int err = gguf_open_mem(&f, buf, n, "bad.gguf");
	if (!ok(err == want, "%s", desc))
		diag("got %d: %s", err, v_errmsg(err));
	ok(strstr(v_errmsg(err), "bad.gguf") != NULL, "%s: the message names the file", desc);
}

static void
test_malformed(const char *path)
{
	size_t n;
	unsigned char *good = slurp(path, &n), *b;
	struct gguf_file f;

	if (good == NULL) {
		ok(0, "read back the sample");
		return;
	}
	b = malloc(n);

	/* Every prefix that cuts into a tensor's data or before is refused,
	 * and none crashes (ASan watches); the padding after the last
	 * tensor is not needed. */
	size_t end = 0;
	if (gguf_open_mem(&f, good, n, "good") == V_OK) {
		for (size_t i = 0; i < f.n_t; i++) {
			size_t e = (size_t)(f.data_off + f.t[i].offset + f.t[i].nbytes);
			if (e > end)
				end = e;
		}
		gguf_close(&f);
	}
	ok(end > 0 && end <= n && n - end < 32, "the data ends %zu bytes before the file", n - end);
	size_t refused = 0;
	for (size_t k = 0; k < end; k++) {
		memcpy(b, good, k);
		if (gguf_open_mem(&f, b, k, "prefix") != V_OK)
			refused++;
		else
			gguf_close(&f);
	}
	is_int(refused, end, "each of the %zu truncations is refused", end);

	memcpy(b, good, n);
	b[0] = 'X';
	bad(b, n, "bad magic", V_ERR_FORMAT);
	memcpy(b, good, n);
	v_put_u32(b + 4, 7);
	bad(b, n, "version 7", V_ERR_UNSUPPORTED);
	memcpy(b, good, n);
	v_put_u64(b + 8, UINT64_MAX);
	bad(b, n, "a tensor count of 2^64-1", V_ERR_TRUNCATED);
	memcpy(b, good, n);
	v_put_u64(b + 16, (uint64_t)1 << 40);
	bad(b, n, "a key count of 2^40", V_ERR_TRUNCATED);
	/* The first key's length (at 24). */
	memcpy(b, good, n);
	v_put_u64(b + 24, UINT64_MAX - 3);
	bad(b, n, "a key length of 2^64-4", V_ERR_TRUNCATED);
	/* The first key's type follows its 20 characters. */
	memcpy(b, good, n);
	v_put_u32(b + 32 + 20, 99);
	bad(b, n, "an unknown value type", V_ERR_FORMAT);
	memcpy(b, good, n);
	v_put_u32(b + 32 + 20, GGUF_ARRAY);
	/* Now "llama" is read as an array header: type 5 chars... its count
	 * is whatever follows; the reader must not trust it. */
	{
		int err = gguf_open_mem(&f, b, n, "bad.gguf");
		ok(err != V_OK, "a string retyped as an array is refused (%s)", v_errmsg(err));
	}

	/* Tensor infos: find the second tensor's name and damage its fields. */
	const unsigned char *p = NULL;
	for (size_t k = 0; k + 19 <= n && p == NULL; k++)
		if (memcmp(good + k, "blk.0.ffn_up.weight", 19) == 0)
			p = good + k;
	ok(p != NULL, "found the tensor info");
	if (p) {
		size_t at = (size_t)(p - good) + 19;	/* ndim */
		memcpy(b, good, n);
		v_put_u32(b + at, 5);
		bad(b, n, "five dimensions", V_ERR_FORMAT);
		memcpy(b, good, n);
		v_put_u64(b + at + 4, 63);
		bad(b, n, "a row that is not whole Q8_0 blocks", V_ERR_FORMAT);
		memcpy(b, good, n);
		v_put_u64(b + at + 4, (uint64_t)1 << 62);
		v_put_u64(b + at + 12, (uint64_t)1 << 62);
		bad(b, n, "sizes whose product overflows", V_ERR_RANGE);
		memcpy(b, good, n);
		v_put_u32(b + at + 20, 77);
		bad(b, n, "an unknown ggml type", V_ERR_UNSUPPORTED);
		memcpy(b, good, n);
		v_put_u64(b + at + 24, 1u << 20);
		bad(b, n, "data past the end", V_ERR_TRUNCATED);
		memcpy(b, good, n);
		v_put_u64(b + at + 24, 8);
		bad(b, n, "an unaligned offset", V_ERR_FORMAT);
		memcpy(b, good, n);
		v_put_u64(b + at + 24, 0);
		bad(b, n, "overlapping tensors", V_ERR_FORMAT);
		memcpy(b, good, n);
		memcpy(b + at - 19, "output_norm.weight\0", 19);
		bad(b, n, "a name with a NUL byte", V_ERR_FORMAT);
	}
	free(b);
	free(good);

	/* A duplicate tensor name and a duplicate key, made by the writer. */
	char p2[300];
	struct gguf_writer w;
	uint64_t ne[1] = { 4 };
	float z[4] = { 0 };
	snprintf(p2, sizeof p2, "%s/dup.gguf", dir);
	gguf_w_init(&w);
	gguf_w_u32(&w, "k", 1);
	gguf_w_u32(&w, "k", 2);
	gguf_w_tensor(&w, "t", GGML_TYPE_F32, 1, ne);
	if (gguf_w_begin(&w, p2) == V_OK && gguf_w_data(&w, z, 16) == V_OK)
		gguf_w_commit(&w);
	gguf_w_free(&w);
	int err = gguf_open(&f, p2);
	ok(err == V_ERR_FORMAT && strstr(v_errmsg(err), "twice"), "a key twice is refused");
	gguf_w_init(&w);
	gguf_w_tensor(&w, "t", GGML_TYPE_F32, 1, ne);
	gguf_w_tensor(&w, "t", GGML_TYPE_F32, 1, ne);
	if (gguf_w_begin(&w, p2) == V_OK && gguf_w_data(&w, z, 16) == V_OK &&
	    gguf_w_data(&w, z, 16) == V_OK)
		gguf_w_commit(&w);
	gguf_w_free(&w);
	err = gguf_open(&f, p2);
	ok(err == V_ERR_FORMAT && strstr(v_errmsg(err), "twice"), "a tensor twice is refused");
	snprintf(p2, sizeof p2, "%s/none.gguf", dir);
	err = gguf_open(&f, p2);
	ok(err == V_ERR_NOTFOUND && strstr(v_errmsg(err), "none.gguf"), "a missing file is named");
}

int
main(void)
{
	char path[300];

	if (mkdtemp(dir) == NULL)
		return 1;
	snprintf(path, sizeof path, "%s/sample.gguf", dir);
	is_int(write_sample(path), V_OK, "write a sample GGUF");
	test_roundtrip(path);
	test_writer_errors();
	test_malformed(path);
	is_int(gguf_type_bytes(GGML_TYPE_Q4_0, 64), 36, "Q4_0: 18 bytes per 32");
	is_int(gguf_type_bytes(GGML_TYPE_Q8_0, 32), 34, "Q8_0: 34 bytes per 32");
	is_int(gguf_type_bytes(GGML_TYPE_Q8_0, 31), 0, "Q8_0: 31 values are no block");
	is_int(gguf_type_bytes(14, 256), 210, "Q6_K: 210 bytes per 256");
	is_int(gguf_type_bytes(99, 1), 0, "unknown type");
	char cmd[400];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		diag("could not remove %s", dir);
	return done_testing();
}
