/* The mixing walk's argument values, checked before any write (mix.c's entry points):
 * perm a permutation of range(B), a per-sample lam in [0, 1]. The status codes are
 * mixlab.native's: each maps to the ValueError mixlab.validation raises for it. */
#ifndef MIXLAB_MIX_CHECKS_H
#define MIXLAB_MIX_CHECKS_H

#include <stdint.h>
#include <string.h>

/* status codes of the entry points; on an error no byte of x (or out) has been written */
enum {
    MIXLAB_OK = 0,
    MIXLAB_NO_MEMORY = 1,
    MIXLAB_BAD_PERM = 2,     /* a perm value outside [0, B) */
    MIXLAB_PERM_REPEATS = 3, /* perm is not a permutation: a value repeats */
    MIXLAB_BAD_LAM = 4       /* a per-sample lam outside [0, 1], or NaN */
};

/* The cycles of perm in O(B), and the checks that make it a permutation: every value in
 * [0, batch) (else MIXLAB_BAD_PERM), then every walk from an unseen row returning to it,
 * which holds for every walk exactly when perm is a bijection (else MIXLAB_PERM_REPEATS).
 * order lists the rows cycle by cycle, starts[j] where cycle j begins; seen: batch bytes
 * of scratch. Returns the number of cycles, or minus a status code. */
static int64_t find_cycles(const int64_t *perm, int64_t batch, int64_t *order, int64_t *starts,
                           unsigned char *seen) {
    for (int64_t i = 0; i < batch; i++)
        if (perm[i] < 0 || perm[i] >= batch) return -MIXLAB_BAD_PERM;
    memset(seen, 0, (size_t)batch);
    int64_t n = 0, cycles = 0;
    for (int64_t first = 0; first < batch; first++) {
        if (seen[first]) continue;
        starts[cycles++] = n;
        int64_t row = first;
        do {
            seen[row] = 1;
            order[n++] = row;
            row = perm[row];
        } while (!seen[row]);
        if (row != first) return -MIXLAB_PERM_REPEATS;
    }
    starts[cycles] = n;
    return cycles;
}

/* A per-sample lam must lie in [0, 1] (NaN fails too). It is copied to `kept` before the
 * mix overwrites x, which lam may share memory with. */
static int keep_lam(const float *lam, int64_t batch, float *kept) {
    for (int64_t i = 0; i < batch; i++) {
        float v = lam[i];
        if (!(v >= 0.0f && v <= 1.0f)) return MIXLAB_BAD_LAM;
        kept[i] = v;
    }
    return MIXLAB_OK;
}

#endif
