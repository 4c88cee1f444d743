"""`mixlab verify`: the equivalence suite of the fused ops as a command and a library.

cases      the inputs every implementation is checked on (mixing, CutMix, the two losses)
tolerance  the design's tolerances and the error measure (docs/design.md §4)
checks     one case against one implementation: forward, gradients, float64 oracle, gradcheck
races      program-order check of Triton kernels under the interpreter (shuffled, reversed,
           loads before stores) and the cross-program hazard trace
impls      mixlab's backends and `--impl NAME=module:function` as callables of one signature
runner     cases x implementations x dtypes with progress, into result rows
results    the equivalence JSON (one format for `mixlab verify` and `make test`)
matrix     the printed op x backend x dtype matrix and the named failures
compare    the regression gate against a previous JSON
cli        the `mixlab verify` subcommand
"""
