"""Ablation studies with Optuna (`mixlab ablate`): spec (the TOML file), storage (where a
study lives), creation and queue (a study and its points, enqueued once), worker (claims,
runs and records trials), liveness (dead workers), survey (where a study stands), runner
(worker processes), cli (the subcommand)."""
