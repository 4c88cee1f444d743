/* What loss.c (the forward) and loss_backward.c share: the problem one call describes,
 * its per-row vectors, and the value checks both entry points run before writing.
 *
 * Targets are sparse (mixup: t = (1-eps)(lam onehot(y_a) + (1-lam) onehot(y_b)) + eps/C,
 * never built) or dense ((B, C) probabilities). Rows are split across OpenMP threads (the
 * libgomp torch has loaded) when the caller asks for more than one: it decides from the
 * size whether the work pays for the start-up.
 */
#ifndef MIXLAB_LOSS_H
#define MIXLAB_LOSS_H

#include <stdint.h>

#include "simd.h"

/* status codes; on an error nothing has been written */
enum {
    LOSS_OK = 0,
    LOSS_NO_CLASSES = 1,
    LOSS_BAD_Y_A = 2,
    LOSS_BAD_Y_B = 3,
    LOSS_BAD_LAM = 4,
    LOSS_BAD_DTYPE = 5, /* float64 logits to loss_fused.c */
    LOSS_NO_MEMORY = 6,
};

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

static inline int64_t elem_size(int dt) {
    return dt == MIXLAB_F64 ? 8 : dt == MIXLAB_F32 ? 4 : 2;
}

/* reductions of mixlab_ce_forward_grad's loss */
enum { REDUCE_NONE = 0, REDUCE_SUM = 1, REDUCE_MEAN = 2 };

/* One call's arguments, in one struct that mixlab.native.loss packs (struct "<" format,
 * every field 8 bytes, so no padding): one ctypes argument instead of eighteen, whose
 * conversions cost more than a small loss. A NULL lam (g) stands for the one value
 * lam_value (g_value) for every row. Each entry point reads the fields it documents. */
typedef struct {
    const void *z;
    int64_t dt, batch, classes;
    const void *y_a, *y_b; /* NULL for a dense target */
    int64_t y_i32;
    const void *lam;
    int64_t lam_stride;
    double lam_value, eps;
    const void *t; /* dense target, or NULL */
    int64_t tdt;
    const void *g; /* the gradient w.r.t. the per-row losses */
    int64_t g_stride;
    double g_value;
    void *loss, *lse, *tsum, *out;
    int64_t reduction, n_threads;
} LossArgs;

_Static_assert(sizeof(LossArgs) == 22 * 8, "LossArgs: mixlab.native.loss packs 22 fields");

/* A per-row value of the compute dtype: the one behind a NULL lam or g. */
typedef union {
    float f32;
    double f64;
} Scalar;

static inline const void *scalar(Scalar *s, int is64, double v) {
    if (is64)
        s->f64 = v;
    else
        s->f32 = (float)v;
    return s;
}

/* The problem a call describes (its lam, if one value, kept in *lam). */
static inline Problem problem_of(const LossArgs *a, Scalar *lam) {
    Problem p = {a->z,   (int)a->dt,     a->batch,        a->classes, a->y_a, a->y_b,
                 (int)a->y_i32, a->lam, a->lam_stride, a->eps,     a->t,   (int)a->tdt};
    if (!p.lam && p.y_a) {
        p.lam = scalar(lam, p.dt == MIXLAB_F64, a->lam_value);
        p.lam_stride = 0;
    }
    return p;
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

/* Row i of the logits and of the dense target (NULL for a sparse one). */
static inline const char *logits_row(const Problem *p, int64_t i) {
    return p->z + i * p->classes * elem_size(p->dt);
}

static inline const char *target_row(const Problem *p, int64_t i) {
    return p->t ? p->t + i * p->classes * elem_size(p->tdt) : 0;
}

/* The checks that keep a bad value from reading out of bounds or going silently wrong:
 * labels in [0, C), lam in [0, 1] (NaN fails). O(B), before anything is written. */
static inline int check_problem(const Problem *p) {
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

#endif
