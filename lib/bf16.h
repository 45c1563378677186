/* bf16.h: conversions between fp32 and the 16-bit floats of checkpoints.
 *
 * bfloat16 is the top half of an IEEE fp32; fp16 is IEEE binary16 (5-bit
 * exponent, 10-bit fraction).  Narrowing rounds to nearest, ties to even,
 * as CUDA's __float2bfloat16_rn and torch's .to(torch.bfloat16) do, so that
 * a checkpoint converted here equals one converted there bit for bit.  NaN
 * stays a (quiet) NaN; fp16 overflows to infinity and keeps subnormals. */
#ifndef VESPER_BF16_H
#define VESPER_BF16_H

#include <stdint.h>
#include <string.h>

static inline uint32_t
v_f32_bits(float f)
{
	uint32_t u;
	memcpy(&u, &f, 4);
	return u;
}

static inline float
v_bits_f32(uint32_t u)
{
	float f;
	memcpy(&f, &u, 4);
	return f;
}

static inline uint16_t
v_f32_to_bf16(float f)
{
	uint32_t u = v_f32_bits(f);

	if ((u & 0x7fffffffu) > 0x7f800000u)	/* NaN: keep sign, force quiet */
		return (uint16_t)((u >> 16) | 0x0040u);
	/* Adding 0x7fff plus the lowest kept bit rounds half to even; a carry
	 * into the exponent is right, up to infinity. */
	u += 0x7fffu + ((u >> 16) & 1u);
	return (uint16_t)(u >> 16);
}

static inline float
v_bf16_to_f32(uint16_t h)
{
	return v_bits_f32((uint32_t)h << 16);
}

static inline uint16_t
v_f32_to_f16(float f)
{
	uint32_t u = v_f32_bits(f);
	uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
	uint32_t a = u & 0x7fffffffu;

	if (a > 0x7f800000u)
		return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
	if (a >= 0x477ff000u)	/* rounds to 65536 or more: infinity */
		return (uint16_t)(sign | 0x7c00u);
	if (a >= 0x38800000u) {	/* normal in fp16 (>= 2^-14) */
		/* Rebias the exponent (127 -> 15) and round the 13 dropped
		 * bits to nearest even; a carry moves into the exponent. */
		uint32_t r = a - 0x38000000u;
		r += 0x0fffu + ((r >> 13) & 1u);
		return (uint16_t)(sign | (r >> 13));
	}
	if (a < 0x33000000u)	/* below half the smallest subnormal: zero */
		return sign;
	/* Subnormal in fp16: the value is m * 2^-24 with m < 1024; shift the
	 * full 24-bit significand into place with round to nearest even. */
	int e = (int)(a >> 23);		/* 102 .. 112 */
	uint32_t m = (a & 0x7fffffu) | 0x800000u;
	int shift = 126 - e;		/* 14 .. 24 */
	uint32_t q = m >> shift;
	uint32_t rem = m & ((1u << shift) - 1u);
	uint32_t half = 1u << (shift - 1);
	if (rem > half || (rem == half && (q & 1u)))
		q++;
	return (uint16_t)(sign | q);
}

static inline float
v_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t e = (h >> 10) & 0x1fu;
	uint32_t m = h & 0x3ffu;

	if (e == 0x1f)
		return v_bits_f32(sign | 0x7f800000u | (m << 13));
	if (e != 0)
		return v_bits_f32(sign | ((e + 112u) << 23) | (m << 13));
	if (m == 0)
		return v_bits_f32(sign);
	/* Subnormal: m * 2^-24, exact in fp32. */
	float v = (float)m * 5.9604644775390625e-8f;
	return sign ? -v : v;
}

#endif
