"""Ablation studies with Optuna (`mixlab ablate`): spec (the TOML file), storage (where a
study lives), runner (workers that claim, run and record trials), cli (the subcommand)."""
