/* test_quant.c: INT8/INT4 quantisation and the GGUF blocks: error bounds on
 * random data, the exact layouts on hand-worked blocks. */
#include <stdint.h>
#include <stdlib.h>

#include "../../lib/bf16.h"
#include "../../lib/quant.h"
#include "../../lib/vio.h"
#include "tap.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static double
uniform(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return ((rng >> 11) + 0.5) / 9007199254740992.0;
}

static float
gauss(void)
{
	return (float)(sqrt(-2 * log(uniform())) * cos(6.283185307179586 * uniform()));
}

static void
test_int8(void)
{
	enum { R = 64, C = 96 };
	static float w[R * C], back[R * C];
	static int8_t q[R * C];
	uint16_t s[R];

	for (int i = 0; i < R * C; i++)
		w[i] = gauss() * 0.02f * (1 + i / C);	/* rows of growing scale */
	for (int c = 0; c < C; c++)
		w[5 * C + c] = 0;	/* one zero row */
	vq_int8(w, R, C, q, s);
	vq_int8_dequant(q, s, R, C, back);

	int within = 1, full = 1, no128 = 1;
	for (int r = 0; r < R; r++) {
		float sc = v_bf16_to_f32(s[r]);
		int amax = 0;
		for (int c = 0; c < C; c++) {
			float e = fabsf(w[r * C + c] - back[r * C + c]);
			if (e > sc * 0.5f * 1.0001f + 1e-12f && abs(q[r * C + c]) < 127)
				within = 0;
			if (q[r * C + c] == -128)
				no128 = 0;
			if (abs(q[r * C + c]) > amax)
				amax = abs(q[r * C + c]);
		}
		if (r != 5 && amax < 126)
			full = 0;
	}
	ok(within, "INT8: every error within half a step");
	ok(full, "INT8: each row's largest value uses the full range (126..127)");
	ok(no128, "INT8: -128 never appears");
	int zero = s[5] == 0;
	for (int c = 0; c < C; c++)
		zero &= q[5 * C + c] == 0 && back[5 * C + c] == 0;
	ok(zero, "INT8: a zero row has scale 0 and stays zero");
	double e = vq_rel_rms(w, back, R * C);
	ok(e > 0 && e < 0.01, "INT8: relative RMS error %.5f < 1%%", e);
}

static void
test_int4(void)
{
	enum { R = 32, C = 256 };
	static float w[R * C], back[R * C];
	static uint8_t q[R * C / 2];
	static uint16_t s[R * C / 32];
	double err[3];
	int groups[3] = { 32, 64, 128 };

	for (int i = 0; i < R * C; i++)
		w[i] = gauss() * 0.05f;
	for (int g = 0; g < 3; g++) {
		int G = groups[g];
		vq_int4(w, R, C, G, q, s);
		vq_int4_dequant(q, s, R, C, G, back);
		int within = 1;
		for (int r = 0; r < R; r++)
			for (int c = 0; c < C; c++) {
				float sc = fabsf(v_bf16_to_f32(s[r * (C / G) + c / G]));
				/* Half a step, or a whole step for the values
				 * beyond +7 that the nibble clamps, and 2^-8
				 * more because the scale is rounded to bf16. */
				if (fabsf(w[r * C + c] - back[r * C + c]) > sc * 1.02f)
					within = 0;
			}
		ok(within, "INT4 G=%d: every error within one step", G);
		err[g] = vq_rel_rms(w, back, R * C);
		ok(err[g] > 0.03 && err[g] < 0.15, "INT4 G=%d: relative RMS %.4f in (0.03, 0.15)",
		    G, err[g]);
	}
	ok(err[0] < err[1] && err[1] < err[2], "INT4: smaller groups, smaller error");

	/* A hand-worked group of 32: values -16..15 (largest magnitude -16),
	 * so the scale is -16 / -8 = 2 and u = floor(x/2 + 8.5). */
	float x[32];
	uint8_t b[16];
	uint16_t sc;
	for (int i = 0; i < 32; i++)
		x[i] = (float)(i - 16);
	vq_int4(x, 1, 32, 32, b, &sc);
	is_int(sc, v_f32_to_bf16(2.0f), "INT4 scale of -16..15 is 2");
	/* input 0 (-16) -> 0, input 1 (-15) -> floor(1) = 1: byte 0x10;
	 * inputs 30, 31 (14, 15) -> 15, 15 (16 clamped): byte 0xff. */
	is_int(b[0], 0x10, "INT4 byte 0: input 0 low nibble, input 1 high");
	is_int(b[15], 0xff, "INT4 byte 15: the clamp at 15");
	is_int(b[8], (8 | 9 << 4), "INT4 byte 8: inputs 16 (0 -> 8) and 17 (1 -> 9)");

	is_int(vq_int4_group(768, 128), 128, "group 128 divides 768");
	is_int(vq_int4_group(352, 128), 32, "352 falls back to 32");
	is_int(vq_int4_group(352, 64), 32, "352 with 64 falls back to 32");
	is_int(vq_int4_group(96, 32), 32, "96 with 32");
	is_int(vq_int4_group(100, 128), 0, "100: no group size");
	is_int(vq_int4_group(64, 128), 64, "64 with 128 asked: 64");
}

static void
test_ggml_blocks(void)
{
	float x[64], back[64];
	unsigned char q8[2 * VQ_Q8_0_BYTES], q4[2 * VQ_Q4_0_BYTES];

	for (int i = 0; i < 32; i++)
		x[i] = (float)(i - 16);
	for (int i = 32; i < 64; i++)
		x[i] = gauss();
	vq_q8_0(x, 64, q8);
	/* Block 0: amax 16, d = 16/127; -16 -> -127, 0 -> 0, 15 -> 119. */
	is_int(v_get_u16(q8), v_f32_to_f16(16.0f / 127), "Q8_0 scale in fp16 first");
	is_int((int8_t)q8[2], -127, "Q8_0 value 0 is -127");
	is_int((int8_t)q8[2 + 16], 0, "Q8_0 value 16 is 0");
	is_int((int8_t)q8[2 + 31], 119, "Q8_0 value 31 is round(15*127/16) = 119");
	vq_q8_0_dequant(q8, 64, back);
	double e8 = vq_rel_rms(x + 32, back + 32, 32);
	ok(e8 < 0.01, "Q8_0 relative RMS %.5f < 1%%", e8);

	vq_q4_0(x, 64, q4);
	is_int(v_get_u16(q4), v_f32_to_f16(2.0f), "Q4_0 scale -16/-8 = 2");
	/* Byte i holds value i (low) and value i+16 (high). */
	is_int(q4[2], 0 | 8 << 4, "Q4_0 byte 0: value 0 (-16 -> 0) and value 16 (0 -> 8)");
	is_int(q4[2 + 15], 8 | 15 << 4,
	    "Q4_0 byte 15: value 15 (-1 -> 8) and value 31 (15 -> 16, clamped to 15)");
	vq_q4_0_dequant(q4, 64, back);
	int exact = 1;
	for (int i = 0; i < 32; i++)
		exact &= fabsf(back[i] - x[i]) <= 1.0f;
	ok(exact, "Q4_0 block 0 within one step");
	double e4 = vq_rel_rms(x + 32, back + 32, 32);
	ok(e4 < 0.2, "Q4_0 relative RMS %.4f < 20%%", e4);
}

int
main(void)
{
	test_int8();
	test_int4();
	test_ggml_blocks();
	is_near(vq_rel_rms((float[]){ 3, 4 }, (float[]){ 3, 4 }, 2), 0, 1e-12, "rel_rms of a copy");
	is_near(vq_rel_rms((float[]){ 3, 4 }, (float[]){ 0, 0 }, 2), 1, 1e-12, "rel_rms of zeros");
	return done_testing();
}
