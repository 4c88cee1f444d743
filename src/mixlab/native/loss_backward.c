/* Fused soft-target cross-entropy on the CPU, the backward: (softmax - t) * g in one sweep
 * per row, into `out`, which may be the logits themselves (inplace_backward). Stores to
 * float16/bfloat16 round to nearest-even; the problem and its checks are loss.h's.
 */
/* Held to tolerances, not to bits (see loss.c): let the compiler fuse. */
#pragma GCC optimize("fp-contract=fast")

#include <math.h>
#include <omp.h>
#include <stdint.h>

#include "loss.h"
#include "row_stats.h"
#include "simd.h"
#include "vexp.h"

/* |lse| above which float32 lse has lost too much: its rounding error, |lse| 2^-24, is the
 * relative error of every softmax value (64 gives <= 4e-6). Such rows recompute max and
 * log S (a second sweep, in cache) and take softmax = exp((z - m) - log S). */
#define LSE_EXACT_LIMIT 64.0

/* out = scale * exp((z - shift) - log_s) - sub * w, w the dense target row or 1 (sparse).
 * The exp bounds it, so meanwhile the next row of z and out is fetched into the cache. */
static inline __attribute__((always_inline)) void write_row(char *out, const char *z, int dt,
                                                            const char *t, int tdt, int dense,
                                                            int64_t n, float shift, float log_s,
                                                            float scale, float sub) {
    vf32 ones = (vf32){} + 1.0f;
    int64_t j = 0, row_bytes = n * elem_size(dt);
    for (; j + LANES <= n; j += LANES) {
        __builtin_prefetch(z + row_bytes + j * elem_size(dt));
        __builtin_prefetch(out + row_bytes + j * elem_size(dt), 1);
        vf32 w = dense ? load_lanes(t, tdt, j) : ones;
        vf32 p = vexp_to((load_lanes(z, dt, j) - shift) - log_s, dt != MIXLAB_F32);
        store_lanes_flush(out, dt, j, scale * p - sub * w);
    }
    if (j < n) {
        vf32 w = dense ? load_tail(t, tdt, j, n - j, 0.0f) : ones;
        vf32 p = vexp_to((load_tail(z, dt, j, n - j, 0.0f) - shift) - log_s, dt != MIXLAB_F32);
        store_tail(out, dt, j, n - j, scale * p - sub * w);
    }
}

/* dt, the target's form and its dtype (the logits' or float32) as constants. */
#define WRITE_ROW_FOR(DT)                                                                    \
    (!t                ? write_row(o, z, DT, t, DT, 0, n, shift, log_s, scale, sub)          \
     : p->tdt == DT    ? write_row(o, z, DT, t, DT, 1, n, shift, log_s, scale, sub)          \
                       : write_row(o, z, DT, t, MIXLAB_F32, 1, n, shift, log_s, scale, sub))

static void backward_row(const Problem *p, int64_t i, const void *g, int64_t g_stride,
                         const void *lse, const void *tsum, char *out) {
    int is64 = p->dt == MIXLAB_F64, dt = p->dt;
    int64_t n = p->classes;
    const char *z = logits_row(p, i), *t = target_row(p, i);
    char *o = out + i * n * elem_size(dt);
    double gi = get(g, i * g_stride, is64), shift = get(lse, i, is64), log_s = 0.0;
    if (!is64 && fabs(shift) > LSE_EXACT_LIMIT) {
        RowStats row = stats_of(p, i, WEIGH_NONE);
        shift = row.m;
        log_s = log(row.s);
    }
    double scale = t ? gi * get(tsum, i, is64) : gi;
    double sub = t ? gi : gi * p->eps / (double)n;
    /* mixup's two target classes, read before the row is written (out may be z) */
    int64_t a = 0, b = 0;
    double z_a = 0.0, z_b = 0.0;
    if (!t) {
        a = label(p->y_a, i, p->y_i32), b = label(p->y_b, i, p->y_i32);
        z_a = logit(z, dt, a), z_b = logit(z, dt, b);
    }
    if (is64) {
        for (int64_t j = 0; j < n; j++) {
            double w = t ? ((const double *)t)[j] : 1.0;
            ((double *)o)[j] = scale * exp(((const double *)z)[j] - shift) - sub * w;
        }
    } else if (dt == MIXLAB_F32) {
        WRITE_ROW_FOR(MIXLAB_F32);
    } else if (dt == MIXLAB_F16) {
        WRITE_ROW_FOR(MIXLAB_F16);
    } else {
        WRITE_ROW_FOR(MIXLAB_BF16);
    }
    if (t) return;
    double lam = get(p->lam, i * p->lam_stride, is64), keep = 1.0 - p->eps;
    double smooth = p->eps / (double)n;
    double t_a = a == b ? keep + smooth : keep * lam + smooth, t_b = keep * (1.0 - lam) + smooth;
    double p_a = exp(z_a - shift - log_s), p_b = exp(z_b - shift - log_s);
    if (is64) {
        ((double *)o)[b] = gi * (p_b - t_b);
        ((double *)o)[a] = gi * (p_a - t_a);
    } else {
        store_one(o, dt, b, (float)(gi * (p_b - t_b)));
        store_one(o, dt, a, (float)(gi * (p_a - t_a)));
    }
}

/* The gradient (softmax - t) * g of the forward's problem (LossArgs as mixlab_ce_forward's)
 * into out (which may be z); g: (batch,) with stride g_stride; lse and tsum: the forward's. */
int mixlab_ce_backward(const LossArgs *a) {
    Scalar lam;
    Problem p = problem_of(a, &lam);
    int status = check_problem(&p);
    if (status != LOSS_OK) return status;
    const void *g = a->g, *lse = a->lse, *tsum = a->tsum;
    int64_t g_stride = a->g_stride;
    char *out = a->out;
#pragma omp parallel for schedule(static) num_threads(a->n_threads) if (a->n_threads > 1)
    for (int64_t i = 0; i < p.batch; i++) backward_row(&p, i, g, g_stride, lse, tsum, out);
    return LOSS_OK;
}
