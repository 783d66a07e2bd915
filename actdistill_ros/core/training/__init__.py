"""Training: behaviour cloning of the teacher, stage 1 (probes) and stage 2 (distillation)
(``stages``), the resumable loop they share (``loop``), ActDistill's losses, memory options
(LoRA, autocast, checkpointing), several processes (``parallel``: DDP/FSDP), the layer-dropping
baselines, route statistics, and whole runs over a dataset directory (``runs``)."""
