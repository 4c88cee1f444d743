/* Fused soft-target cross-entropy on the CPU, the forward: loss and lse per row, one pass
 * over each row (row_stats.h), rows split across threads (loss.h). The backward is
 * loss_backward.c.
 */
/* Unlike mix.c, whose float32 results must match the reference's separate multiplies and
 * adds bit for bit, the loss is held to tolerances: let the compiler fuse them. */
#pragma GCC optimize("fp-contract=fast")

#include <math.h>
#include <omp.h>
#include <stdint.h>

#include "loss.h"
#include "row_stats.h"
#include "simd.h"
#include "vexp.h"

static inline __attribute__((always_inline)) void vexp_all(const float *x, float *y, int64_t n,
                                                           int coarse) {
    int64_t j = 0;
    for (; j + LANES <= n; j += LANES) store_f32(y + j, vexp_to(load_f32(x + j), coarse));
    if (j < n)
        store_tail(y, MIXLAB_F32, j, n - j,
                   vexp_to(load_tail(x, MIXLAB_F32, j, n - j, 0.0f), coarse));
}

/* Exported for the error-bound tests: the exp of float32 logits, and of 16-bit ones. */
void mixlab_vexp(const float *x, float *y, int64_t n) { vexp_all(x, y, n, 0); }

void mixlab_vexp_coarse(const float *x, float *y, int64_t n) { vexp_all(x, y, n, 1); }

static void forward_row(const Problem *p, int64_t i, void *loss, void *lse, void *tsum) {
    row_loss(p, i, stats_of(p, i, weigh_of(p)), loss, lse, tsum);
}

/* LossArgs: the logits z ((batch, classes) contiguous, dtype dt); a sparse target (y_a, y_b:
 * int64, or int32 when y_i32; lam, stride lam_stride, or lam_value; eps) or a dense one (t,
 * same shape, dtype tdt, with y_a == NULL); n_threads. Writes loss, lse and (dense) tsum,
 * each (batch,) in the compute dtype. */
int mixlab_ce_forward(const LossArgs *a) {
    Scalar lam;
    Problem p = problem_of(a, &lam);
    int status = check_problem(&p);
    if (status != LOSS_OK) return status;
    void *loss = a->loss, *lse = a->lse, *tsum = a->tsum;
#pragma omp parallel for schedule(static) num_threads(a->n_threads) if (a->n_threads > 1)
    for (int64_t i = 0; i < p.batch; i++) forward_row(&p, i, loss, lse, tsum);
    return LOSS_OK;
}
