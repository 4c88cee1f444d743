/* Fused soft-target cross-entropy on the CPU: forward and backward, one row at a time.
 *
 * Targets are sparse (mixup: t = (1-eps)(lam onehot(y_a) + (1-lam) onehot(y_b)) + eps/C,
 * never built) or dense ((B, C) probabilities). With m the row max and S = sum exp(z - m):
 *     loss = sum(t) log S - sum_c t_c (z_c - m),   lse = m + log S,
 * every term relative to the row max, so a large common offset of the logits costs no
 * accuracy, and a class with t_c = 0 adds 0 even where z_c = -inf (0 * -inf would be NaN).
 *
 * The forward reads each row from memory once: the row goes in chunks that stay in L1,
 * each swept twice (its max, then exp and the target terms), with the running sums
 * rescaled when a chunk raises the max (online log-sum-exp). The backward writes
 * (softmax - t) * g in one sweep, into `out`, which may be the logits themselves.
 * Arithmetic is float32 for float32/float16/bfloat16 logits (exact widening, stores
 * rounded to nearest-even), with the chunks' sums folded into double; float64 logits run
 * a plain double loop (they are for gradcheck, not speed). exp is vexp below: a
 * polynomial, vectorized, with a tested error bound (tests/test_native_loss.py).
 *
 * Rows are split across OpenMP threads (the libgomp torch has loaded) when the caller
 * asks for more than one: it decides from the size whether the work pays for the start-up.
 */
/* Unlike mix.c, whose float32 results must match the reference's separate multiplies and
 * adds bit for bit, the loss is held to tolerances: let the compiler fuse them (the exp
 * polynomial runs ~1.5x faster with FMA). */
#pragma GCC optimize("fp-contract=fast")

#include <math.h>
#include <omp.h>
#include <stdint.h>

#include "simd.h"
#include "vexp.h"

enum { CHUNK = 4096 }; /* elements per chunk: 16 KiB of float32, in L1 between its sweeps */
/* status codes; on an error nothing has been written */
enum { LOSS_OK = 0, LOSS_NO_CLASSES = 1, LOSS_BAD_Y_A = 2, LOSS_BAD_Y_B = 3, LOSS_BAD_LAM = 4 };

static inline int64_t elem_size(int dt) {
    return dt == MIXLAB_F64 ? 8 : dt == MIXLAB_F32 ? 4 : 2;
}

/* Exported for the error-bound test. */
void mixlab_vexp(const float *x, float *y, int64_t n) {
    int64_t j = 0;
    for (; j + LANES <= n; j += LANES) store_f32(y + j, vexp(load_f32(x + j)));
    if (j < n) store_tail(y, MIXLAB_F32, j, n - j, vexp(load_tail(x, MIXLAB_F32, j, n - j, 0.0f)));
}

/* ---- the forward ------------------------------------------------------------------------- */

/* A row's running statistics: max m, sum exp(z - m), sum w (z - m), sum w. */
typedef struct {
    double m, s, dot, w;
} RowStats;

/* What the target terms weigh: nothing, every class alike (w = 1; mixup's smoothing term),
 * or a dense target row. */
enum { WEIGH_NONE = 0, WEIGH_UNIFORM = 1, WEIGH_DENSE = 2 };

static inline float hmax(vf32 v) {
    float m = v[0];
    for (int i = 1; i < LANES; i++) m = v[i] > m ? v[i] : m;
    return m;
}

static inline double hsum(vf32 v) {
    double s = 0.0;
    for (int i = 0; i < LANES; i++) s += v[i];
    return s;
}

static inline vf32 vmax(vf32 a, vf32 b) { return select_lanes(b > a, b, a); }

/* w * d, but 0 where w == 0 (so a -inf logit with no target mass adds nothing). */
static inline vf32 weighted(vf32 w, vf32 d) { return select_lanes(w != 0.0f, w * d, (vf32){}); }

/* Four running maxima: one would wait on its own compare-and-blend every step. */
static inline __attribute__((always_inline)) float chunk_max(const void *z, int dt, int64_t n) {
    vf32 m0 = (vf32){} - INFINITY, m1 = m0, m2 = m0, m3 = m0;
    int64_t j = 0;
    for (; j + 4 * LANES <= n; j += 4 * LANES) {
        m0 = vmax(m0, load_lanes(z, dt, j));
        m1 = vmax(m1, load_lanes(z, dt, j + LANES));
        m2 = vmax(m2, load_lanes(z, dt, j + 2 * LANES));
        m3 = vmax(m3, load_lanes(z, dt, j + 3 * LANES));
    }
    for (; j + LANES <= n; j += LANES) m0 = vmax(m0, load_lanes(z, dt, j));
    if (j < n) m1 = vmax(m1, load_tail(z, dt, j, n - j, -INFINITY));
    return hmax(vmax(vmax(m0, m1), vmax(m2, m3)));
}

/* Adds a chunk's exp(z - m) and target terms to `row`; lanes past n weigh 0. */
static inline __attribute__((always_inline)) void chunk_sums(const void *z, int dt, const void *t,
                                                             int tdt, int weigh, int64_t n,
                                                             float m, RowStats *row) {
    vf32 s = {}, dot = {}, wsum = {};
    int64_t j = 0;
    for (; j + LANES <= n; j += LANES) {
        vf32 d = load_lanes(z, dt, j) - m;
        s += vexp(d);
        if (weigh == WEIGH_UNIFORM) {
            dot += d;
        } else if (weigh == WEIGH_DENSE) {
            vf32 w = load_lanes(t, tdt, j);
            dot += weighted(w, d);
            wsum += w;
        }
    }
    if (j < n) {
        vf32 d = load_tail(z, dt, j, n - j, -INFINITY) - m, ones = (vf32){} + 1.0f;
        s += vexp(d);
        vf32 w = weigh == WEIGH_DENSE ? load_tail(t, tdt, j, n - j, 0.0f)
                                      : load_tail(&ones, MIXLAB_F32, 0, n - j, 0.0f);
        if (weigh != WEIGH_NONE) dot += weighted(w, d);
        if (weigh == WEIGH_DENSE) wsum += w;
    }
    row->s += hsum(s);
    row->dot += hsum(dot);
    row->w += weigh == WEIGH_DENSE ? hsum(wsum) : (double)n;
}

/* The whole row in chunks, with the online rescaling when a chunk raises the max. */
static inline __attribute__((always_inline)) RowStats row_stats(const char *z, int dt,
                                                               const char *t, int tdt,
                                                               int weigh, int64_t n) {
    RowStats row = {-INFINITY, 0.0, 0.0, 0.0};
    int64_t zsize = elem_size(dt), tsize = elem_size(tdt);
    for (int64_t c0 = 0; c0 < n; c0 += CHUNK) {
        int64_t len = n - c0 < CHUNK ? n - c0 : CHUNK;
        float cm = chunk_max(z + c0 * zsize, dt, len);
        if (cm > row.m) {
            if (row.m != -INFINITY) { /* before any finite max the sums hold only 0 and -inf */
                row.s *= exp(row.m - cm);
                row.dot -= row.w * (cm - row.m);
            }
            row.m = cm;
        }
        float shift = row.m == -INFINITY ? 0.0f : (float)row.m;
        chunk_sums(z + c0 * zsize, dt, t ? t + c0 * tsize : t, tdt, weigh, len, shift, &row);
    }
    return row;
}

static RowStats row_stats_f64(const double *z, const double *t, int weigh, int64_t n) {
    RowStats row = {-INFINITY, 0.0, 0.0, 0.0};
    for (int64_t j = 0; j < n; j++) row.m = z[j] > row.m ? z[j] : row.m;
    double shift = row.m == -INFINITY ? 0.0 : row.m;
    for (int64_t j = 0; j < n; j++) {
        double d = z[j] - shift, w = weigh == WEIGH_DENSE ? t[j] : 1.0;
        row.s += exp(d);
        if (weigh != WEIGH_NONE && w != 0.0) row.dot += w * d;
        row.w += w;
    }
    return row;
}

/* The per-row vectors (lam, g, losses, lse, target sums) are float32, or float64 for float64
 * logits; a stride of 0 repeats one value for every row. */
static inline double get(const void *p, int64_t i, int is64) {
    return is64 ? ((const double *)p)[i] : ((const float *)p)[i];
}

static inline void put(void *p, int64_t i, int is64, double v) {
    if (is64)
        ((double *)p)[i] = v;
    else
        ((float *)p)[i] = (float)v;
}

static inline int64_t label(const void *y, int64_t i, int y_i32) {
    return y_i32 ? ((const int32_t *)y)[i] : ((const int64_t *)y)[i];
}

static inline double logit(const void *z, int dt, int64_t j) {
    return dt == MIXLAB_F64 ? ((const double *)z)[j] : load_one(z, dt, j);
}

/* w * d, but 0 where w == 0: the scalar twin of `weighted`. */
static inline double term(double w, double d) { return w == 0.0 ? 0.0 : w * d; }

typedef struct {
    const char *z;
    int dt;
    int64_t batch, classes;
    const void *y_a, *y_b; /* NULL for a dense target */
    int y_i32;
    const void *lam;
    int64_t lam_stride;
    double eps;
    const char *t; /* dense target, or NULL */
    int tdt;
} Problem;

static RowStats stats_of(const Problem *p, int64_t i, int weigh) {
    const char *z = p->z + i * p->classes * elem_size(p->dt);
    const char *t = p->t ? p->t + i * p->classes * elem_size(p->tdt) : 0;
    switch (p->dt) { /* constant dtypes: each case gets its own specialized loops */
    case MIXLAB_F32:
        return row_stats(z, MIXLAB_F32, t, p->tdt, weigh, p->classes);
    case MIXLAB_F16:
        return row_stats(z, MIXLAB_F16, t, p->tdt, weigh, p->classes);
    case MIXLAB_BF16:
        return row_stats(z, MIXLAB_BF16, t, p->tdt, weigh, p->classes);
    default:
        return row_stats_f64((const double *)z, (const double *)t, weigh, p->classes);
    }
}

static void forward_row(const Problem *p, int64_t i, void *loss, void *lse, void *tsum) {
    int is64 = p->dt == MIXLAB_F64;
    int weigh = p->t ? WEIGH_DENSE : p->eps > 0 ? WEIGH_UNIFORM : WEIGH_NONE;
    RowStats row = stats_of(p, i, weigh);
    double log_s = log(row.s), value;
    if (p->t) {
        value = row.w * log_s - row.dot;
        put(tsum, i, is64, row.w);
    } else {
        const char *z = p->z + i * p->classes * elem_size(p->dt);
        double lam = get(p->lam, i * p->lam_stride, is64), keep = 1.0 - p->eps;
        double d_a = logit(z, p->dt, label(p->y_a, i, p->y_i32)) - row.m;
        double d_b = logit(z, p->dt, label(p->y_b, i, p->y_i32)) - row.m;
        value = log_s - term(keep * lam, d_a) - term(keep * (1.0 - lam), d_b);
        if (p->eps > 0) value -= p->eps / (double)p->classes * row.dot;
    }
    if (row.m == -INFINITY) value = NAN; /* no finite logit: no softmax, as in torch */
    put(loss, i, is64, value);
    put(lse, i, is64, row.m + log_s);
}

/* ---- the backward ------------------------------------------------------------------------ */

/* |lse| above which float32 lse has lost too much: its rounding error, |lse| 2^-24, is the
 * relative error of every softmax value (64 gives <= 4e-6). Such rows recompute max and
 * log S (a second sweep, in cache) and take softmax = exp((z - m) - log S). */
#define LSE_EXACT_LIMIT 64.0

/* out = scale * exp((z - shift) - log_s) - sub * t (t = 1 for the sparse target). */
static inline __attribute__((always_inline)) void write_row(char *out, const char *z, int dt,
                                                            const char *t, int tdt, int64_t n,
                                                            float shift, float log_s,
                                                            float scale, float sub) {
    vf32 ones = (vf32){} + 1.0f;
    int64_t j = 0;
    for (; j + LANES <= n; j += LANES) {
        vf32 w = t ? load_lanes(t, tdt, j) : ones;
        vf32 p = vexp((load_lanes(z, dt, j) - shift) - log_s);
        store_lanes(out, dt, j, scale * p - sub * w);
    }
    if (j < n) {
        vf32 w = t ? load_tail(t, tdt, j, n - j, 0.0f) : ones;
        vf32 p = vexp((load_tail(z, dt, j, n - j, 0.0f) - shift) - log_s);
        store_tail(out, dt, j, n - j, scale * p - sub * w);
    }
}

static void backward_row(const Problem *p, int64_t i, const void *g, int64_t g_stride,
                         const void *lse, const void *tsum, char *out) {
    int is64 = p->dt == MIXLAB_F64, dt = p->dt;
    const char *z = p->z + i * p->classes * elem_size(dt);
    const char *t = p->t ? p->t + i * p->classes * elem_size(p->tdt) : 0;
    char *o = out + i * p->classes * elem_size(dt);
    double gi = get(g, i * g_stride, is64), shift = get(lse, i, is64), log_s = 0.0;
    if (!is64 && fabs(shift) > LSE_EXACT_LIMIT) {
        RowStats row = stats_of(p, i, WEIGH_NONE);
        shift = row.m;
        log_s = log(row.s);
    }
    double scale = t ? gi * get(tsum, i, is64) : gi;
    double sub = t ? gi : gi * p->eps / (double)p->classes;
    /* mixup's two target classes, read before the row is written (out may be z) */
    int64_t a = 0, b = 0;
    double z_a = 0.0, z_b = 0.0;
    if (!t) {
        a = label(p->y_a, i, p->y_i32), b = label(p->y_b, i, p->y_i32);
        z_a = logit(z, dt, a), z_b = logit(z, dt, b);
    }
    if (is64) {
        for (int64_t j = 0; j < p->classes; j++) {
            double w = t ? ((const double *)t)[j] : 1.0;
            ((double *)o)[j] = scale * exp(((const double *)z)[j] - shift) - sub * w;
        }
    } else if (dt == MIXLAB_F32) {
        write_row(o, z, MIXLAB_F32, t, p->tdt, p->classes, shift, log_s, scale, sub);
    } else if (dt == MIXLAB_F16) {
        write_row(o, z, MIXLAB_F16, t, p->tdt, p->classes, shift, log_s, scale, sub);
    } else {
        write_row(o, z, MIXLAB_BF16, t, p->tdt, p->classes, shift, log_s, scale, sub);
    }
    if (t) return;
    double lam = get(p->lam, i * p->lam_stride, is64), keep = 1.0 - p->eps;
    double smooth = p->eps / (double)p->classes;
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

/* ---- entry points (called through ctypes) ---------------------------------------------- */

/* The checks that keep a bad value from reading out of bounds or going silently wrong:
 * labels in [0, C), lam in [0, 1] (NaN fails). O(B), before anything is written. */
static int check_problem(const Problem *p) {
    if (p->classes <= 0) return LOSS_NO_CLASSES;
    if (p->t) return LOSS_OK;
    for (int64_t i = 0; i < p->batch; i++) {
        int64_t a = label(p->y_a, i, p->y_i32), b = label(p->y_b, i, p->y_i32);
        double lam = get(p->lam, i * p->lam_stride, p->dt == MIXLAB_F64);
        if (a < 0 || a >= p->classes) return LOSS_BAD_Y_A;
        if (b < 0 || b >= p->classes) return LOSS_BAD_Y_B;
        if (!(lam >= 0.0 && lam <= 1.0)) return LOSS_BAD_LAM;
    }
    return LOSS_OK;
}

/* logits z: (batch, classes) contiguous, dtype dt; sparse target: y_a, y_b (int64, or int32
 * when y_i32), lam (stride lam_stride), eps; dense target: t (same shape, dtype tdt), with
 * y_a == NULL. Writes loss, lse and (dense) tsum, each (batch,). */
int mixlab_ce_forward(const void *z, int dt, int64_t batch, int64_t classes, const void *y_a,
                      const void *y_b, int y_i32, const void *lam, int64_t lam_stride,
                      double eps, const void *t, int tdt, void *loss, void *lse, void *tsum,
                      int n_threads) {
    Problem p = {z, dt, batch, classes, y_a, y_b, y_i32, lam, lam_stride, eps, t, tdt};
    int status = check_problem(&p);
    if (status != LOSS_OK) return status;
#pragma omp parallel for schedule(static) num_threads(n_threads) if (n_threads > 1)
    for (int64_t i = 0; i < batch; i++) forward_row(&p, i, loss, lse, tsum);
    return LOSS_OK;
}

/* The gradient (softmax - t) * g of the forward's problem into out (which may be z); g:
 * (batch,) with stride g_stride; lse and tsum: the forward's. */
int mixlab_ce_backward(const void *g, int64_t g_stride, const void *z, int dt, int64_t batch,
                       int64_t classes, const void *y_a, const void *y_b, int y_i32,
                       const void *lam, int64_t lam_stride, double eps, const void *t, int tdt,
                       const void *lse, const void *tsum, void *out, int n_threads) {
    Problem p = {z, dt, batch, classes, y_a, y_b, y_i32, lam, lam_stride, eps, t, tdt};
    int status = check_problem(&p);
    if (status != LOSS_OK) return status;
#pragma omp parallel for schedule(static) num_threads(n_threads) if (n_threads > 1)
    for (int64_t i = 0; i < batch; i++) backward_row(&p, i, g, g_stride, lse, tsum, out);
    return LOSS_OK;
}
