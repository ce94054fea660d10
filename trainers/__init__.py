"""ViLMS trainers: datasets, LoRA/QLoRA training, evaluation gates, merge and export.

Importing this package is cheap: torch, transformers and peft are imported only by the
modules that train, evaluate or export (the commands are in :mod:`vilms.cli.training`).
"""
