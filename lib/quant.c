/* quant.c: INT8/INT4 weight quantisation and llama.cpp's Q8_0/Q4_0 blocks. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "quant.h"
#include "safetensors.h"
#include "verr.h"
#include "vio.h"

/* Round to nearest and clamp, in floats first, so that a NaN or an
 * infinity never reaches a float-to-int conversion (undefined in C). */
static int
round_clamp(float v, float lo, float hi)
{
	return (int)roundf(fminf(fmaxf(v, lo), hi));
}

void
vq_int8(const float *w, int rows, int cols, int8_t *q, uint16_t *scale)
{
	#pragma omp parallel for schedule(static)
	for (int r = 0; r < rows; r++) {
		const float *x = w + (size_t)r * cols;
		int8_t *y = q + (size_t)r * cols;
		float amax = 0;
		for (int c = 0; c < cols; c++)
			amax = fmaxf(amax, fabsf(x[c]));
		uint16_t sb = v_f32_to_bf16(amax / 127.0f);
		float s = v_bf16_to_f32(sb);
		float inv = s > 0 ? 1.0f / s : 0.0f;
		scale[r] = sb;
		for (int c = 0; c < cols; c++)
			y[c] = (int8_t)round_clamp(x[c] * inv, -127, 127);
	}
}

void
vq_int8_dequant(const int8_t *q, const uint16_t *scale, int rows, int cols,
    float *w)
{
	for (int r = 0; r < rows; r++) {
		float s = v_bf16_to_f32(scale[r]);
		for (int c = 0; c < cols; c++)
			w[(size_t)r * cols + c] = s * q[(size_t)r * cols + c];
	}
}

int
vq_int4_group(int cols, int want)
{
	static const int sizes[] = { 128, 64, 32 };

	if (want > 0 && want % 2 == 0 && cols % want == 0)
		return want;
	for (int i = 0; i < 3; i++)
		if (sizes[i] < want && cols % sizes[i] == 0)
			return sizes[i];
	return 0;
}

/* The scale of a group: its element of largest magnitude, with its sign,
 * over -8, so that this element lands on -8 and the full range of the
 * nibble is used (the choice llama.cpp's Q4_0 makes). */
static float
group_max(const float *x, int n)
{
	float m = 0, amax = 0;

	for (int i = 0; i < n; i++)
		if (fabsf(x[i]) > amax) {
			amax = fabsf(x[i]);
			m = x[i];
		}
	return m;
}

static int
nibble(float x, float inv)
{
	/* x*inv lies in about [-8, 8]; adding 8.5 and truncating (the value
	 * is positive) rounds to nearest. */
	float v = fminf(fmaxf(x * inv + 8.5f, 0.0f), 15.0f);
	return (int)v;
}

void
vq_int4(const float *w, int rows, int cols, int group, uint8_t *q,
    uint16_t *scale)
{
	int ng = cols / group;

	#pragma omp parallel for schedule(static)
	for (int r = 0; r < rows; r++) {
		const float *x = w + (size_t)r * cols;
		uint8_t *y = q + (size_t)r * (cols / 2);
		for (int g = 0; g < ng; g++) {
			const float *xg = x + (size_t)g * group;
			uint16_t sb = v_f32_to_bf16(group_max(xg, group) / -8.0f);
			float s = v_bf16_to_f32(sb);
			float inv = s != 0 ? 1.0f / s : 0.0f;
			scale[(size_t)r * ng + g] = sb;
			for (int c = 0; c < group; c += 2) {
				int lo = nibble(xg[c], inv), hi = nibble(xg[c + 1], inv);
				y[((size_t)g * group + c) / 2] = (uint8_t)(lo | hi << 4);
			}
		}
	}
}

void
vq_int4_dequant(const uint8_t *q, const uint16_t *scale, int rows, int cols,
    int group, float *w)
{
	int ng = cols / group;

	for (int r = 0; r < rows; r++)
		for (int c = 0; c < cols; c++) {
			uint8_t b = q[(size_t)r * (cols / 2) + c / 2];
			int u = c % 2 ? b >> 4 : b & 15;
			float s = v_bf16_to_f32(scale[(size_t)r * ng + c / group]);
			w[(size_t)r * cols + c] = s * (float)(u - 8);
		}
}

void
vq_q8_0(const float *x, size_t n, unsigned char *out)
{
	for (size_t b = 0; b < n / VQ_QK; b++) {
		const float *xb = x + b * VQ_QK;
		unsigned char *o = out + b * VQ_Q8_0_BYTES;
		float amax = 0;
		for (int i = 0; i < VQ_QK; i++)
			amax = fmaxf(amax, fabsf(xb[i]));
		/* llama.cpp divides by the unrounded scale and stores it in
		 * fp16; doing the same keeps our blocks equal to its own. */
		float d = amax / 127.0f, inv = d > 0 ? 1.0f / d : 0.0f;
		v_put_u16(o, v_f32_to_f16(d));
		for (int i = 0; i < VQ_QK; i++)
			o[2 + i] = (unsigned char)(int8_t)round_clamp(xb[i] * inv, -127, 127);
	}
}

void
vq_q8_0_dequant(const unsigned char *in, size_t n, float *x)
{
	for (size_t b = 0; b < n / VQ_QK; b++) {
		const unsigned char *p = in + b * VQ_Q8_0_BYTES;
		float d = v_f16_to_f32(v_get_u16(p));
		for (int i = 0; i < VQ_QK; i++)
			x[b * VQ_QK + i] = d * (float)(int8_t)p[2 + i];
	}
}

void
vq_q4_0(const float *x, size_t n, unsigned char *out)
{
	for (size_t b = 0; b < n / VQ_QK; b++) {
		const float *xb = x + b * VQ_QK;
		unsigned char *o = out + b * VQ_Q4_0_BYTES;
		float d = group_max(xb, VQ_QK) / -8.0f, inv = d != 0 ? 1.0f / d : 0.0f;
		v_put_u16(o, v_f32_to_f16(d));
		for (int i = 0; i < VQ_QK / 2; i++)
			o[2 + i] = (unsigned char)(nibble(xb[i], inv) |
			    nibble(xb[i + VQ_QK / 2], inv) << 4);
	}
}

void
vq_q4_0_dequant(const unsigned char *in, size_t n, float *x)
{
	for (size_t b = 0; b < n / VQ_QK; b++) {
		const unsigned char *p = in + b * VQ_Q4_0_BYTES;
		float d = v_f16_to_f32(v_get_u16(p));
		for (int i = 0; i < VQ_QK / 2; i++) {
			x[b * VQ_QK + i] = d * (float)((p[2 + i] & 15) - 8);
			x[b * VQ_QK + i + VQ_QK / 2] = d * (float)((p[2 + i] >> 4) - 8);
		}
	}
}

double
vq_rel_rms(const float *a, const float *b, size_t n)
{
	double num = 0, den = 0;

	for (size_t i = 0; i < n; i++) {
		double d = (double)a[i] - b[i];
		num += d * d;
		den += (double)a[i] * a[i];
	}
	if (den == 0)
		return num == 0 ? 0 : INFINITY;
	return sqrt(num / den);
}

/* The scale tensor of a quantised matrix, checked against the matrix. */
static int
scale_of(const struct st_file *f, const struct st_tensor *t,
    const struct st_tensor **sc, int *group)
{
	char name[512];

	if (t->ndim != 2 || t->shape[0] > INT32_MAX || t->shape[1] > INT32_MAX / 2)
		return v_error(V_ERR_FORMAT, "%s: %s: a quantised tensor must be a matrix",
		    f->path, t->name);
	snprintf(name, sizeof name, "%s_scale", t->name);
	*sc = st_find(f, name);
	if (*sc == NULL)
		return v_error(V_ERR_FORMAT, "%s: %s is %s but has no %s", f->path,
		    t->name, st_dtype_name(t->dtype), name);
	const struct st_tensor *s = *sc;
	int64_t rows = t->shape[0], cols = t->shape[1];
	if (s->dtype != ST_BF16)
		return v_error(V_ERR_FORMAT, "%s: %s is %s, not BF16", f->path, name,
		    st_dtype_name(s->dtype));
	if (t->dtype == ST_I8) {
		if (s->ndim != 1 || s->shape[0] != rows)
			return v_error(V_ERR_FORMAT, "%s: %s: shape is not (%lld)",
			    f->path, name, (long long)rows);
		*group = 0;
		return V_OK;
	}
	/* INT4: cols bytes hold 2*cols inputs, in groups of 2*cols/ng. */
	if (s->ndim != 2 || s->shape[0] != rows || s->shape[1] <= 0 ||
	    (2 * cols) % s->shape[1] != 0 || ((2 * cols) / s->shape[1]) % 2 != 0)
		return v_error(V_ERR_FORMAT, "%s: %s: shape does not give whole groups of %s",
		    f->path, name, t->name);
	*group = (int)((2 * cols) / s->shape[1]);
	return V_OK;
}

int
vq_tensor_numel(const struct st_file *f, const struct st_tensor *t,
    uint64_t *n)
{
	const struct st_tensor *sc;
	int g, err;

	if (t->dtype == ST_U8 && (err = scale_of(f, t, &sc, &g)) == V_OK) {
		*n = t->numel * 2;
		return V_OK;
	}
	*n = t->numel;
	return V_OK;
}

int
vq_tensor_f32(const struct st_file *f, const struct st_tensor *t, float *out)
{
	const struct st_tensor *sc;
	int g, err;

	if (t->dtype != ST_I8 && t->dtype != ST_U8)
		return st_tensor_f32(t, out);
	if ((err = scale_of(f, t, &sc, &g)) != V_OK)
		return err;
	int rows = (int)t->shape[0], cols = (int)t->shape[1];
	uint16_t *s = malloc(sc->nbytes ? sc->nbytes : 1);
	if (s == NULL)
		return v_error(V_ERR_NOMEM, "out of memory");
	for (uint64_t i = 0; i < sc->numel; i++)
		s[i] = v_get_u16((const unsigned char *)sc->data + 2 * i);
	if (t->dtype == ST_I8)
		vq_int8_dequant(t->data, s, rows, cols, out);
	else
		vq_int4_dequant(t->data, s, rows, 2 * cols, g, out);
	free(s);
	return V_OK;
}
