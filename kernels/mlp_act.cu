// mlp_act.cu: the gated MLP's activation, h = act(gate) * up, in one pass
// over the (gate | up) rows of the fused gate/up product, and its backward.
//
//   silu(x) = x s(x), s the logistic sigmoid
//   gelu(x) = x Phi(x), Phi the normal CDF (the exact erf form)
//   era(x)  = x s (1 + gamma H(s)), s = sigmoid(x / temp), H the binary
//             entropy of s in bits
// For ERA, dH/ds = log2((1 - s) / s) = -(x / temp) / ln 2, so the
// derivative needs no logarithm of s.
#include <cmath>

#include "cuda_common.cuh"
#include "ops.cuh"

#define VK_ACT_SILU 0
#define VK_ACT_GELU 1
#define VK_ACT_ERA 2

__device__ __forceinline__ float softplus(float z)
{
	return z > 20.0f ? z : log1pf(__expf(z));
}

// act(x) and act'(x).
__device__ __forceinline__ void act_eval(float x, int act, float gamma,
    float temp, float *f, float *df)
{
	if (act == VK_ACT_SILU) {
		float s = 1.0f / (1.0f + __expf(-x));
		*f = x * s;
		*df = s * (1.0f + x * (1.0f - s));
	} else if (act == VK_ACT_GELU) {
		float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
		float pdf = 0.39894228040143268f * __expf(-0.5f * x * x);
		*f = x * cdf;
		*df = cdf + x * pdf;
	} else {
		float z = x / temp;
		float s = 1.0f / (1.0f + __expf(-z));
		// Entropy in nats from softplus, exact where s rounds to 0 or 1.
		float hn = s * softplus(-z) + (1.0f - s) * softplus(z);
		float hb = hn * 1.4426950408889634f;
		float g = 1.0f + gamma * hb;
		float ds = s * (1.0f - s) / temp;
		float dh = -z * 1.4426950408889634f;
		*f = x * s * g;
		*df = s * g + x * ds * (g + s * gamma * dh);
	}
}

// kernels

__global__ void gated_fwd_kernel(bf16 *h, const bf16 *gu, int N, int F,
    int act, float gamma, float temp)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= (size_t)N * F)
		return;
	size_t n = i / F, j = i % F;
	const bf16 *row = gu + n * 2 * F;
	float g = __bfloat162float(row[j]), u = __bfloat162float(row[F + j]);
	float f, df;
	act_eval(g, act, gamma, temp, &f, &df);
	h[i] = __float2bfloat16(f * u);
}

__global__ void gated_bwd_kernel(bf16 *dgu, const bf16 *dh, const bf16 *gu,
    int N, int F, int act, float gamma, float temp)
{
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i >= (size_t)N * F)
		return;
	size_t n = i / F, j = i % F;
	const bf16 *row = gu + n * 2 * F;
	float g = __bfloat162float(row[j]), u = __bfloat162float(row[F + j]);
	float d = __bfloat162float(dh[i]);
	float f, df;
	act_eval(g, act, gamma, temp, &f, &df);
	bf16 *drow = dgu + n * 2 * F;
	drow[j] = __float2bfloat16(d * u * df);
	drow[F + j] = __float2bfloat16(d * f);
}

// launchers

int vk_gated_fwd(bf16 *h, const bf16 *gu, int N, int F, int act, float gamma,
    float temp, cudaStream_t s)
{
	size_t n = (size_t)N * F;
	gated_fwd_kernel<<<(unsigned)((n + 255) / 256), 256, 0, s>>>(h, gu, N, F,
	    act, gamma, temp);
	VK_CHECK_LAUNCH("gated_fwd_kernel");
	return 0;
}

int vk_gated_bwd(bf16 *dgu, const bf16 *dh, const bf16 *gu, int N, int F,
    int act, float gamma, float temp, cudaStream_t s)
{
	size_t n = (size_t)N * F;
	gated_bwd_kernel<<<(unsigned)((n + 255) / 256), 256, 0, s>>>(dgu, dh, gu,
	    N, F, act, gamma, temp);
	VK_CHECK_LAUNCH("gated_bwd_kernel");
	return 0;
}
