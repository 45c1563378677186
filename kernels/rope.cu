// rope.cu: rotary positions, the Hugging Face "rotate_half" form: the pair
// (i, i + hd/2) of each head turns by t * theta^(-2i/hd).  The backward
// pass is the same rotation by the opposite angle.
#include <cmath>

#include "cuda_common.cuh"
#include "ops.cuh"

// kernels

__global__ void rope_table_kernel(float2 *cs, int T, int hd, float theta)
{
	int half = hd / 2;
	int i = blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= T * half)
		return;
	int t = i / half, j = i % half;
	// In double: t * freq reaches thousands of radians, where fp32's
	// rounding of the angle would move positions far down the context.
	double freq = pow((double)theta, -2.0 * j / hd);
	double a = t * freq;
	cs[i] = make_float2((float)cos(a), (float)sin(a));
}

// One thread a pair; heads of q then of k, in place.
__global__ void rope_kernel(bf16 *qkv, const float2 *cs, int N, int T,
    int nheads, int hd, int width, float sign)
{
	int half = hd / 2;
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	size_t total = (size_t)N * nheads * half;
	if (i >= total)
		return;
	int j = (int)(i % half);
	size_t rest = i / half;
	int h = (int)(rest % nheads);
	int n = (int)(rest / nheads);
	int t = n % T;
	float2 c = cs[t * half + j];
	float sn = sign * c.y;
	bf16 *p = qkv + (size_t)n * width + (size_t)h * hd;
	float a = __bfloat162float(p[j]), b = __bfloat162float(p[j + half]);
	p[j] = __float2bfloat16(a * c.x - b * sn);
	p[j + half] = __float2bfloat16(b * c.x + a * sn);
}

// launchers

int vk_rope_table(float2 *cs, int T, int hd, float theta, cudaStream_t s)
{
	int n = T * (hd / 2);
	rope_table_kernel<<<(n + 255) / 256, 256, 0, s>>>(cs, T, hd, theta);
	VK_CHECK_LAUNCH("rope_table_kernel");
	return 0;
}

int vk_rope(bf16 *qkv, const float2 *cs, int N, int T, int H, int KV, int hd,
    float sign, cudaStream_t s)
{
	// q heads and k heads are adjacent in a row: H + KV heads to turn.
	int nheads = H + KV;
	size_t total = (size_t)N * nheads * (hd / 2);
	unsigned blocks = (unsigned)((total + 255) / 256);
	rope_kernel<<<blocks, 256, 0, s>>>(qkv, cs, N, T, nheads, hd,
	    (H + 2 * KV) * hd, sign);
	VK_CHECK_LAUNCH("rope_kernel");
	return 0;
}
