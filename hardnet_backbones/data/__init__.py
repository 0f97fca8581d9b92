"""Datasets, augmentation pipelines and the synthetic shapes generator."""
