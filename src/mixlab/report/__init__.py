"""`mixlab report`: the comparison report of an ablation study, a benchmark run and the
kernel equivalence results (docs/design.md §9).

load     reads the inputs (Optuna storage, bench folder, equivalence.json) into pandas
stats    per-arm CIs, seed-paired gains and tests, Holm's correction, the win matrix
figures  the seaborn figures (PNG)
render   Markdown and self-contained HTML from one list of blocks
cli      the subcommand: composes the sections and writes the folder
"""
