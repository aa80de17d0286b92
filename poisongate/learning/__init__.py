"""Learning: Flax NNX models (models), the jitted data-parallel train loop (training), k folds at once (crossval)."""
