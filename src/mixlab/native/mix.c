/* In-place mixup and CutMix over a batch, walked along the permutation's cycles.
 *
 * x[i] <- lam_i * x[i] + (1 - lam_i) * x[perm[i]] reads x[perm[i]] before the call,
 * while rows are being overwritten. Along a cycle c0 -> c1 -> ... -> c_{L-1} -> c0
 * (c_{k+1} = perm[c_k]) row c_k needs c_{k+1}, which is not yet written when the rows
 * are visited in cycle order; only the last row needs a kept copy of c0. Every element
 * is then read once from memory and written once: the traffic of a copy (docs/design.md
 * §3). Rows are cut into column tiles small enough that "next" is still in L1/L2
 * when it becomes "cur", and (cycle, tile) tasks go to threads: no two tasks touch the
 * same element, so the walk is race-free without locks. Rows come in permutation order,
 * which the hardware prefetcher cannot guess, so while row c_k is mixed the same tile of
 * c_{k+2} is prefetched.
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

#include "mix_rows.h"
#include "simd.h"

enum { MAX_THREADS = 256 };
/* status codes of the entry points; on an error no byte of x has been written */
enum { MIXLAB_OK = 0, MIXLAB_NO_MEMORY = 1, MIXLAB_BAD_PERM = 2 };

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
    int64_t row_bytes, elem;
    int dtype, is_copy; /* is_copy: CutMix (x[c_k] = x[c_{k+1}]) instead of a mix */
    const float *lam;   /* (B,) per-sample lam, or NULL: scalar_lam for every row */
    float scalar_lam;
    const int64_t *order, *starts; /* cycle j: rows order[starts[j] .. starts[j+1]) */
    int64_t n_cycles;
    Region region;
    Tiling tiling;
    int64_t n_tasks;
    int64_t next_task; /* shared work counter */
    size_t keep_bytes;
} Walk;

static inline int64_t line_offset(const Region *r, int64_t l) {
    return r->base + (l / r->lines_per_plane) * r->plane_stride +
           (l % r->lines_per_plane) * r->line_stride;
}

static inline float row_lam(const Walk *w, int64_t row) {
    return w->lam ? w->lam[row] : w->scalar_lam;
}

/* dst's tile <- op(dst's tile, src's tile); src_packed: src is the keep buffer. */
static void tile_op(const Walk *w, int64_t dst_row, const char *src, int src_packed,
                    const char *ahead, int64_t l0, int64_t l1, int64_t c0, int64_t nc) {
    char *dst_base = w->x + dst_row * w->row_bytes;
    float a = row_lam(w, dst_row), b = 1.0f - a;
    int64_t run = nc * w->elem;
    for (int64_t l = l0; l < l1; l++) {
        int64_t off = (line_offset(&w->region, l) + c0) * w->elem;
        char *d = dst_base + off;
        const char *s = src_packed ? src + (l - l0) * run : src + off;
        const char *p = ahead + off;
        if (w->is_copy)
            memcpy(d, s, (size_t)run);
        else
            mix_row(w->dtype)(d, d, s, p, nc, a, b);
    }
}

/* Tasks are numbered tile-major (all cycles of tile 0, then tile 1, ...) so that the
 * threads' shares stay balanced even when one cycle holds most rows. */
static void run_task(const Walk *w, int64_t task, char *keep) {
    int64_t cycle = task % w->n_cycles, tile = task / w->n_cycles;
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
    for (int64_t l = l0; l < l1; l++)
        memcpy(keep + (l - l0) * run, first + (line_offset(&w->region, l) + c0) * w->elem,
               (size_t)run);
    for (int64_t k = 0; k + 1 < len; k++)
        tile_op(w, rows[k], w->x + rows[k + 1] * w->row_bytes, 0,
                w->x + rows[k + 2 < len ? k + 2 : 0] * w->row_bytes, l0, l1, c0, nc);
    tile_op(w, rows[len - 1], keep, 1, first, l0, l1, c0, nc);
}

typedef struct {
    Walk *walk;
    char *keep; /* this thread's copy of a cycle's first tile */
} Worker;

static void worker(Worker *self) {
    Walk *w = self->walk;
    for (;;) {
        int64_t task = __atomic_fetch_add(&w->next_task, 1, __ATOMIC_RELAXED);
        if (task >= w->n_tasks) break;
        run_task(w, task, self->keep);
    }
}

/* Cycles of perm in O(B): order lists the rows cycle by cycle, starts[j] where cycle j
 * begins. Returns the number of cycles, or -MIXLAB_NO_MEMORY, or -MIXLAB_BAD_PERM for a
 * value outside [0, batch) (the one check that keeps a bad perm from writing out of
 * bounds; a repeated value just yields some other walk, and callers rule it out). */
static int64_t find_cycles(const int64_t *perm, int64_t batch, int64_t *order,
                           int64_t *starts) {
    unsigned char *seen = calloc((size_t)batch, 1);
    if (!seen) return -MIXLAB_NO_MEMORY;
    for (int64_t i = 0; i < batch; i++) {
        if (perm[i] < 0 || perm[i] >= batch) {
            free(seen);
            return -MIXLAB_BAD_PERM;
        }
    }
    int64_t n = 0, cycles = 0;
    for (int64_t first = 0; first < batch; first++) {
        if (seen[first]) continue;
        starts[cycles++] = n;
        for (int64_t row = first; !seen[row]; row = perm[row]) {
            seen[row] = 1;
            order[n++] = row;
        }
    }
    starts[cycles] = n;
    free(seen);
    return cycles;
}

/* Splits the region into tiles of about tile_bytes, small enough to give each thread
 * several tasks (min_tasks in all) but never runs shorter than min_run_bytes, below
 * which the hardware prefetcher gains nothing from a row before jumping to the next. */
static Tiling make_tiling(const Region *r, int64_t elem, int64_t n_cycles, int64_t tile_bytes,
                          int64_t min_tasks, int64_t min_run_bytes) {
    Tiling t = {1, 1, 0, 0};
    if (r->line_len <= 0 || r->n_lines <= 0) return t; /* nothing to touch: no tiles */
    int64_t tile_elems = tile_bytes / elem > 0 ? tile_bytes / elem : 1;
    int64_t min_run = min_run_bytes / elem > 0 ? min_run_bytes / elem : 1;
    int64_t total = r->n_lines * r->line_len;
    int64_t want_tiles = (min_tasks + n_cycles - 1) / n_cycles;
    if (total / want_tiles < tile_elems) tile_elems = total / want_tiles;
    if (tile_elems < min_run) tile_elems = min_run;
    if (r->line_len > tile_elems) {
        t.lines_per_tile = 1;
        t.cols_per_tile = tile_elems;
    } else {
        t.cols_per_tile = r->line_len;
        t.lines_per_tile = tile_elems / r->line_len;
        if (t.lines_per_tile > r->n_lines) t.lines_per_tile = r->n_lines;
    }
    t.n_col_groups = (r->line_len + t.cols_per_tile - 1) / t.cols_per_tile;
    t.n_line_groups = (r->n_lines + t.lines_per_tile - 1) / t.lines_per_tile;
    return t;
}

/* Returns MIXLAB_OK, or an error code before writing anything. */
static int walk(Walk *w, const int64_t *perm, int64_t batch, int n_threads, int64_t tile_bytes,
                int64_t min_run_bytes) {
    int64_t *order = malloc((size_t)batch * sizeof *order);
    int64_t *starts = malloc((size_t)(batch + 1) * sizeof *starts);
    int status = MIXLAB_OK;
    if (!order || !starts) {
        status = MIXLAB_NO_MEMORY;
        goto done;
    }
    w->n_cycles = find_cycles(perm, batch, order, starts);
    if (w->n_cycles < 0) {
        status = (int)-w->n_cycles;
        goto done;
    }
    w->order = order;
    w->starts = starts;
    if (n_threads < 1) n_threads = 1;
    w->tiling = make_tiling(&w->region, w->elem, w->n_cycles, tile_bytes, 4 * (int64_t)n_threads,
                            min_run_bytes);
    w->n_tasks = w->n_cycles * w->tiling.n_line_groups * w->tiling.n_col_groups;
    if (w->n_tasks == 0) goto done; /* rows of zero elements: perm was checked, nothing to do */
    w->keep_bytes = (size_t)(w->tiling.lines_per_tile * w->tiling.cols_per_tile * w->elem);
    w->next_task = 0;
    if (n_threads > w->n_tasks) n_threads = (int)w->n_tasks;

    if (n_threads > MAX_THREADS) n_threads = MAX_THREADS;
    /* every buffer is allocated before any byte of x is written */
    Worker workers[MAX_THREADS];
    int allocated = 0;
    for (; allocated < n_threads; allocated++) {
        workers[allocated] = (Worker){w, malloc(w->keep_bytes)};
        if (!workers[allocated].keep) break;
    }
    if (allocated < n_threads) {
        status = MIXLAB_NO_MEMORY;
    } else {
#pragma omp parallel num_threads(n_threads)
        worker(&workers[omp_get_thread_num()]);
    }
    for (int i = 0; i < allocated; i++) free(workers[i].keep);
done:
    free(order);
    free(starts);
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
              .lam = lam,
              .scalar_lam = scalar_lam,
              .region = {1, row_len, 0, 1, 0, 0}};
    return walk(&w, perm, batch, n_threads, tile_bytes, min_run_bytes);
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
    return walk(&w, perm, batch, n_threads, tile_bytes, min_run_bytes);
}

/* Out of place, one pass: out[i] <- lam_i * x[i] + (1 - lam_i) * x[perm[i]]. No hazard (out
 * is another buffer), so rows simply go to threads; each element of x is read about twice
 * (as itself and as a partner) and out written once, where clone + mix_ moved four times
 * the bytes. perm is checked first; on MIXLAB_BAD_PERM nothing has been written. */
int mixlab_mix_out(void *out, const void *x, int dtype, int64_t batch, int64_t row_len,
                   const int64_t *perm, const float *lam, float scalar_lam, int n_threads) {
    for (int64_t i = 0; i < batch; i++)
        if (perm[i] < 0 || perm[i] >= batch) return MIXLAB_BAD_PERM;
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
    return MIXLAB_OK;
}
