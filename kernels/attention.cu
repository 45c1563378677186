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
// Tiles arrive by cp.async into two buffers, the next while the current is
// used.
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

// The same, through cp.async (16-byte copies that bypass the registers,
// rows past T zero-filled by a source size of 0), so that the next tile
// loads while this one is used.  The caller commits and waits.
template <int HD>
__device__ __forceinline__ void tile_load_async(bf16 *dst, const bf16 *src,
    int r0, int T, int ld)
{
	const int per_row = HD / 8;
	for (int i = threadIdx.x; i < TC_BK * per_row; i += blockDim.x) {
		int r = i / per_row, c = (i % per_row) * 8;
		bool in = r0 + r < T;
		const bf16 *g = src + (size_t)(in ? r0 + r : 0) * ld + c;
		unsigned sa = (unsigned)__cvta_generic_to_shared(dst +
		    r * tc_shape<HD>::LDB + c);
		asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::
		    "r"(sa), "l"(g), "r"(in ? 16 : 0));
	}
}

// n floats (n <= blockDim.x) from src[r0 ...], zero past T, via cp.async.
__device__ __forceinline__ void vec_load_async(float *dst, const float *src,
    int r0, int T, int n)
{
	int t = threadIdx.x;
	if (t < n) {
		bool in = r0 + t < T;
		unsigned sa = (unsigned)__cvta_generic_to_shared(dst + t);
		asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::
		    "r"(sa), "l"(src + (in ? r0 + t : 0)), "r"(in ? 4 : 0));
	}
}

__device__ __forceinline__ void async_commit(void)
{
	asm volatile("cp.async.commit_group;\n" ::);
}

// Wait until at most n groups are still in flight.
template <int n>
__device__ __forceinline__ void async_wait(void)
{
	asm volatile("cp.async.wait_group %0;\n" :: "n"(n));
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
	// Two buffers of (K, V) tiles, then the warps' scratch (which first
	// holds the query tile), their P tiles and their row statistics.
	bf16 *KV = (bf16 *)smem;
	float *scr_all = (float *)(KV + 4 * S::TILE);
	bf16 *P_all = (bf16 *)(scr_all + TC_WARPS * S::SCR);
	float *st_all = (float *)(P_all + TC_WARPS * S::PT);	// 16 a warp

	int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
	int b = blockIdx.z, h = blockIdx.y, kvh = h / (a.H / a.KV);
	int q0 = blockIdx.x * TC_BQ;
	const bf16 *seq = qkv + (size_t)b * a.T * a.width;
	const bf16 *kbase = seq + (size_t)(a.H + kvh) * a.hd;
	const bf16 *vbase = seq + (size_t)(a.H + a.KV + kvh) * a.hd;
	float *scr = scr_all + w * S::SCR;
	bf16 *P = P_all + w * S::PT;
	float *corr_s = st_all + w * TC_ROWS;

	// The first key tile is on its way while the queries load.
	tile_load_async<HD>(KV, kbase, 0, a.T, a.width);
	tile_load_async<HD>(KV + S::TILE, vbase, 0, a.T, a.width);
	async_commit();
	bf16 *Qs = (bf16 *)scr_all;	// 64 x LDB bf16 fits in the scratch
	tile_load<HD>(Qs, seq + (size_t)h * a.hd, q0, a.T, a.width);
	__syncthreads();
	frag_a qf[HD / 16];
#pragma unroll
	for (int kk = 0; kk < HD / 16; kk++)
		wmma::load_matrix_sync(qf[kk], Qs + w * TC_ROWS * S::LDB + kk * 16,
		    S::LDB);
	__syncthreads();	// every warp has its queries: the scratch is free
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
	for (int k0 = 0, it = 0; k0 < kend; k0 += TC_BK, it++) {
		bf16 *Ks = KV + (it & 1) * 2 * S::TILE, *Vs = Ks + S::TILE;
		if (k0 + TC_BK < kend) {
			bf16 *nK = KV + ((it + 1) & 1) * 2 * S::TILE;
			tile_load_async<HD>(nK, kbase, k0 + TC_BK, a.T, a.width);
			tile_load_async<HD>(nK + S::TILE, vbase, k0 + TC_BK, a.T,
			    a.width);
			async_commit();
			async_wait<1>();
		} else {
			async_wait<0>();
		}
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
		// Every warp is done with this buffer before the next
		// iteration's prefetch overwrites it.
		__syncthreads();
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
// Three blocks an SM where shared memory allows that many (HD <= 64): the
// register cap this sets costs 28 bytes of spills at HD 64 (ptxas -v),
// against 2 blocks an SM without it.
template <int HD>
__global__ void __launch_bounds__(TC_WARPS * 32, HD <= 64 ? 3 : 1)
attn_bwd_dkv_tc_kernel(bf16 *dqkv, const float *dsum, const bf16 *dout,
    const bf16 *qkv, const float *lse, struct tc_dims a)
{
	typedef tc_shape<HD> S;
	extern __shared__ __align__(128) unsigned char smem[];
	// Two buffers of (Q, dO) tiles with their log-sum-exps and dsums, then
	// the warps' scratch, P^T and dS^T tiles.
	bf16 *QG = (bf16 *)smem;
	float *LD = (float *)(QG + 4 * S::TILE);	// 2 x (L 64, D 64)
	float *scr_all = LD + 4 * TC_BK;
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

	// The block's keys and values pass through the second buffer into
	// registers; the first buffer meanwhile receives the first queries.
	int nq = (a.T - k0 + TC_BK - 1) / TC_BK;	// query tiles a head
	int total = nq * group;
	{
		int h = kvh * group;
		tile_load_async<HD>(QG, seq + (size_t)h * a.hd, k0, a.T, a.width);
		tile_load_async<HD>(QG + S::TILE, gseq + (size_t)h * a.hd, k0,
		    a.T, a.H * a.hd);
		vec_load_async(LD, lse + ((size_t)b * a.H + h) * a.T, k0, a.T,
		    TC_BK);
		vec_load_async(LD + TC_BK, dsum + ((size_t)b * a.H + h) * a.T, k0,
		    a.T, TC_BK);
		async_commit();
	}
	bf16 *Ks = QG + 2 * S::TILE, *Vs = QG + 3 * S::TILE;
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
	__syncthreads();	// the second buffer is free again
	frag_c dk[HD / 16], dv[HD / 16];
#pragma unroll
	for (int f = 0; f < HD / 16; f++) {
		wmma::fill_fragment(dk[f], 0.0f);
		wmma::fill_fragment(dv[f], 0.0f);
	}
	int r = lane >> 1, c0 = (lane & 1) * 32;
	int key = k0 + w * TC_ROWS + r;

	for (int it = 0; it < total; it++) {
		int q0 = k0 + (it % nq) * TC_BK;
		bf16 *Qs = QG + (it & 1) * 2 * S::TILE, *Gs = Qs + S::TILE;
		float *Ls = LD + (it & 1) * 2 * TC_BK, *Ds = Ls + TC_BK;
		if (it + 1 < total) {
			int h = kvh * group + (it + 1) / nq;
			int nq0 = k0 + ((it + 1) % nq) * TC_BK;
			bf16 *nQ = QG + ((it + 1) & 1) * 2 * S::TILE;
			float *nL = LD + ((it + 1) & 1) * 2 * TC_BK;
			tile_load_async<HD>(nQ, seq + (size_t)h * a.hd, nq0, a.T,
			    a.width);
			tile_load_async<HD>(nQ + S::TILE, gseq + (size_t)h * a.hd,
			    nq0, a.T, a.H * a.hd);
			vec_load_async(nL, lse + ((size_t)b * a.H + h) * a.T, nq0,
			    a.T, TC_BK);
			vec_load_async(nL + TC_BK, dsum + ((size_t)b * a.H + h) * a.T,
			    nq0, a.T, TC_BK);
			async_commit();
			async_wait<1>();
		} else {
			async_wait<0>();
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
				wmma::load_matrix_sync(qb, Qs + j * 16 * S::LDB + kk * 16,
				    S::LDB);
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
			pv[c] = q >= key && q < a.T ? __expf(s0 - Ls[c0 + c]) : 0.0f;
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
				wmma::load_matrix_sync(gb, Gs + j * 16 * S::LDB + kk * 16,
				    S::LDB);
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
				wmma::load_matrix_sync(gb, Gs + kk * 16 * S::LDB + f * 16,
				    S::LDB);
				wmma::mma_sync(dv[f], pa, gb, dv[f]);
				wmma::load_matrix_sync(qb, Qs + kk * 16 * S::LDB + f * 16,
				    S::LDB);
				wmma::mma_sync(dk[f], sa, qb, dk[f]);
			}
		}
		__syncthreads();	// before the next prefetch reuses the buffer
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
	// Two buffers of (K, V) tiles, then the warps' scratch and dS tiles.
	bf16 *KV = (bf16 *)smem;
	float *scr_all = (float *)(KV + 4 * S::TILE);
	bf16 *dS_all = (bf16 *)(scr_all + TC_WARPS * S::SCR);

	int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
	int b = blockIdx.z, h = blockIdx.y, kvh = h / (a.H / a.KV);
	int q0 = blockIdx.x * TC_BQ;
	const bf16 *seq = qkv + (size_t)b * a.T * a.width;
	const bf16 *kbase = seq + (size_t)(a.H + kvh) * a.hd;
	const bf16 *vbase = seq + (size_t)(a.H + a.KV + kvh) * a.hd;
	float *scr = scr_all + w * S::SCR;
	bf16 *dS = dS_all + w * S::PT;

	// Queries and output gradients pass through the second buffer into
	// registers while the first key tile arrives in the first.
	tile_load_async<HD>(KV, kbase, 0, a.T, a.width);
	tile_load_async<HD>(KV + S::TILE, vbase, 0, a.T, a.width);
	async_commit();
	bf16 *Qs = KV + 2 * S::TILE, *Gs = KV + 3 * S::TILE;
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
	__syncthreads();	// the second buffer is free again
	frag_c dq[HD / 16];
#pragma unroll
	for (int f = 0; f < HD / 16; f++)
		wmma::fill_fragment(dq[f], 0.0f);
	int r = lane >> 1, c0 = (lane & 1) * 32;
	int i = q0 + w * TC_ROWS + r;
	size_t srow = ((size_t)b * a.H + h) * a.T + (i < a.T ? i : 0);
	float L = lse[srow], D = dsum[srow];

	int kend = min(a.T, q0 + TC_BQ);
	for (int k0 = 0, it = 0; k0 < kend; k0 += TC_BK, it++) {
		bf16 *Ks = KV + (it & 1) * 2 * S::TILE, *Vs = Ks + S::TILE;
		if (k0 + TC_BK < kend) {
			bf16 *nK = KV + ((it + 1) & 1) * 2 * S::TILE;
			tile_load_async<HD>(nK, kbase, k0 + TC_BK, a.T, a.width);
			tile_load_async<HD>(nK + S::TILE, vbase, k0 + TC_BK, a.T,
			    a.width);
			async_commit();
			async_wait<1>();
		} else {
			async_wait<0>();
		}
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
		__syncthreads();	// before the next prefetch reuses the buffer
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
	int sh = 4 * S::TILE * 2 + TC_WARPS * (S::SCR * 4 + S::PT * 2 +
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

	int sk = 4 * S::TILE * 2 + 4 * TC_BK * 4 + TC_WARPS * (S::SCR * 4 +
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
