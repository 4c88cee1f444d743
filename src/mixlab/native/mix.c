/* In-place mixup and CutMix over a batch, walked along the permutation's cycles.
 *
 * x[i] <- lam_i * x[i] + (1 - lam_i) * x[perm[i]] reads x[perm[i]] before the call,
 * while rows are being overwritten. Along a cycle c0 -> c1 -> ... -> c_{L-1} -> c0
 * (c_{k+1} = perm[c_k]) row c_k needs c_{k+1}, which is not yet written when the rows
 * are visited in cycle order; only the last row needs a kept copy of c0. Every element
 * is then read once from memory and written once: the traffic of a copy (docs/design.md
 * §3). Rows are cut into column tiles small enough that "next" is still in L1/L2
 * when it becomes "cur", and (cycle, tile) tasks go to threads in fixed shares (worker):
 * no two tasks touch the same element, so the walk is race-free without locks. Rows come
 * in permutation order, which the hardware prefetcher cannot guess, so while row c_k is
 * mixed the same tile of c_{k+2} is prefetched.
 *
 * Threads come from OpenMP: torch ships libgomp.so.1 and has loaded it before this
 * library, so the dynamic loader binds us to the same runtime and thread pool (no second
 * pool spinning against torch's on a small machine).
 *
 * Arithmetic is float32 (fp16/bf16 are widened on load and rounded to nearest-even on
 * store, as torch does); no FMA contraction (-ffp-contract=off), so float32 results are
 * bit-identical to mixlab.reference.mix.
 */
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mix_checks.h"
#include "mix_rows.h"
#include "simd.h"

enum { MAX_THREADS = 256 };
/* ---- the walk ----------------------------------------------------------------------- */

/* The part of every row that is touched: n_lines lines of line_len elements; line l
 * starts at element base + (l / lines_per_plane) * plane_stride
 *                     + (l % lines_per_plane) * line_stride.
 * mix_: one line, the whole row. cutmix_: the box's rows in every leading plane. */
typedef struct {
    int64_t n_lines, line_len, base, lines_per_plane, plane_stride, line_stride;
} Region;

/* Tiles: groups of lines_per_tile lines, each cut to the same cols_per_tile columns. */
typedef struct {
    int64_t lines_per_tile, cols_per_tile, n_line_groups, n_col_groups;
} Tiling;

typedef struct {
    char *x;
    int64_t row_bytes, elem, batch;
    int dtype, is_copy; /* is_copy: CutMix (x[c_k] = x[c_{k+1}]) instead of a mix */
    const float *lam;   /* (B,) per-sample lam, or NULL: scalar_lam for every row */
    float scalar_lam;
    const int64_t *order, *starts; /* cycle j: rows order[starts[j] .. starts[j+1]) */
    int64_t n_cycles;
    Region region;
    Tiling tiling;
    int64_t n_tiles, n_threads;
    size_t keep_bytes;
} Walk;

static inline float row_lam(const Walk *w, int64_t row) {
    return w->lam ? w->lam[row] : w->scalar_lam;
}

/* The lines [l0, l1) of a tile: each starts at byte offset off (from its row's start), and
 * the next is found without the two divisions of the Region formula. */
typedef struct {
    int64_t off, y, step, plane_jump, lines_per_plane;
} Lines;

static inline Lines first_line(const Walk *w, int64_t l0, int64_t c0) {
    const Region *r = &w->region;
    int64_t y = l0 % r->lines_per_plane;
    int64_t off = r->base + (l0 / r->lines_per_plane) * r->plane_stride + y * r->line_stride + c0;
    int64_t jump = r->plane_stride - (r->lines_per_plane - 1) * r->line_stride;
    return (Lines){off * w->elem, y, r->line_stride * w->elem, jump * w->elem,
                   r->lines_per_plane};
}

static inline void next_line(Lines *it) {
    if (++it->y == it->lines_per_plane) {
        it->y = 0;
        it->off += it->plane_jump;
    } else {
        it->off += it->step;
    }
}

/* dst's tile <- op(dst's tile, src's tile); src_packed: src is the keep buffer. */
static void tile_op(const Walk *w, int64_t dst_row, const char *src, int src_packed,
                    const char *ahead, int64_t l0, int64_t l1, int64_t c0, int64_t nc) {
    char *dst_base = w->x + dst_row * w->row_bytes;
    float a = row_lam(w, dst_row), b = 1.0f - a;
    int64_t run = nc * w->elem;
    Lines it = first_line(w, l0, c0);
    for (int64_t l = l0; l < l1; l++, next_line(&it)) {
        char *d = dst_base + it.off;
        const char *s = src_packed ? src + (l - l0) * run : src + it.off;
        const char *p = ahead + it.off;
        if (w->is_copy) {
            __builtin_prefetch(p);
            __builtin_prefetch(p + run - 1);
            copy_run(d, s, run);
        } else {
            mix_row(w->dtype)(d, d, s, p, nc, a, b);
        }
    }
}

/* Task (cycle, tile): the tile's columns of every row of the cycle, walked in cycle order. */
static void run_task(const Walk *w, int64_t cycle, int64_t tile, char *keep) {
    const Tiling *t = &w->tiling;
    int64_t l0 = (tile / t->n_col_groups) * t->lines_per_tile;
    int64_t l1 = l0 + t->lines_per_tile;
    if (l1 > w->region.n_lines) l1 = w->region.n_lines;
    int64_t c0 = (tile % t->n_col_groups) * t->cols_per_tile;
    int64_t nc = t->cols_per_tile;
    if (c0 + nc > w->region.line_len) nc = w->region.line_len - c0;

    const int64_t *rows = w->order + w->starts[cycle];
    int64_t len = w->starts[cycle + 1] - w->starts[cycle];
    if (len == 1) {
        /* a fixed point: CutMix leaves it alone, mixup mixes it with itself */
        if (!w->is_copy) {
            const char *self = w->x + rows[0] * w->row_bytes;
            tile_op(w, rows[0], self, 0, self, l0, l1, c0, nc);
        }
        return;
    }
    int64_t run = nc * w->elem;
    const char *first = w->x + rows[0] * w->row_bytes;
    Lines it = first_line(w, l0, c0);
    for (int64_t l = l0; l < l1; l++, next_line(&it))
        copy_run(keep + (l - l0) * run, first + it.off, run);
    for (int64_t k = 0; k + 1 < len; k++)
        tile_op(w, rows[k], w->x + rows[k + 1] * w->row_bytes, 0,
                w->x + rows[k + 2 < len ? k + 2 : 0] * w->row_bytes, l0, l1, c0, nc);
    tile_op(w, rows[len - 1], keep, 1, first, l0, l1, c0, nc);
}

/* Thread `me` of the walk's n_threads takes a fixed share of the (tile, cycle) tasks: in
 * tile-major order, those whose first row falls in the me-th equal part of the
 * n_tiles * B rows to walk. make_tiling makes n_tiles a multiple of the threads where the
 * region allows, so each thread's share is whole tiles: the same bytes of every row at
 * every call, which a batch mixed again (an epoch's next step, a benchmark's next call)
 * finds in that core's cache, as torch's statically split copy does. */
static void worker(const Walk *w, int me, char *keep) {
    int64_t total = w->n_tiles * w->batch;
    int64_t lo = total * me / w->n_threads, hi = total * (me + 1) / w->n_threads;
    for (int64_t tile = lo / w->batch; tile < w->n_tiles && tile * w->batch < hi; tile++)
        for (int64_t cycle = 0; cycle < w->n_cycles; cycle++) {
            int64_t at = tile * w->batch + w->starts[cycle];
            if (at >= lo && at < hi) run_task(w, cycle, tile, keep);
        }
}

/* Splits the region into tiles of at most about tile_bytes (but never below min_run_bytes,
 * under which the hardware prefetcher gains nothing from a row before jumping to the next),
 * their number a multiple of n_threads where that keeps runs of min_run_bytes: a row's
 * columns in equal parts (mix_; CutMix's long box lines), or its box lines in equal groups
 * (short box lines). Regions too small to cut that finely are shared by cycles (worker). */
static Tiling make_tiling(const Region *r, int64_t elem, int64_t n_threads, int64_t tile_bytes,
                          int64_t min_run_bytes) {
    Tiling t = {1, 1, 0, 0};
    if (r->line_len <= 0 || r->n_lines <= 0) return t; /* nothing to touch: no tiles */
    int64_t tile_elems = tile_bytes / elem > 0 ? tile_bytes / elem : 1;
    int64_t min_run = min_run_bytes / elem > 0 ? min_run_bytes / elem : 1;
    if (tile_elems < min_run) tile_elems = min_run;
    int by_columns = r->n_lines == 1 || r->line_len > tile_elems;
    int64_t extent = by_columns ? r->line_len : r->n_lines; /* what is cut */
    int64_t unit = by_columns ? 1 : r->line_len;            /* elements per unit of it */
    int64_t per_tile = tile_elems / unit > 0 ? tile_elems / unit : 1;
    int64_t parts = (extent + per_tile - 1) / per_tile;
    int64_t even = (parts + n_threads - 1) / n_threads * n_threads;
    int64_t size = (extent + even - 1) / even;
    if (size * unit < min_run) size = (extent + parts - 1) / parts;
    t.cols_per_tile = by_columns ? size : r->line_len;
    t.lines_per_tile = by_columns ? 1 : size;
    t.n_col_groups = (r->line_len + t.cols_per_tile - 1) / t.cols_per_tile;
    t.n_line_groups = (r->n_lines + t.lines_per_tile - 1) / t.lines_per_tile;
    return t;
}

/* The walk's scratch, one allocation: order and starts of the cycles, the seen bytes of
 * find_cycles, and the per-sample lam kept from x. */
typedef struct {
    int64_t *order, *starts;
    unsigned char *seen;
    float *lam;
} Scratch;

static int scratch_alloc(Scratch *s, int64_t batch) {
    size_t ints = (size_t)(2 * batch + 1) * sizeof(int64_t);
    char *block = malloc(ints + (size_t)batch * (sizeof(float) + 1));
    if (!block) return MIXLAB_NO_MEMORY;
    s->order = (int64_t *)block;
    s->starts = s->order + batch;
    s->lam = (float *)(block + ints);
    s->seen = (unsigned char *)(s->lam + batch);
    return MIXLAB_OK;
}

/* Returns MIXLAB_OK, or an error code before writing anything. */
static int walk(Walk *w, const int64_t *perm, const float *lam, int64_t batch, int n_threads,
                int64_t tile_bytes, int64_t min_run_bytes) {
    if (batch <= 0) return MIXLAB_OK; /* no rows: nothing to check or do */
    Scratch s;
    int status = scratch_alloc(&s, batch);
    if (status != MIXLAB_OK) return status;
    w->n_cycles = find_cycles(perm, batch, s.order, s.starts, s.seen);
    if (w->n_cycles < 0) {
        status = (int)-w->n_cycles;
        goto done;
    }
    if (lam && (status = keep_lam(lam, batch, s.lam)) != MIXLAB_OK) goto done;
    w->lam = lam ? s.lam : NULL;
    w->order = s.order;
    w->starts = s.starts;
    w->batch = batch;
    if (n_threads < 1) n_threads = 1;
    if (n_threads > MAX_THREADS) n_threads = MAX_THREADS;
    w->tiling = make_tiling(&w->region, w->elem, n_threads, tile_bytes, min_run_bytes);
    w->n_tiles = w->tiling.n_line_groups * w->tiling.n_col_groups;
    if (w->n_tiles == 0) goto done; /* rows of zero elements: perm was checked, nothing to do */
    if (n_threads > w->n_tiles * w->n_cycles) n_threads = (int)(w->n_tiles * w->n_cycles);
    w->n_threads = n_threads;
    w->keep_bytes = (size_t)(w->tiling.lines_per_tile * w->tiling.cols_per_tile * w->elem);

    /* every buffer is allocated before any byte of x is written */
    char *keeps = malloc(w->keep_bytes * (size_t)n_threads);
    if (!keeps) {
        status = MIXLAB_NO_MEMORY;
        goto done;
    }
    if (n_threads == 1) {
        worker(w, 0, keeps); /* no parallel region: a small batch skips its start-up */
    } else {
#pragma omp parallel num_threads(n_threads)
        {
            int me = omp_get_thread_num();
            worker(w, me, keeps + w->keep_bytes * (size_t)me);
        }
    }
    free(keeps);
done:
    free(s.order);
    return status;
}

/* ---- entry points (called through ctypes) ---------------------------------------------- */

/* x: (batch, row_len) contiguous; lam: (batch,) float32 or NULL for scalar_lam. */
int mixlab_mix(void *x, int dtype, int64_t batch, int64_t row_len, const int64_t *perm,
               const float *lam, float scalar_lam, int n_threads, int64_t tile_bytes,
               int64_t min_run_bytes) {
    int64_t elem = dtype == MIXLAB_F32 ? 4 : 2;
    Walk w = {.x = x,
              .row_bytes = row_len * elem,
              .elem = elem,
              .dtype = dtype,
              .is_copy = 0,
              .scalar_lam = scalar_lam,
              .region = {1, row_len, 0, 1, 0, 0}};
    return walk(&w, perm, lam, batch, n_threads, tile_bytes, min_run_bytes);
}

/* x: (batch, planes, height, width) contiguous, elem bytes per element; copies the box
 * rows [y0, y1) x columns [x0, x1) of every plane from row perm[i] to row i. */
int mixlab_cutmix(void *x, int64_t elem, int64_t batch, int64_t planes, int64_t height,
                  int64_t width, const int64_t *perm, int64_t y0, int64_t y1, int64_t x0,
                  int64_t x1, int n_threads, int64_t tile_bytes, int64_t min_run_bytes) {
    Walk w = {.x = x,
              .row_bytes = planes * height * width * elem,
              .elem = elem,
              .is_copy = 1,
              .region = {planes * (y1 - y0), x1 - x0, y0 * width + x0, y1 - y0, height * width,
                         width}};
    return walk(&w, perm, NULL, batch, n_threads, tile_bytes, min_run_bytes);
}

/* Out of place, one pass: out[i] <- lam_i * x[i] + (1 - lam_i) * x[perm[i]]. No hazard (out
 * is another buffer), so rows simply go to threads; each element of x is read about twice
 * (as itself and as a partner) and out written once, where clone + mix_ moved four times
 * the bytes. perm and lam are checked first; on an error nothing has been written. */
int mixlab_mix_out(void *out, const void *x, int dtype, int64_t batch, int64_t row_len,
                   const int64_t *perm, const float *lam, float scalar_lam, int n_threads) {
    if (batch <= 0) return MIXLAB_OK;
    Scratch s;
    int status = scratch_alloc(&s, batch);
    if (status != MIXLAB_OK) return status;
    int64_t cycles = find_cycles(perm, batch, s.order, s.starts, s.seen);
    if (cycles < 0) status = (int)-cycles;
    if (status == MIXLAB_OK && lam) status = keep_lam(lam, batch, s.lam);
    if (status != MIXLAB_OK) {
        free(s.order);
        return status;
    }
    lam = lam ? s.lam : NULL;
    int64_t row_bytes = row_len * (dtype == MIXLAB_F32 ? 4 : 2);
    MixRow mix = mix_row(dtype);
    if (n_threads < 1) n_threads = 1;
#pragma omp parallel for schedule(static) num_threads(n_threads) if (n_threads > 1)
    for (int64_t i = 0; i < batch; i++) {
        float a = lam ? lam[i] : scalar_lam;
        const char *ahead = (const char *)x + perm[i + 1 < batch ? i + 1 : i] * row_bytes;
        mix((char *)out + i * row_bytes, (const char *)x + i * row_bytes,
            (const char *)x + perm[i] * row_bytes, ahead, row_len, a, 1.0f - a);
    }
    free(s.order);
    return MIXLAB_OK;
}
