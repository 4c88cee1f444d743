/* A row's softmax statistics, for the forward (loss.c) and for the backward's rows whose
 * float32 lse is too coarse (loss_backward.c).
 *
 * With m the row max and S = sum exp(z - m), the loss is sum(t) log S - sum_c t_c (z_c - m):
 * every term relative to the row max, so a large common offset of the logits costs no
 * accuracy, and a class with t_c = 0 adds 0 even where z_c = -inf (0 * -inf would be NaN).
 * The row is read from memory once. Most rows take one sweep (row_stats_one_sweep: the
 * max alongside exp(z) itself, all relative to the max after); the others go in chunks that
 * stay in L1, each swept twice (its max, then exp(z - m) and the target terms), with the
 * running sums rescaled when a chunk raises the max (online log-sum-exp). Arithmetic is float32 for float32/float16/bfloat16 logits
 * (exact widening), with the chunks' sums folded into double; float64 logits run a plain
 * double loop (they are for gradcheck, not speed).
 */
#ifndef MIXLAB_ROW_STATS_H
#define MIXLAB_ROW_STATS_H

#include <math.h>

#include "loss.h"
#include "vexp.h"

enum { CHUNK = 4096 }; /* elements per chunk: 16 KiB of float32, in L1 between its sweeps */

/* A row's running statistics: max m, sum exp(z - m), sum w (z - m), sum w. */
typedef struct {
    double m, s, dot, w;
} RowStats;

/* What the target terms weigh: nothing, every class alike (w = 1; mixup's smoothing term),
 * or a dense target row. */
enum { WEIGH_NONE = 0, WEIGH_UNIFORM = 1, WEIGH_DENSE = 2 };

/* w * d, but 0 where w == 0 (so a -inf logit with no target mass adds nothing). */
static inline vf32 weighted(vf32 w, vf32 d) { return select_lanes(w != 0.0f, w * d, (vf32){}); }

/* Four running maxima: one would wait on its own max every step. */
static inline __attribute__((always_inline)) float chunk_max(const void *z, int dt, int64_t n) {
    vf32 m0 = (vf32){} - INFINITY, m1 = m0, m2 = m0, m3 = m0;
    int64_t j = 0;
    for (; j + 4 * LANES <= n; j += 4 * LANES) {
        m0 = max_lanes(m0, load_lanes(z, dt, j));
        m1 = max_lanes(m1, load_lanes(z, dt, j + LANES));
        m2 = max_lanes(m2, load_lanes(z, dt, j + 2 * LANES));
        m3 = max_lanes(m3, load_lanes(z, dt, j + 3 * LANES));
    }
    for (; j + LANES <= n; j += LANES) m0 = max_lanes(m0, load_lanes(z, dt, j));
    if (j < n) m1 = max_lanes(m1, load_tail(z, dt, j, n - j, -INFINITY));
    return hmax(max_lanes(max_lanes(m0, m1), max_lanes(m2, m3)));
}

/* Adds a chunk's exp(z - m) and target terms to `row`; lanes past n weigh 0. The exp is
 * the bottleneck, so meanwhile the next chunk's bytes (the next row's, after a row's last)
 * are fetched into the cache: its max sweep then finds them there. `keep`, unless NULL,
 * receives the exp(z - m) themselves (loss_fused.c's gradient sweep scales them). */
static inline __attribute__((always_inline)) void chunk_sums(const void *z, int dt, const void *t,
                                                             int tdt, int weigh, int64_t n,
                                                             float m, RowStats *row,
                                                             float *keep) {
    vf32 s = {}, dot = {}, wsum = {};
    const char *ahead = (const char *)z + n * elem_size(dt);
    int64_t j = 0;
    for (; j + LANES <= n; j += LANES) {
        __builtin_prefetch(ahead + j * elem_size(dt));
        vf32 d = load_lanes(z, dt, j) - m, e = vexp_to(d, dt != MIXLAB_F32);
        s += e;
        if (keep) store_f32(keep + j, e);
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
        vf32 e = vexp_to(d, dt != MIXLAB_F32);
        s += e;
        if (keep) store_tail(keep, MIXLAB_F32, j, n - j, e);
        vf32 w = weigh == WEIGH_DENSE ? load_tail(t, tdt, j, n - j, 0.0f)
                                      : load_tail(&ones, MIXLAB_F32, 0, n - j, 0.0f);
        if (weigh != WEIGH_NONE) dot += weighted(w, d);
        if (weigh == WEIGH_DENSE) wsum += w;
    }
    row->s += hsum(s);
    if (weigh != WEIGH_NONE) row->dot += hsum(dot);
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
        chunk_sums(z + c0 * zsize, dt, t ? t + c0 * tsize : t, tdt, weigh, len, shift, &row, 0);
    }
    return row;
}

/* Where the row max m lies in [-40, 60], exp(z) itself neither overflows (C e^60 fits a
 * float32 sum for any C) nor flushes a term within e^-47 of the largest: one sweep then sums
 * exp(z) and w z with the lanes' running max beside them, and takes them relative to m
 * after (S = e^-m sum exp(z), sum w (z - m) = sum w z - m sum w). Other rows (a max out of
 * that range, infinite, or none) take row_stats' two sweeps per chunk. */
static inline __attribute__((always_inline)) RowStats row_stats_one_sweep(const char *z, int dt,
                                                                         const char *t, int tdt,
                                                                         int weigh, int64_t n) {
    RowStats row = {0.0, 0.0, 0.0, 0.0};
    int64_t zsize = elem_size(dt), tsize = elem_size(tdt);
    vf32 mx = (vf32){} - INFINITY;
    for (int64_t c0 = 0; c0 < n; c0 += CHUNK) {
        int64_t len = n - c0 < CHUNK ? n - c0 : CHUNK;
        const char *zc = z + c0 * zsize, *tc = t ? t + c0 * tsize : t;
        const char *ahead = zc + len * zsize;
        vf32 s = {}, dot = {}, wsum = {};
        int64_t j = 0;
        for (; j + LANES <= len; j += LANES) {
            __builtin_prefetch(ahead + j * zsize);
            vf32 v = load_lanes(zc, dt, j);
            mx = max_lanes(mx, v);
            s += vexp_to(v, dt != MIXLAB_F32);
            if (weigh == WEIGH_UNIFORM) {
                dot += v;
            } else if (weigh == WEIGH_DENSE) {
                vf32 w = load_lanes(tc, tdt, j);
                dot += weighted(w, v);
                wsum += w;
            }
        }
        if (j < len) {
            vf32 v = load_tail(zc, dt, j, len - j, -INFINITY), ones = (vf32){} + 1.0f;
            mx = max_lanes(mx, v);
            s += vexp_to(v, dt != MIXLAB_F32);
            vf32 w = weigh == WEIGH_DENSE ? load_tail(tc, tdt, j, len - j, 0.0f)
                                          : load_tail(&ones, MIXLAB_F32, 0, len - j, 0.0f);
            if (weigh != WEIGH_NONE) dot += weighted(w, v);
            if (weigh == WEIGH_DENSE) wsum += w;
        }
        row.s += hsum(s);
        if (weigh != WEIGH_NONE) row.dot += hsum(dot);
        row.w += weigh == WEIGH_DENSE ? hsum(wsum) : (double)len;
    }
    double m = hmax(mx);
    if (!(m >= -40.0 && m <= 60.0)) return row_stats(z, dt, t, tdt, weigh, n);
    row.m = m;
    row.s *= exp(-m);
    row.dot -= m * row.w;
    return row;
}

static inline RowStats row_stats_f64(const double *z, const double *t, int weigh, int64_t n) {
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

/* dt, weigh and the target's dtype (the logits' or float32) as constants: each
 * combination gets its own specialized loops. */
#define ROW_STATS_FOR(DT)                                                                    \
    (weigh == WEIGH_NONE      ? row_stats_one_sweep(z, DT, t, DT, WEIGH_NONE, p->classes)    \
     : weigh == WEIGH_UNIFORM ? row_stats_one_sweep(z, DT, t, DT, WEIGH_UNIFORM, p->classes) \
     : p->tdt == DT           ? row_stats_one_sweep(z, DT, t, DT, WEIGH_DENSE, p->classes)   \
                              : row_stats_one_sweep(z, DT, t, MIXLAB_F32, WEIGH_DENSE, p->classes))

static inline int weigh_of(const Problem *p) {
    return p->t ? WEIGH_DENSE : p->eps > 0 ? WEIGH_UNIFORM : WEIGH_NONE;
}

static inline RowStats stats_of(const Problem *p, int64_t i, int weigh) {
    const char *z = logits_row(p, i), *t = target_row(p, i);
    switch (p->dt) {
    case MIXLAB_F32:
        return ROW_STATS_FOR(MIXLAB_F32);
    case MIXLAB_F16:
        return ROW_STATS_FOR(MIXLAB_F16);
    case MIXLAB_BF16:
        return ROW_STATS_FOR(MIXLAB_BF16);
    default:
        return row_stats_f64((const double *)z, (const double *)t, weigh, p->classes);
    }
}

/* w * d, but 0 where w == 0: the scalar twin of `weighted`. */
static inline double term(double w, double d) { return w == 0.0 ? 0.0 : w * d; }

/* Row i's loss from its stats, into loss[i]; lse[i] and (dense) tsum[i] unless NULL. */
static inline void row_loss(const Problem *p, int64_t i, RowStats row, void *loss, void *lse,
                            void *tsum) {
    int is64 = p->dt == MIXLAB_F64;
    double log_s = log(row.s), value;
    if (p->t) {
        value = row.w * log_s - row.dot;
        if (tsum) put(tsum, i, is64, row.w);
    } else {
        const char *z = logits_row(p, i);
        double lam = get(p->lam, i * p->lam_stride, is64), keep = 1.0 - p->eps;
        double d_a = logit(z, p->dt, label(p->y_a, i, p->y_i32)) - row.m;
        double d_b = logit(z, p->dt, label(p->y_b, i, p->y_i32)) - row.m;
        value = log_s - term(keep * lam, d_a) - term(keep * (1.0 - lam), d_b);
        if (p->eps > 0) value -= p->eps / (double)p->classes * row.dot;
    }
    if (row.m == -INFINITY) value = NAN; /* no finite logit: no softmax, as in torch */
    put(loss, i, is64, value);
    if (lse) put(lse, i, is64, row.m + log_s);
}

#endif
