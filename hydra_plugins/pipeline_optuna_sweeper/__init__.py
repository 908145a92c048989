"""Our Optuna 5 sweeper for Hydra (the published hydra-optuna-sweeper needs optuna<3, cannot prune or resume)."""
