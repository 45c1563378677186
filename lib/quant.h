/* quant.h: weight quantisation for vquant (the layouts of
 * vesper-checkpoint(5)) and for the GGUF export (llama.cpp's Q8_0 and Q4_0
 * blocks).
 *
 * Vesper INT8: per output row, q in [-127, 127], scale = max|w| / 127 in
 * bf16.  Vesper INT4: per group of G inputs, nibbles u = q + 8 packed two a
 * byte (input 2j low, 2j+1 high), scale = m / -8 in bf16 where m is the
 * group's element of largest magnitude.  Quantisation divides by the
 * bf16-rounded scale, so that what vgen multiplies back is what was
 * divided by.
 *
 * Scales are bf16 bit patterns (uint16_t, host order: little-endian hosts
 * only, as the safetensors writer). */
#ifndef VESPER_QUANT_H
#define VESPER_QUANT_H

#include <stddef.h>
#include <stdint.h>

/* w (rows, cols) -> q (rows, cols), scale (rows). */
void vq_int8(const float *w, int rows, int cols, int8_t *q, uint16_t *scale);
void vq_int8_dequant(const int8_t *q, const uint16_t *scale, int rows,
    int cols, float *w);

/* The group size vquant uses for a matrix of cols inputs when want is asked
 * for: want if it divides cols, else the largest of 128, 64, 32 below want
 * that does; 0 if none (the matrix stays unquantised). */
int vq_int4_group(int cols, int want);
/* w (rows, cols) -> q (rows, cols/2), scale (rows, cols/group);
 * cols % group == 0 and group even. */
void vq_int4(const float *w, int rows, int cols, int group, uint8_t *q,
    uint16_t *scale);
void vq_int4_dequant(const uint8_t *q, const uint16_t *scale, int rows,
    int cols, int group, float *w);

/* llama.cpp blocks of 32 values: Q8_0 is an fp16 scale then 32 int8
 * (34 bytes); Q4_0 an fp16 scale then 16 bytes whose low nibbles hold
 * values 0..15 of the block and high nibbles 16..31 (18 bytes).  n is a
 * multiple of 32. */
#define VQ_QK 32
#define VQ_Q8_0_BYTES 34
#define VQ_Q4_0_BYTES 18
void vq_q8_0(const float *x, size_t n, unsigned char *out);
void vq_q8_0_dequant(const unsigned char *in, size_t n, float *x);
void vq_q4_0(const float *x, size_t n, unsigned char *out);
void vq_q4_0_dequant(const unsigned char *in, size_t n, float *x);

/* sqrt(sum (a-b)^2 / sum a^2): the relative RMS error of b as a copy of a
 * (0 when a is all zeros and b equals it). */
double vq_rel_rms(const float *a, const float *b, size_t n);

struct st_file;
struct st_tensor;
/* The logical (unquantised) shape of a checkpoint tensor: an INT4 matrix
 * (U8 with a _scale tensor) has twice the columns it stores.  numel in
 * *n. */
int vq_tensor_numel(const struct st_file *f, const struct st_tensor *t,
    uint64_t *n);
/* A checkpoint tensor as floats, whatever its dtype: F32/BF16/F16/F64
 * converted, INT8 and INT4 matrices dequantised through their _scale
 * tensors (vesper-checkpoint(5)).  out holds vq_tensor_numel floats. */
int vq_tensor_f32(const struct st_file *f, const struct st_tensor *t,
    float *out);

#endif
