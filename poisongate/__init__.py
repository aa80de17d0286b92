"""poisongate: a retraining pipeline that refuses to learn from poisoned data.

The library: config (typed params.yaml), workspace and data I/O, detectors (plug-ins), the gates, learning
(models, training, cross-validation), store (registry, versioning, history, rollback), reports, attacks and the
red team. The stages that use it are in tasks/, the Prefect flows that wire them in flows/."""

# The pipeline's stages in order: each is tasks/<name>.py and the dvc.yaml stage of that name.
STAGES = ("reference", "ingest", "expectations", "validate", "filter", "campaign", "train", "crossval", "promote")
