// attention.cu: causal multi-head attention on the tensor cores, flash
// style (FlashAttention-2's schedule, Dao 2023): tiles of 64 keys pass
// through shared memory, each query row keeps a running max and sum
// (online softmax), no T x T matrix reaches device memory, and the
// forward pass keeps each row's log-sum-exp for the backward pass, which
// recomputes the probabilities from it.
//
// A block is 4 warps; a warp owns 16 rows (queries, or keys in the dK/dV
// kernel).  Products run as 16x16x16 bf16 WMMA operations with fp32
// accumulators.  The softmax runs on a warp's 16 x 64 score tile staged in
// shared memory, two lanes a row.  Rescaling the output accumulators row
// by row needs the row of each accumulator element, which the WMMA API
// leaves opaque: each warp reads it once by loading a tile of row numbers
// into an accumulator fragment (row_of below).
//
// Backward: one kernel for dK and dV (a block owns 64 keys and sweeps the
// queries at or after them), one for dQ (a block owns 64 queries and
// sweeps the keys at or before them); both recompute P.  No atomics, so
// the results are the same from run to run.
//
// qkv rows: H query heads, then KV key heads, then KV value heads, hd each;
// query head h reads key/value head h / (H / KV).
#include <cmath>
#include <mma.h>

#include "cuda_common.cuh"
#include "ops.cuh"

using namespace nvcuda;

#define TC_WARPS 4
#define TC_ROWS 16			// rows a warp
#define TC_BQ (TC_WARPS * TC_ROWS)	// 64 rows a block
#define TC_BK 64			// keys (or queries) a tile

typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16,
    wmma::row_major> frag_a;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16,
    wmma::col_major> frag_bt;	// a row-major tile read transposed
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16,
    wmma::row_major> frag_b;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> frag_c;

// Shared-memory strides, padded by 16 bytes a row so that the 8 rows an
// ldmatrix reads fall in different banks.
template <int HD> struct tc_shape {
	static const int LDB = HD + 8;			// bf16 tiles (rows, HD)
	static const int LDS = (HD > TC_BK ? HD : TC_BK) + 4;	// fp32 scratch
	static const int LDP = TC_BK + 8;		// bf16 (16, 64) tiles
	static const int TILE = TC_BK * LDB;		// elements
	static const int SCR = TC_ROWS * LDS;		// floats a warp
	static const int PT = TC_ROWS * LDP;		// bf16 a warp
};

struct tc_dims {
	int T, H, KV, hd, width;	// width = (H + 2 KV) hd
	float scale;
};

// Rows [r0, r0 + 64) of a (T, ld) bf16 matrix, HD columns from src, into
// a shared tile; rows past T are zero.  16-byte loads.
template <int HD>
__device__ __forceinline__ void tile_load(bf16 *dst, const bf16 *src, int r0,
    int T, int ld)
{
	const int per_row = HD / 8;
	for (int i = threadIdx.x; i < TC_BK * per_row; i += blockDim.x) {
		int r = i / per_row, c = (i % per_row) * 8;
		uint4 v = make_uint4(0, 0, 0, 0);
		if (r0 + r < T)
			v = *(const uint4 *)(src + (size_t)(r0 + r) * ld + c);
		*(uint4 *)(dst + r * tc_shape<HD>::LDB + c) = v;
	}
}

// The row (0..15) of each element of this lane's accumulator fragment.
__device__ __forceinline__ void row_of(float *scr, int lds, int *rows)
{
	int lane = threadIdx.x & 31;
	for (int i = lane; i < 256; i += 32)
		scr[(i / 16) * lds + i % 16] = (float)(i / 16);
	__syncwarp();
	frag_c f;
	wmma::load_matrix_sync(f, scr, lds, wmma::mem_row_major);
#pragma unroll
	for (int e = 0; e < f.num_elements; e++)
		rows[e] = (int)f.x[e];
	__syncwarp();
}

// A warp's (16, HD) fp32 accumulators, times scale, to bf16 rows of dst
// (row stride ld) for the rows below T.
template <int HD>
__device__ __forceinline__ void rows_store(bf16 *dst, int ld, int row0, int T,
    frag_c *acc, float *scr, float scale)
{
	const int LDS = tc_shape<HD>::LDS;
	int lane = threadIdx.x & 31;
#pragma unroll
	for (int f = 0; f < HD / 16; f++)
		wmma::store_matrix_sync(scr + f * 16, acc[f], LDS,
		    wmma::mem_row_major);
	__syncwarp();
	int r = lane >> 1, c0 = (lane & 1) * (HD / 2);
	if (row0 + r < T) {
		__nv_bfloat162 *o = (__nv_bfloat162 *)(dst + (size_t)(row0 + r) * ld);
#pragma unroll
		for (int c = 0; c < HD / 2; c += 2)
			o[(c0 + c) / 2] = __floats2bfloat162_rn(
			    scr[r * LDS + c0 + c] * scale,
			    scr[r * LDS + c0 + c + 1] * scale);
	}
	__syncwarp();
}

// kernels

// grid (T / 64, H, B), 128 threads.
template <int HD>
__global__ void __launch_bounds__(TC_WARPS * 32)
attn_fwd_tc_kernel(bf16 *out, float *lse, const bf16 *qkv, struct tc_dims a)
{
	typedef tc_shape<HD> S;
	extern __shared__ __align__(128) unsigned char smem[];
	bf16 *Qs = (bf16 *)smem, *Ks = Qs + S::TILE, *Vs = Ks + S::TILE;
	float *scr_all = (float *)(Vs + S::TILE);
	bf16 *P_all = (bf16 *)(scr_all + TC_WARPS * S::SCR);
	float *st_all = (float *)(P_all + TC_WARPS * S::PT);	// 16 a warp

	int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
	int b = blockIdx.z, h = blockIdx.y, kvh = h / (a.H / a.KV);
	int q0 = blockIdx.x * TC_BQ;
	const bf16 *seq = qkv + (size_t)b * a.T * a.width;
	float *scr = scr_all + w * S::SCR;
	bf16 *P = P_all + w * S::PT;
	float *corr_s = st_all + w * TC_ROWS;

	tile_load<HD>(Qs, seq + (size_t)h * a.hd, q0, a.T, a.width);
	__syncthreads();
	frag_a qf[HD / 16];
#pragma unroll
	for (int kk = 0; kk < HD / 16; kk++)
		wmma::load_matrix_sync(qf[kk], Qs + w * TC_ROWS * S::LDB + kk * 16,
		    S::LDB);
	int rows[8];
	row_of(scr, S::LDS, rows);
	frag_c of[HD / 16];
#pragma unroll
	for (int f = 0; f < HD / 16; f++)
		wmma::fill_fragment(of[f], 0.0f);

	int r = lane >> 1, c0 = (lane & 1) * 32;
	int i = q0 + w * TC_ROWS + r;	// this lane's query
	float m = -INFINITY, l = 0.0f;
	int kend = min(a.T, q0 + TC_BQ);
	for (int k0 = 0; k0 < kend; k0 += TC_BK) {
		__syncthreads();
		tile_load<HD>(Ks, seq + (size_t)(a.H + kvh) * a.hd, k0, a.T, a.width);
		tile_load<HD>(Vs, seq + (size_t)(a.H + a.KV + kvh) * a.hd, k0, a.T,
		    a.width);
		__syncthreads();
#pragma unroll
		for (int j = 0; j < TC_BK / 16; j++) {
			frag_c sacc;
			wmma::fill_fragment(sacc, 0.0f);
#pragma unroll
			for (int kk = 0; kk < HD / 16; kk++) {
				frag_bt kb;
				wmma::load_matrix_sync(kb, Ks + j * 16 * S::LDB + kk * 16,
				    S::LDB);
				wmma::mma_sync(sacc, qf[kk], kb, sacc);
			}
			wmma::store_matrix_sync(scr + j * 16, sacc, S::LDS,
			    wmma::mem_row_major);
		}
		__syncwarp();
		// Online softmax over this lane's half row.
		float sv[32], mt = -INFINITY;
#pragma unroll
		for (int c = 0; c < 32; c++) {
			int key = k0 + c0 + c;
			float s = scr[r * S::LDS + c0 + c] * a.scale;
			sv[c] = key <= i ? s : -INFINITY;
			mt = fmaxf(mt, sv[c]);
		}
		mt = fmaxf(mt, __shfl_xor_sync(0xffffffffu, mt, 1));
		float mn = fmaxf(m, mt);	// finite: key k0 <= i always
		float corr = __expf(m - mn), sum = 0.0f;
#pragma unroll
		for (int c = 0; c < 32; c += 2) {
			float p0 = __expf(sv[c] - mn), p1 = __expf(sv[c + 1] - mn);
			sum += p0 + p1;
			*(__nv_bfloat162 *)(P + r * S::LDP + c0 + c) =
			    __floats2bfloat162_rn(p0, p1);
		}
		sum += __shfl_xor_sync(0xffffffffu, sum, 1);
		l = l * corr + sum;
		m = mn;
		if ((lane & 1) == 0)
			corr_s[r] = corr;
		__syncwarp();
#pragma unroll
		for (int f = 0; f < HD / 16; f++)
#pragma unroll
			for (int e = 0; e < of[f].num_elements; e++)
				of[f].x[e] *= corr_s[rows[e]];
#pragma unroll
		for (int kk = 0; kk < TC_BK / 16; kk++) {
			frag_a pa;
			wmma::load_matrix_sync(pa, P + kk * 16, S::LDP);
#pragma unroll
			for (int f = 0; f < HD / 16; f++) {
				frag_b vb;
				wmma::load_matrix_sync(vb, Vs + kk * 16 * S::LDB + f * 16,
				    S::LDB);
				wmma::mma_sync(of[f], pa, vb, of[f]);
			}
		}
		__syncwarp();
	}
	if ((lane & 1) == 0) {
		corr_s[r] = 1.0f / l;
		if (i < a.T)
			lse[((size_t)b * a.H + h) * a.T + i] = m + logf(l);
	}
	__syncwarp();
#pragma unroll
	for (int f = 0; f < HD / 16; f++)
#pragma unroll
		for (int e = 0; e < of[f].num_elements; e++)
			of[f].x[e] *= corr_s[rows[e]];
	rows_store<HD>(out + (size_t)b * a.T * a.H * a.hd + (size_t)h * a.hd,
	    a.H * a.hd, q0 + w * TC_ROWS, a.T, of, scr, 1.0f);
}

// dsum[b, h, i] = sum over d of dout * out: one warp a (row, head).
__global__ void attn_dsum_kernel(float *dsum, const bf16 *dout, const bf16 *out,
    int N, int T, int H, int hd)
{
	int gw = (blockIdx.x * blockDim.x + threadIdx.x) >> 5;
	int lane = threadIdx.x & 31;
	if (gw >= N * H)
		return;
	int n = gw / H, h = gw % H;
	const bf16 *g = dout + (size_t)n * H * hd + (size_t)h * hd;
	const bf16 *o = out + (size_t)n * H * hd + (size_t)h * hd;
	float s = 0.0f;
	for (int d = lane; d < hd; d += 32)
		s += __bfloat162float(g[d]) * __bfloat162float(o[d]);
	s = vk_warp_sum(s);
	if (lane == 0) {
		int b = n / T, t = n % T;
		dsum[((size_t)b * H + h) * T + t] = s;
	}
}

// dK, dV: a block owns 64 keys of one key/value head; a warp 16 of them.
// It computes the transposed tiles S^T = K Q^T and dP^T = V dO^T, so the
// key rows stay the fragments' rows throughout.
// grid (T / 64, KV, B), 128 threads.
template <int HD>
__global__ void __launch_bounds__(TC_WARPS * 32)
attn_bwd_dkv_tc_kernel(bf16 *dqkv, const float *dsum, const bf16 *dout,
    const bf16 *qkv, const float *lse, struct tc_dims a)
{
	typedef tc_shape<HD> S;
	extern __shared__ __align__(128) unsigned char smem[];
	bf16 *Ks = (bf16 *)smem, *Vs = Ks + S::TILE, *Qs = Vs + S::TILE;
	bf16 *Gs = Qs + S::TILE;
	float *Ls = (float *)(Gs + S::TILE), *Ds = Ls + TC_BK;
	float *scr_all = Ds + TC_BK;
	bf16 *P_all = (bf16 *)(scr_all + TC_WARPS * S::SCR);
	bf16 *dS_all = P_all + TC_WARPS * S::PT;

	int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
	int b = blockIdx.z, kvh = blockIdx.y;
	int k0 = blockIdx.x * TC_BQ;
	int group = a.H / a.KV;
	const bf16 *seq = qkv + (size_t)b * a.T * a.width;
	const bf16 *gseq = dout + (size_t)b * a.T * a.H * a.hd;
	float *scr = scr_all + w * S::SCR;
	bf16 *P = P_all + w * S::PT, *dS = dS_all + w * S::PT;

	tile_load<HD>(Ks, seq + (size_t)(a.H + kvh) * a.hd, k0, a.T, a.width);
	tile_load<HD>(Vs, seq + (size_t)(a.H + a.KV + kvh) * a.hd, k0, a.T,
	    a.width);
	__syncthreads();
	frag_a kf[HD / 16], vf[HD / 16];
#pragma unroll
	for (int kk = 0; kk < HD / 16; kk++) {
		wmma::load_matrix_sync(kf[kk], Ks + w * TC_ROWS * S::LDB + kk * 16,
		    S::LDB);
		wmma::load_matrix_sync(vf[kk], Vs + w * TC_ROWS * S::LDB + kk * 16,
		    S::LDB);
	}
	frag_c dk[HD / 16], dv[HD / 16];
#pragma unroll
	for (int f = 0; f < HD / 16; f++) {
		wmma::fill_fragment(dk[f], 0.0f);
		wmma::fill_fragment(dv[f], 0.0f);
	}
	int r = lane >> 1, c0 = (lane & 1) * 32;
	int key = k0 + w * TC_ROWS + r;

	for (int h = kvh * group; h < (kvh + 1) * group; h++) {
		const float *Lrow = lse + ((size_t)b * a.H + h) * a.T;
		const float *Drow = dsum + ((size_t)b * a.H + h) * a.T;
		for (int q0 = k0; q0 < a.T; q0 += TC_BK) {
			__syncthreads();
			tile_load<HD>(Qs, seq + (size_t)h * a.hd, q0, a.T, a.width);
			tile_load<HD>(Gs, gseq + (size_t)h * a.hd, q0, a.T,
			    a.H * a.hd);
			for (int t = threadIdx.x; t < TC_BK; t += blockDim.x) {
				Ls[t] = q0 + t < a.T ? Lrow[q0 + t] : 0.0f;
				Ds[t] = q0 + t < a.T ? Drow[q0 + t] : 0.0f;
			}
			__syncthreads();
			// S^T: (16 keys, 64 queries).
#pragma unroll
			for (int j = 0; j < TC_BK / 16; j++) {
				frag_c acc;
				wmma::fill_fragment(acc, 0.0f);
#pragma unroll
				for (int kk = 0; kk < HD / 16; kk++) {
					frag_bt qb;
					wmma::load_matrix_sync(qb, Qs + j * 16 * S::LDB +
					    kk * 16, S::LDB);
					wmma::mma_sync(acc, kf[kk], qb, acc);
				}
				wmma::store_matrix_sync(scr + j * 16, acc, S::LDS,
				    wmma::mem_row_major);
			}
			__syncwarp();
			float pv[32];
#pragma unroll
			for (int c = 0; c < 32; c += 2) {
				int q = q0 + c0 + c;
				float s0 = scr[r * S::LDS + c0 + c] * a.scale;
				float s1 = scr[r * S::LDS + c0 + c + 1] * a.scale;
				pv[c] = q >= key && q < a.T ?
				    __expf(s0 - Ls[c0 + c]) : 0.0f;
				pv[c + 1] = q + 1 >= key && q + 1 < a.T ?
				    __expf(s1 - Ls[c0 + c + 1]) : 0.0f;
				*(__nv_bfloat162 *)(P + r * S::LDP + c0 + c) =
				    __floats2bfloat162_rn(pv[c], pv[c + 1]);
			}
			__syncwarp();
			// dP^T: (16 keys, 64 queries).
#pragma unroll
			for (int j = 0; j < TC_BK / 16; j++) {
				frag_c acc;
				wmma::fill_fragment(acc, 0.0f);
#pragma unroll
				for (int kk = 0; kk < HD / 16; kk++) {
					frag_bt gb;
					wmma::load_matrix_sync(gb, Gs + j * 16 * S::LDB +
					    kk * 16, S::LDB);
					wmma::mma_sync(acc, vf[kk], gb, acc);
				}
				wmma::store_matrix_sync(scr + j * 16, acc, S::LDS,
				    wmma::mem_row_major);
			}
			__syncwarp();
#pragma unroll
			for (int c = 0; c < 32; c += 2) {
				float d0 = pv[c] * (scr[r * S::LDS + c0 + c] - Ds[c0 + c]);
				float d1 = pv[c + 1] * (scr[r * S::LDS + c0 + c + 1] -
				    Ds[c0 + c + 1]);
				*(__nv_bfloat162 *)(dS + r * S::LDP + c0 + c) =
				    __floats2bfloat162_rn(d0, d1);
			}
			__syncwarp();
			// dV += P^T dO, dK += dS^T Q.
#pragma unroll
			for (int kk = 0; kk < TC_BK / 16; kk++) {
				frag_a pa, sa;
				wmma::load_matrix_sync(pa, P + kk * 16, S::LDP);
				wmma::load_matrix_sync(sa, dS + kk * 16, S::LDP);
#pragma unroll
				for (int f = 0; f < HD / 16; f++) {
					frag_b gb, qb;
					wmma::load_matrix_sync(gb, Gs + kk * 16 * S::LDB +
					    f * 16, S::LDB);
					wmma::mma_sync(dv[f], pa, gb, dv[f]);
					wmma::load_matrix_sync(qb, Qs + kk * 16 * S::LDB +
					    f * 16, S::LDB);
					wmma::mma_sync(dk[f], sa, qb, dk[f]);
				}
			}
		}
	}
	bf16 *base = dqkv + (size_t)b * a.T * a.width;
	rows_store<HD>(base + (size_t)(a.H + kvh) * a.hd, a.width,
	    k0 + w * TC_ROWS, a.T, dk, scr, a.scale);
	rows_store<HD>(base + (size_t)(a.H + a.KV + kvh) * a.hd, a.width,
	    k0 + w * TC_ROWS, a.T, dv, scr, 1.0f);
}

// dQ: a block owns 64 queries of one head; a warp 16 of them.
// grid (T / 64, H, B), 128 threads.
template <int HD>
__global__ void __launch_bounds__(TC_WARPS * 32)
attn_bwd_dq_tc_kernel(bf16 *dqkv, const float *dsum, const bf16 *dout,
    const bf16 *qkv, const float *lse, struct tc_dims a)
{
	typedef tc_shape<HD> S;
	extern __shared__ __align__(128) unsigned char smem[];
	bf16 *Qs = (bf16 *)smem, *Gs = Qs + S::TILE, *Ks = Gs + S::TILE;
	bf16 *Vs = Ks + S::TILE;
	float *scr_all = (float *)(Vs + S::TILE);
	bf16 *dS_all = (bf16 *)(scr_all + TC_WARPS * S::SCR);

	int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
	int b = blockIdx.z, h = blockIdx.y, kvh = h / (a.H / a.KV);
	int q0 = blockIdx.x * TC_BQ;
	const bf16 *seq = qkv + (size_t)b * a.T * a.width;
	float *scr = scr_all + w * S::SCR;
	bf16 *dS = dS_all + w * S::PT;

	tile_load<HD>(Qs, seq + (size_t)h * a.hd, q0, a.T, a.width);
	tile_load<HD>(Gs, dout + (size_t)b * a.T * a.H * a.hd + (size_t)h * a.hd,
	    q0, a.T, a.H * a.hd);
	__syncthreads();
	frag_a qf[HD / 16], gf[HD / 16];
#pragma unroll
	for (int kk = 0; kk < HD / 16; kk++) {
		wmma::load_matrix_sync(qf[kk], Qs + w * TC_ROWS * S::LDB + kk * 16,
		    S::LDB);
		wmma::load_matrix_sync(gf[kk], Gs + w * TC_ROWS * S::LDB + kk * 16,
		    S::LDB);
	}
	frag_c dq[HD / 16];
#pragma unroll
	for (int f = 0; f < HD / 16; f++)
		wmma::fill_fragment(dq[f], 0.0f);
	int r = lane >> 1, c0 = (lane & 1) * 32;
	int i = q0 + w * TC_ROWS + r;
	size_t srow = ((size_t)b * a.H + h) * a.T + (i < a.T ? i : 0);
	float L = lse[srow], D = dsum[srow];

	int kend = min(a.T, q0 + TC_BQ);
	for (int k0 = 0; k0 < kend; k0 += TC_BK) {
		__syncthreads();
		tile_load<HD>(Ks, seq + (size_t)(a.H + kvh) * a.hd, k0, a.T, a.width);
		tile_load<HD>(Vs, seq + (size_t)(a.H + a.KV + kvh) * a.hd, k0, a.T,
		    a.width);
		__syncthreads();
#pragma unroll
		for (int j = 0; j < TC_BK / 16; j++) {
			frag_c acc;
			wmma::fill_fragment(acc, 0.0f);
#pragma unroll
			for (int kk = 0; kk < HD / 16; kk++) {
				frag_bt kb;
				wmma::load_matrix_sync(kb, Ks + j * 16 * S::LDB + kk * 16,
				    S::LDB);
				wmma::mma_sync(acc, qf[kk], kb, acc);
			}
			wmma::store_matrix_sync(scr + j * 16, acc, S::LDS,
			    wmma::mem_row_major);
		}
		__syncwarp();
		float pv[32];
#pragma unroll
		for (int c = 0; c < 32; c++) {
			int key = k0 + c0 + c;
			float s = scr[r * S::LDS + c0 + c] * a.scale;
			pv[c] = key <= i && i < a.T ? __expf(s - L) : 0.0f;
		}
		__syncwarp();
#pragma unroll
		for (int j = 0; j < TC_BK / 16; j++) {
			frag_c acc;
			wmma::fill_fragment(acc, 0.0f);
#pragma unroll
			for (int kk = 0; kk < HD / 16; kk++) {
				frag_bt vb;
				wmma::load_matrix_sync(vb, Vs + j * 16 * S::LDB + kk * 16,
				    S::LDB);
				wmma::mma_sync(acc, gf[kk], vb, acc);
			}
			wmma::store_matrix_sync(scr + j * 16, acc, S::LDS,
			    wmma::mem_row_major);
		}
		__syncwarp();
#pragma unroll
		for (int c = 0; c < 32; c += 2) {
			float d0 = pv[c] * (scr[r * S::LDS + c0 + c] - D);
			float d1 = pv[c + 1] * (scr[r * S::LDS + c0 + c + 1] - D);
			*(__nv_bfloat162 *)(dS + r * S::LDP + c0 + c) =
			    __floats2bfloat162_rn(d0, d1);
		}
		__syncwarp();
#pragma unroll
		for (int kk = 0; kk < TC_BK / 16; kk++) {
			frag_a sa;
			wmma::load_matrix_sync(sa, dS + kk * 16, S::LDP);
#pragma unroll
			for (int f = 0; f < HD / 16; f++) {
				frag_b kb;
				wmma::load_matrix_sync(kb, Ks + kk * 16 * S::LDB + f * 16,
				    S::LDB);
				wmma::mma_sync(dq[f], sa, kb, dq[f]);
			}
		}
		__syncwarp();
	}
	rows_store<HD>(dqkv + (size_t)b * a.T * a.width + (size_t)h * a.hd,
	    a.width, q0 + w * TC_ROWS, a.T, dq, scr, a.scale);
}

// launchers

template <int HD>
static int fwd_launch(bf16 *out, float *lse, const bf16 *qkv, int B,
    struct tc_dims a, cudaStream_t s)
{
	typedef tc_shape<HD> S;
	int sh = 3 * S::TILE * 2 + TC_WARPS * (S::SCR * 4 + S::PT * 2 +
	    TC_ROWS * 4);
	VK_CHECK(cudaFuncSetAttribute(attn_fwd_tc_kernel<HD>,
	    cudaFuncAttributeMaxDynamicSharedMemorySize, sh));
	dim3 grid((a.T + TC_BQ - 1) / TC_BQ, a.H, B);
	attn_fwd_tc_kernel<HD><<<grid, TC_WARPS * 32, sh, s>>>(out, lse, qkv, a);
	VK_CHECK_LAUNCH("attn_fwd_tc_kernel");
	return 0;
}

template <int HD>
static int bwd_launch(bf16 *dqkv, float *dsum, const bf16 *dout,
    const bf16 *qkv, const bf16 *out, const float *lse, int B,
    struct tc_dims a, cudaStream_t s)
{
	typedef tc_shape<HD> S;
	int N = B * a.T;
	unsigned wblocks = (unsigned)(((size_t)N * a.H * 32 + 255) / 256);
	attn_dsum_kernel<<<wblocks, 256, 0, s>>>(dsum, dout, out, N, a.T, a.H,
	    a.hd);
	VK_CHECK_LAUNCH("attn_dsum_kernel");

	int sk = 4 * S::TILE * 2 + 2 * TC_BK * 4 + TC_WARPS * (S::SCR * 4 +
	    2 * S::PT * 2);
	VK_CHECK(cudaFuncSetAttribute(attn_bwd_dkv_tc_kernel<HD>,
	    cudaFuncAttributeMaxDynamicSharedMemorySize, sk));
	dim3 gk((a.T + TC_BQ - 1) / TC_BQ, a.KV, B);
	attn_bwd_dkv_tc_kernel<HD><<<gk, TC_WARPS * 32, sk, s>>>(dqkv, dsum, dout,
	    qkv, lse, a);
	VK_CHECK_LAUNCH("attn_bwd_dkv_tc_kernel");

	int sq = 4 * S::TILE * 2 + TC_WARPS * (S::SCR * 4 + S::PT * 2);
	VK_CHECK(cudaFuncSetAttribute(attn_bwd_dq_tc_kernel<HD>,
	    cudaFuncAttributeMaxDynamicSharedMemorySize, sq));
	dim3 gq((a.T + TC_BQ - 1) / TC_BQ, a.H, B);
	attn_bwd_dq_tc_kernel<HD><<<gq, TC_WARPS * 32, sq, s>>>(dqkv, dsum, dout,
	    qkv, lse, a);
	VK_CHECK_LAUNCH("attn_bwd_dq_tc_kernel");
	return 0;
}

static int tc_dims_make(struct tc_dims *a, int T, int H, int KV, int hd)
{
	a->T = T;
	a->H = H;
	a->KV = KV;
	a->hd = hd;
	a->width = (H + 2 * KV) * hd;
	a->scale = 1.0f / sqrtf((float)hd);
	if (hd != 32 && hd != 64 && hd != 128) {
		vk_set_error("attention: head size %d (this backend has 32, 64 "
		    "and 128)", hd);
		return VK_ERR_NOTIMPL;
	}
	return 0;
}

int vk_attn_fwd(bf16 *out, float *lse, const bf16 *qkv, int B, int T, int H,
    int KV, int hd, cudaStream_t s)
{
	struct tc_dims a;
	VK_TRY(tc_dims_make(&a, T, H, KV, hd));
	switch (hd) {
	case 32: return fwd_launch<32>(out, lse, qkv, B, a, s);
	case 64: return fwd_launch<64>(out, lse, qkv, B, a, s);
	default: return fwd_launch<128>(out, lse, qkv, B, a, s);
	}
}

int vk_attn_bwd(bf16 *dqkv, float *dsum, const bf16 *dout, const bf16 *qkv,
    const bf16 *out, const float *lse, int B, int T, int H, int KV, int hd,
    cudaStream_t s)
{
	struct tc_dims a;
	VK_TRY(tc_dims_make(&a, T, H, KV, hd));
	switch (hd) {
	case 32: return bwd_launch<32>(dqkv, dsum, dout, qkv, out, lse, B, a, s);
	case 64: return bwd_launch<64>(dqkv, dsum, dout, qkv, out, lse, B, a, s);
	default: return bwd_launch<128>(dqkv, dsum, dout, qkv, out, lse, B, a, s);
	}
}
