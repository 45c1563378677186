// matmul.cu: matrix products through cuBLASLt, bf16 operands with fp32
// accumulation, output bf16 (activations) or fp32 (weight gradients,
// accumulated with beta = 1).
//
// cuBLASLt is column-major; a row-major (m, n) matrix is a column-major
// (n, m) one, so row-major C = op(A) op(B) is computed as column-major
// C^T = op(B)^T op(A)^T, swapping the operands.  Plans (descriptors and the
// heuristic's algorithm) are cached by shape and by the operands' address
// alignment: a training step asks for the same dozen shapes hundreds of
// times.  The alignment matters: cuBLASLt's heuristic assumes 256-byte
// aligned operands unless told otherwise, and an algorithm chosen so gave
// wrong products on weights that start 128 bytes into a block (a width of
// 192 or 320 in bf16).
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <cublasLt.h>

#include "cuda_common.cuh"
#include "ops.cuh"

namespace {

const size_t workspace_bytes = 64u << 20;

struct plan {
	int ta, tb, m, n, k, c_f32, accumulate;
	int align_a, align_b, align_c;	// bytes, powers of two up to 256
	cublasLtMatmulDesc_t op;
	cublasLtMatrixLayout_t la, lb, lc;
	cublasLtMatmulAlgo_t algo;
};

} // namespace

struct vk_blas {
	cublasLtHandle_t lt;
	void *ws;
	struct plan plans[128];
	int nplans;
};

int vk_blas_create(struct vk_blas **out)
{
	struct vk_blas *b = (struct vk_blas *)calloc(1, sizeof *b);
	if (b == nullptr) {
		vk_set_error("out of host memory");
		return VK_ERR_NOMEM;
	}
	if (cublasLtCreate(&b->lt) != CUBLAS_STATUS_SUCCESS) {
		free(b);
		vk_set_error("cublasLtCreate failed");
		return VK_ERR_DEVICE;
	}
	if (cudaMalloc(&b->ws, workspace_bytes) != cudaSuccess) {
		cublasLtDestroy(b->lt);
		free(b);
		vk_set_error("cuBLASLt workspace: cudaMalloc of %zu bytes failed",
		    workspace_bytes);
		return VK_ERR_NOMEM;
	}
	*out = b;
	return 0;
}

void vk_blas_destroy(struct vk_blas *b)
{
	if (b == nullptr)
		return;
	for (int i = 0; i < b->nplans; i++) {
		cublasLtMatmulDescDestroy(b->plans[i].op);
		cublasLtMatrixLayoutDestroy(b->plans[i].la);
		cublasLtMatrixLayoutDestroy(b->plans[i].lb);
		cublasLtMatrixLayoutDestroy(b->plans[i].lc);
	}
	cudaFree(b->ws);
	cublasLtDestroy(b->lt);
	free(b);
}

static int plan_make(struct vk_blas *b, struct plan *p)
{
	// Column-major view: D (n, m) = op(Bcm) (n, k) * op(Acm) (k, m).
	cublasOperation_t opx = p->tb ? CUBLAS_OP_T : CUBLAS_OP_N;
	cublasOperation_t opy = p->ta ? CUBLAS_OP_T : CUBLAS_OP_N;
	// Stored shapes, column-major: Bcm is (n, k) if not transposed (ld n)
	// else (k, n) (ld k); Acm is (k, m) if not transposed else (m, k).
	uint64_t xr = p->tb ? p->k : p->n, xc = p->tb ? p->n : p->k;
	uint64_t yr = p->ta ? p->m : p->k, yc = p->ta ? p->k : p->m;
	cudaDataType_t ct = p->c_f32 ? CUDA_R_32F : CUDA_R_16BF;

	VK_CHECK_BLAS(cublasLtMatmulDescCreate(&p->op, CUBLAS_COMPUTE_32F,
	    CUDA_R_32F));
	VK_CHECK_BLAS(cublasLtMatmulDescSetAttribute(p->op,
	    CUBLASLT_MATMUL_DESC_TRANSA, &opx, sizeof opx));
	VK_CHECK_BLAS(cublasLtMatmulDescSetAttribute(p->op,
	    CUBLASLT_MATMUL_DESC_TRANSB, &opy, sizeof opy));
	VK_CHECK_BLAS(cublasLtMatrixLayoutCreate(&p->la, CUDA_R_16BF, xr, xc,
	    (int64_t)xr));
	VK_CHECK_BLAS(cublasLtMatrixLayoutCreate(&p->lb, CUDA_R_16BF, yr, yc,
	    (int64_t)yr));
	VK_CHECK_BLAS(cublasLtMatrixLayoutCreate(&p->lc, ct, p->n, p->m, p->n));

	cublasLtMatmulPreference_t pref;
	VK_CHECK_BLAS(cublasLtMatmulPreferenceCreate(&pref));
	size_t ws = workspace_bytes;
	uint32_t al_x = (uint32_t)p->align_b, al_y = (uint32_t)p->align_a;
	uint32_t al_c = (uint32_t)p->align_c;
	VK_CHECK_BLAS(cublasLtMatmulPreferenceSetAttribute(pref,
	    CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
	// Our A is cuBLASLt's B and the reverse (the swap above).
	VK_CHECK_BLAS(cublasLtMatmulPreferenceSetAttribute(pref,
	    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_x, sizeof al_x));
	VK_CHECK_BLAS(cublasLtMatmulPreferenceSetAttribute(pref,
	    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_y, sizeof al_y));
	VK_CHECK_BLAS(cublasLtMatmulPreferenceSetAttribute(pref,
	    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof al_c));
	VK_CHECK_BLAS(cublasLtMatmulPreferenceSetAttribute(pref,
	    CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof al_c));
	cublasLtMatmulHeuristicResult_t r;
	int found = 0;
	cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(b->lt, p->op, p->la,
	    p->lb, p->lc, p->lc, pref, 1, &r, &found);
	cublasLtMatmulPreferenceDestroy(pref);
	if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
		vk_set_error("cuBLASLt has no algorithm for a %d x %d x %d product "
		    "(status %d)", p->m, p->n, p->k, (int)st);
		return VK_ERR_DEVICE;
	}
	p->algo = r.algo;
	return 0;
}

// The largest power of two, up to 256, that divides the address.
static int align_of(const void *p)
{
	uintptr_t a = (uintptr_t)p;
	int al = 256;
	while (al > 1 && a % (uintptr_t)al != 0)
		al >>= 1;
	return al;
}

int vk_mm(struct vk_blas *b, cudaStream_t s, int ta, int tb, int m, int n,
    int k, const bf16 *A, const bf16 *Bm, void *C, int c_f32, float alpha,
    float beta)
{
	struct plan *p = nullptr;
	int acc = beta != 0.0f;
	int aa = align_of(A), ab = align_of(Bm), ac = align_of(C);

	for (int i = 0; i < b->nplans; i++) {
		struct plan *q = &b->plans[i];
		if (q->ta == ta && q->tb == tb && q->m == m && q->n == n &&
		    q->k == k && q->c_f32 == c_f32 && q->accumulate == acc &&
		    q->align_a == aa && q->align_b == ab && q->align_c == ac) {
			p = q;
			break;
		}
	}
	if (p == nullptr) {
		if (b->nplans == (int)(sizeof b->plans / sizeof b->plans[0])) {
			vk_set_error("matmul: more than %d product shapes",
			    b->nplans);
			return VK_ERR_DEVICE;
		}
		p = &b->plans[b->nplans];
		memset(p, 0, sizeof *p);
		p->ta = ta; p->tb = tb; p->m = m; p->n = n; p->k = k;
		p->c_f32 = c_f32; p->accumulate = acc;
		p->align_a = aa; p->align_b = ab; p->align_c = ac;
		VK_TRY(plan_make(b, p));
		b->nplans++;
	}
	VK_CHECK_BLAS(cublasLtMatmul(b->lt, p->op, &alpha, Bm, p->la, A, p->lb,
	    &beta, C, p->lc, C, p->lc, &p->algo, b->ws, workspace_bytes, s));
	return 0;
}
