"""Datasets: line-by-line validation and manifests with provenance."""
