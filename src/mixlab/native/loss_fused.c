/* Fused soft-target cross-entropy on the CPU, forward and gradient in one call: where the
 * gradient's scale g per row is known up front (1/B for a mean, 1 for a sum or for rows the
 * caller scales later), each row's exp(z - m) are computed once, kept as float32 (in the
 * float32 gradient buffer itself, else in a per-thread scratch row) and scaled into
 * (softmax - t) * g after the row's sum: one exp per logit instead of loss.c's plus
 * loss_backward.c's. Float64 logits keep the two-call path (they are for gradcheck).
 */
/* Held to tolerances, not to bits (see loss.c): let the compiler fuse. */
#pragma GCC optimize("fp-contract=fast")

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>

#include "loss.h"
#include "row_stats.h"
#include "simd.h"
#include "vexp.h"

/* out = scale * e - sub * w, w the dense target row or 1 (sparse); e may be out itself. */
static inline __attribute__((always_inline)) void scale_row(char *out, int dt, const float *e,
                                                            const char *t, int tdt, int dense,
                                                            int64_t n, float scale, float sub) {
    vf32 ones = (vf32){} + 1.0f;
    int64_t j = 0;
    for (; j + LANES <= n; j += LANES) {
        vf32 w = dense ? load_lanes(t, tdt, j) : ones;
        store_lanes_flush(out, dt, j, scale * load_f32(e + j) - sub * w);
    }
    if (j < n) {
        vf32 w = dense ? load_tail(t, tdt, j, n - j, 0.0f) : ones;
        store_tail(out, dt, j, n - j, scale * load_tail(e, MIXLAB_F32, j, n - j, 0.0f) - sub * w);
    }
}

/* Row i: its max (a read-only sweep), then exp(z - m) into e with the sums (chunk_sums, every
 * term relative to the max, so no online rescaling), the loss, and the gradient sweep. */
static inline __attribute__((always_inline)) void fused_row(const Problem *p, int64_t i, int dt,
                                                            const char *t, int tdt, int weigh,
                                                            float *e, double g, void *loss,
                                                            char *out) {
    int64_t n = p->classes, zsize = elem_size(dt), tsize = elem_size(tdt);
    const char *z = logits_row(p, i);
    float m = chunk_max(z, dt, n), shift = m == -INFINITY ? 0.0f : m;
    RowStats row = {m, 0.0, 0.0, 0.0};
    for (int64_t c0 = 0; c0 < n; c0 += CHUNK) {
        int64_t len = n - c0 < CHUNK ? n - c0 : CHUNK;
        chunk_sums(z + c0 * zsize, dt, t ? t + c0 * tsize : t, tdt, weigh, len, shift, &row,
                   e + c0);
    }
    row_loss(p, i, row, loss, 0, 0);
    double inv_s = 1.0 / row.s; /* S = 0 (no finite logit): NaN gradients, as loss_backward.c */
    double scale = t ? g * row.w * inv_s : g * inv_s, sub = t ? g : g * p->eps / (double)n;
    int64_t a = 0, b = 0;
    double p_a = 0.0, p_b = 0.0;
    if (!t) { /* read before the sweep: e may be out */
        a = label(p->y_a, i, p->y_i32), b = label(p->y_b, i, p->y_i32);
        p_a = e[a] * inv_s, p_b = e[b] * inv_s;
    }
    scale_row(out, dt, e, t, tdt, t != 0, n, (float)scale, (float)sub);
    if (t) return;
    double lam = get(p->lam, i * p->lam_stride, 0), keep = 1.0 - p->eps;
    double smooth = p->eps / (double)n;
    double t_a = a == b ? keep + smooth : keep * lam + smooth, t_b = keep * (1.0 - lam) + smooth;
    store_one(out, dt, b, (float)(g * (p_b - t_b)));
    store_one(out, dt, a, (float)(g * (p_a - t_a)));
}

/* dt, the target's weighing and dtype (the logits' or float32) as constants. */
#define FUSED_ROW_FOR(DT)                                                                    \
    (weigh == WEIGH_NONE      ? fused_row(p, i, DT, t, DT, WEIGH_NONE, e, g, loss, o)        \
     : weigh == WEIGH_UNIFORM ? fused_row(p, i, DT, t, DT, WEIGH_UNIFORM, e, g, loss, o)     \
     : p->tdt == DT           ? fused_row(p, i, DT, t, DT, WEIGH_DENSE, e, g, loss, o)       \
                              : fused_row(p, i, DT, t, MIXLAB_F32, WEIGH_DENSE, e, g, loss, o))

static void row_with_grad(const Problem *p, int64_t i, const void *g_rows, int64_t g_stride,
                          float *scratch, void *loss, char *out) {
    const char *t = target_row(p, i);
    char *o = out + i * p->classes * elem_size(p->dt);
    double g = get(g_rows, i * g_stride, 0);
    float *e = scratch ? scratch : (float *)o;
    int weigh = weigh_of(p);
    if (p->dt == MIXLAB_F32)
        FUSED_ROW_FOR(MIXLAB_F32);
    else if (p->dt == MIXLAB_F16)
        FUSED_ROW_FOR(MIXLAB_F16);
    else
        FUSED_ROW_FOR(MIXLAB_BF16);
}

/* The loss of rows (float32), reduced as `reduction` asks (a sum in double, in row order),
 * into loss in dtype dt: (batch,) for REDUCE_NONE, else one value. */
static void reduce_rows(const float *rows, int64_t batch, int reduction, int dt, void *loss) {
    if (reduction == REDUCE_NONE) {
        for (int64_t i = 0; i < batch; i++) store_one(loss, dt, i, rows[i]);
        return;
    }
    double sum = 0.0;
    for (int64_t i = 0; i < batch; i++) sum += rows[i];
    store_one(loss, dt, 0, (float)(reduction == REDUCE_MEAN ? sum / (double)batch : sum));
}

/* The forward's loss, reduced (reduce_rows) into loss in the logits' dtype, and its gradient
 * (softmax - t) * g into out (the logits' dtype and shape, not the logits themselves); g:
 * (batch,) float32 with stride g_stride, or g_value. LossArgs otherwise as
 * mixlab_ce_forward's. Float32/float16/bfloat16 logits only. */
int mixlab_ce_forward_grad(const LossArgs *a) {
    Scalar lam, g_one;
    Problem p = problem_of(a, &lam);
    if (p.dt == MIXLAB_F64) return LOSS_BAD_DTYPE;
    int status = check_problem(&p);
    if (status != LOSS_OK) return status;
    const void *g = a->g ? a->g : scalar(&g_one, 0, a->g_value);
    int64_t g_stride = a->g ? a->g_stride : 0, batch = p.batch, classes = p.classes;
    int n_threads = a->n_threads < 1 ? 1 : (int)a->n_threads;
    char *out = a->out;
    /* the rows' float32 losses, then (16-bit logits) one float32 row per thread for
     * exp(z - m) */
    size_t per_thread = p.dt == MIXLAB_F32 ? 0 : (size_t)classes;
    float *rows = malloc(((size_t)batch + (size_t)n_threads * per_thread) * sizeof(float));
    if (!rows) return LOSS_NO_MEMORY;
#pragma omp parallel num_threads(n_threads) if (n_threads > 1)
    {
        float *mine = per_thread ? rows + batch + omp_get_thread_num() * per_thread : 0;
#pragma omp for schedule(static)
        for (int64_t i = 0; i < batch; i++) row_with_grad(&p, i, g, g_stride, mine, rows, out);
    }
    reduce_rows(rows, batch, (int)a->reduction, p.dt, a->loss);
    free(rows);
    return LOSS_OK;
}
