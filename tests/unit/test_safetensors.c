/* test_safetensors.c: the safetensors writer and the validating reader,
 * including every kind of malformed file, and the bf16/fp16 conversions. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../lib/bf16.h"
#include "../../lib/safetensors.h"
#include "../../lib/verr.h"
#include "../../lib/vio.h"
#include "tap.h"

static char dir[] = "/tmp/test_safetensors.XXXXXX";

/* A file from a header text and n data bytes (0x5a..). */
static size_t
craft(unsigned char *buf, const char *hdr, size_t ndata)
{
	size_t hl = strlen(hdr);
	v_put_u64(buf, hl);
	memcpy(buf + 8, hdr, hl);
	for (size_t i = 0; i < ndata; i++)
		buf[8 + hl + i] = (unsigned char)(0x5a + i);
	return 8 + hl + ndata;
}

/* Parse a crafted file; expect failure with err and a message matching
 * the fragment. */
static void
bad(const char *desc, const char *hdr, size_t ndata, int want, const char *frag)
{
	static unsigned char buf[4096];
	struct st_file f;
	size_t n = craft(buf, hdr, ndata);
	int err = st_open_mem(&f, buf, n, "bad.safetensors");

	if (!ok(err == want, "rejects %s", desc))
		diag("got %d (%s), want %d", err, v_errmsg(err), want);
	const char *m = v_errmsg(err);
	if (!ok(strstr(m, "bad.safetensors") && strstr(m, frag),
	    "%s: message names the file and says '%s'", desc, frag))
		diag("message: %s", m);
	ok(f.t == NULL && f.base == NULL, "%s: the st_file is left closed", desc);
}

static void
test_conversions(void)
{
	/* Values with known bf16 encodings (torch gives the same). */
	is_int(v_f32_to_bf16(1.0f), 0x3f80, "bf16(1) = 0x3f80");
	is_int(v_f32_to_bf16(-2.0f), 0xc000, "bf16(-2) = 0xc000");
	/* 1 + 2^-8 is exactly halfway between bf16 1 and 1+2^-7: ties to even
	 * go down; 1 + 3*2^-8 is halfway up to an even mantissa. */
	is_int(v_f32_to_bf16(1.00390625f), 0x3f80, "bf16 tie rounds to even (down)");
	is_int(v_f32_to_bf16(1.01171875f), 0x3f82, "bf16 tie rounds to even (up)");
	is_int(v_f32_to_bf16(1.0f + 1.0f / 128 + 1.0f / 1024), 0x3f81,
	    "bf16 below half rounds down");
	is_int(v_f32_to_bf16(v_bits_f32(0x7f7fffff)), 0x7f80, "bf16 of FLT_MAX overflows to inf");
	uint16_t nb = v_f32_to_bf16(v_bits_f32(0x7f800001));
	ok((nb & 0x7f80) == 0x7f80 && (nb & 0x7f) != 0, "bf16 keeps a signalling NaN a NaN");

	is_int(v_f32_to_f16(1.0f), 0x3c00, "f16(1) = 0x3c00");
	is_int(v_f32_to_f16(65504.0f), 0x7bff, "f16 max");
	is_int(v_f32_to_f16(65520.0f), 0x7c00, "f16 tie above max is inf");
	is_int(v_f32_to_f16(65519.0f), 0x7bff, "f16 just below the tie stays finite");
	is_int(v_f32_to_f16(5.9604644775390625e-8f), 0x0001, "f16 smallest subnormal");
	is_int(v_f32_to_f16(2.98023223876953125e-8f), 0x0000, "f16 half the smallest subnormal ties to 0");
	is_int(v_f32_to_f16(4.5e-8f), 0x0001, "f16 above half rounds up to subnormal");
	is_int(v_f32_to_f16(-0.0f), 0x8000, "f16 keeps the sign of zero");
	is_int(v_f32_to_f16(6.097555160522461e-05f), 0x03ff, "f16 largest subnormal");
	is_int(v_f32_to_f16(1.0f + 1.0f / 2048), 0x3c00, "f16 tie rounds to even");

	/* Every fp16 value survives f16 -> f32 -> f16; every bf16 likewise. */
	int bad16 = 0, badb = 0;
	for (uint32_t h = 0; h < 65536; h++) {
		float v = v_f16_to_f32((uint16_t)h);
		uint16_t back = v_f32_to_f16(v);
		if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) {
			if ((back & 0x7c00) != 0x7c00 || !(back & 0x3ff))
				bad16++;
		} else if (back != h) {
			bad16++;
		}
		float w = v_bf16_to_f32((uint16_t)h);
		uint16_t bb = v_f32_to_bf16(w);
		if ((h & 0x7f80) == 0x7f80 && (h & 0x7f)) {
			if ((bb & 0x7f80) != 0x7f80 || !(bb & 0x7f))
				badb++;
		} else if (bb != h) {
			badb++;
		}
	}
	is_int(bad16, 0, "all 65536 fp16 values round-trip through fp32");
	is_int(badb, 0, "all 65536 bf16 values round-trip through fp32");

	/* Rounding error within half an ulp on random floats. */
	unsigned s = 12345;
	double worst = 0;
	for (int i = 0; i < 100000; i++) {
		s = s * 1103515245u + 12345u;
		float x = ((float)(s >> 8) / 16777216.0f - 0.5f) * 8.0f;
		float y = v_bf16_to_f32(v_f32_to_bf16(x));
		if (x != 0) {
			double r = fabs((double)y - x) / fabs((double)x);
			if (r > worst)
				worst = r;
		}
	}
	ok(worst <= 1.0 / 256 && worst > 0, "bf16 relative error <= 2^-8 (worst %.3g)", worst);
}

static void
test_roundtrip(void)
{
	char path[256];
	float a[6] = { 1.5f, -2.25f, 3.0f, 0.1f, -0.0f, 1e-3f };
	int8_t q[5] = { -128, -1, 0, 1, 127 };
	int32_t ids[3] = { 7, -9, 1 << 30 };
	struct st_wtensor w[] = {
		{ .name = "a", .dtype = ST_F32, .ndim = 2, .shape = { 2, 3 }, .data = a },
		{ .name = "a.bf16", .dtype = ST_BF16, .ndim = 2, .shape = { 3, 2 }, .f32 = a },
		{ .name = "a.f16", .dtype = ST_F16, .ndim = 1, .shape = { 6 }, .f32 = a },
		{ .name = "q", .dtype = ST_I8, .ndim = 1, .shape = { 5 }, .data = q },
		{ .name = "empty", .dtype = ST_F32, .ndim = 2, .shape = { 0, 4 }, .data = NULL },
		{ .name = "scalar", .dtype = ST_I32, .ndim = 0, .data = ids },
		{ .name = "ids", .dtype = ST_I32, .ndim = 1, .shape = { 3 }, .data = ids },
	};
	struct st_kv meta[] = { { "format", "vesper" }, { "note", "é \"quoted\"" },
		{ ST_SHA256_KEY, "stale" } };
	struct st_file f;

	snprintf(path, sizeof path, "%s/rt.safetensors", dir);
	is_int(st_write(path, w, 7, meta, 3), V_OK, "st_write");
	int err = st_open(&f, path);
	if (!ok(err == V_OK, "st_open reads what st_write wrote"))
		diag("%s", v_errmsg(err));
	if (err)
		return;
	is_int(f.n, 7, "seven tensors");
	is_int(f.t[0].offset % 8, 0, "data starts 8-byte aligned");
	is_str(st_meta(&f, "format"), "vesper", "metadata format");
	is_str(st_meta(&f, "note"), "é \"quoted\"", "metadata with UTF-8 and quotes");
	ok(st_meta(&f, "none") == NULL, "absent metadata is NULL");
	char hex[65];
	is_int(st_data_sha256(&f, hex), V_OK, "st_data_sha256");
	is_str(st_meta(&f, ST_SHA256_KEY), hex,
	    "the recorded data hash is the data's (a stale one given is replaced)");
	const struct st_tensor *t = st_find(&f, "a");
	ok(t && t->dtype == ST_F32 && t->ndim == 2 && t->shape[0] == 2 &&
	    t->shape[1] == 3 && memcmp(t->data, a, sizeof a) == 0, "F32 tensor intact");
	float back[6];
	t = st_find(&f, "a.bf16");
	ok(t && t->dtype == ST_BF16 && t->nbytes == 12, "BF16 tensor: 12 bytes");
	if (t && st_tensor_f32(t, back) == V_OK) {
		int good = 1;
		for (int i = 0; i < 6; i++)
			good &= back[i] == v_bf16_to_f32(v_f32_to_bf16(a[i]));
		ok(good, "BF16 values are the rounded floats");
	}
	t = st_find(&f, "a.f16");
	if (t && st_tensor_f32(t, back) == V_OK) {
		int good = 1;
		for (int i = 0; i < 6; i++)
			good &= fabsf(back[i] - a[i]) <= fabsf(a[i]) / 1024;
		ok(good, "F16 values within half an ulp");
	}
	t = st_find(&f, "q");
	ok(t && memcmp(t->data, q, 5) == 0, "I8 tensor intact");
	t = st_find(&f, "empty");
	ok(t && t->numel == 0 && t->nbytes == 0, "empty tensor");
	t = st_find(&f, "scalar");
	ok(t && t->ndim == 0 && t->numel == 1 && t->nbytes == 4, "scalar tensor");
	ok(st_find(&f, "nope") == NULL, "absent tensor is NULL");
	t = st_find(&f, "q");
	is_int(st_tensor_f32(t, back), V_ERR_UNSUPPORTED, "st_tensor_f32 refuses I8");
	st_close(&f);

	/* The writer refuses bad input and leaves nothing behind. */
	snprintf(path, sizeof path, "%s/bad.safetensors", dir);
	struct st_wtensor dup[] = { w[0], w[0] };
	is_int(st_write(path, dup, 2, NULL, 0), V_ERR_ARG, "st_write refuses duplicate names");
	struct st_wtensor meta_name = w[0];
	meta_name.name = "__metadata__";
	is_int(st_write(path, &meta_name, 1, NULL, 0), V_ERR_ARG,
	    "st_write refuses the name __metadata__");
	struct st_wtensor neg = w[0];
	neg.shape[0] = -1;
	is_int(st_write(path, &neg, 1, NULL, 0), V_ERR_ARG, "st_write refuses a negative shape");
	struct st_wtensor conv = w[3];
	conv.f32 = a;
	is_int(st_write(path, &conv, 1, NULL, 0), V_ERR_ARG, "st_write refuses float to I8");
	ok(access(path, F_OK) != 0, "no file after a refused write");

	snprintf(path, sizeof path, "%s/nodir/x.safetensors", dir);
	err = st_write(path, w, 1, NULL, 0);
	ok(err == V_ERR_IO && strstr(v_errmsg(err), "nodir"), "st_write into a missing directory: %s",
	    v_errmsg(err));
}

static void
test_malformed(void)
{
	static unsigned char buf[4096];
	struct st_file f;
	const char *F32x2 = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";

	/* The good base case, to know the failures are the edits. */
	size_t n = craft(buf, F32x2, 8);
	is_int(st_open_mem(&f, buf, n, "good"), V_OK, "the base case parses");
	st_close(&f);

	is_int(st_open_mem(&f, buf, 5, "short"), V_ERR_TRUNCATED, "5 bytes: truncated");
	v_put_u64(buf, 1000);
	ok(st_open_mem(&f, buf, n, "bad.safetensors") == V_ERR_TRUNCATED &&
	    strstr(v_errmsg(V_ERR_TRUNCATED), "beyond the end"), "header length beyond the file");
	v_put_u64(buf, UINT64_MAX);
	is_int(st_open_mem(&f, buf, n, "huge"), V_ERR_TRUNCATED, "header length 2^64-1");
	{
		/* Header length fits the file but is over the limit: only the
		 * length field matters, so a sparse buffer is not needed. */
		size_t big = (size_t)ST_MAX_HEADER + 16;
		unsigned char *p = calloc(1, big);
		if (p) {
			v_put_u64(p, ST_MAX_HEADER + 1);
			is_int(st_open_mem(&f, p, big, "big"), V_ERR_RANGE, "header over 100 MB refused");
			free(p);
		}
	}

	bad("a header that is not JSON", "{\"a\": nope}", 0, V_ERR_FORMAT, "not valid JSON");
	bad("a header that is a JSON array", "[1,2]", 0, V_ERR_FORMAT, "not a JSON object");
	bad("trailing bytes after the JSON", "{} x", 0, V_ERR_FORMAT, "not valid JSON");
	bad("an unknown dtype",
	    "{\"a\":{\"dtype\":\"F48\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
	    V_ERR_UNSUPPORTED, "unknown dtype");
	bad("a shape that disagrees with its bytes",
	    "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
	    V_ERR_FORMAT, "12 bytes but data_offsets hold 8");
	bad("offsets out of range",
	    "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", 8,
	    V_ERR_TRUNCATED, "past the data");
	bad("truncated data",
	    "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 12,
	    V_ERR_TRUNCATED, "past the data");
	bad("overlapping tensors",
	    "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
	    "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
	    V_ERR_FORMAT, "overlap");
	bad("a gap between tensors",
	    "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
	    "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12,
	    V_ERR_FORMAT, "belong to no tensor");
	bad("bytes after the last tensor", F32x2, 9, V_ERR_FORMAT, "after the last tensor");
	bad("a negative offset",
	    "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[-4,0]}}", 0,
	    V_ERR_FORMAT, "is not a range");
	bad("reversed offsets",
	    "{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,0]}}", 8,
	    V_ERR_FORMAT, "is not a range");
	bad("a negative dimension",
	    "{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8,
	    V_ERR_FORMAT, "non-negative");
	bad("a shape whose product overflows",
	    "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}",
	    0, V_ERR_RANGE, "too large");
	bad("nine dimensions",
	    "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}",
	    1, V_ERR_UNSUPPORTED, "dimensions");
	bad("a missing dtype", "{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
	    V_ERR_FORMAT, "needs a string dtype");
	bad("data_offsets of three numbers",
	    "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}", 8,
	    V_ERR_FORMAT, "not [begin, end]");
	bad("a tensor that is a string", "{\"a\":\"F32\"}", 0, V_ERR_FORMAT, "not a JSON object");
	bad("duplicate tensor names",
	    "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
	    "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
	    V_ERR_FORMAT, "duplicate");
	bad("non-string metadata", "{\"__metadata__\":{\"step\":3}}", 0,
	    V_ERR_FORMAT, "not a string");
	bad("metadata that is a list", "{\"__metadata__\":[]}", 0,
	    V_ERR_FORMAT, "not an object");
	bad("an empty tensor name",
	    "{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
	    V_ERR_FORMAT, "empty name");
	bad("invalid UTF-8 in the header", "{\"\xff\":1}", 0, V_ERR_FORMAT, "not valid JSON");

	/* A header padded with spaces, and an empty file of tensors, are valid. */
	n = craft(buf, "{}      ", 0);
	is_int(st_open_mem(&f, buf, n, "empty"), V_OK, "a header of {} padded with spaces");
	is_int(f.n, 0, "no tensors");
	st_close(&f);

	char path[256];
	snprintf(path, sizeof path, "%s/missing.safetensors", dir);
	int err = st_open(&f, path);
	ok(err == V_ERR_NOTFOUND && strstr(v_errmsg(err), "missing.safetensors"),
	    "a missing file: %s", v_errmsg(err));
	is_int(st_open(&f, dir), V_ERR_FORMAT, "a directory is not a safetensors file");
	snprintf(path, sizeof path, "%s/zero", dir);
	FILE *fp = fopen(path, "w");
	if (fp)
		fclose(fp);
	is_int(st_open(&f, path), V_ERR_TRUNCATED, "an empty file is truncated");
}

int
main(void)
{
	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 1;
	}
	test_conversions();
	test_roundtrip();
	test_malformed();
	char cmd[300];
	snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		diag("could not remove %s", dir);
	return done_testing();
}
