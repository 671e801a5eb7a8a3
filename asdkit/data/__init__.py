"""Data sets as in-memory tensors: loaders, subsets, seed samples."""
from .loaders import DATASETS, DataUnavailableError, class_names, data_dir, describe, load
from .sampling import seed_samples, stratified_subset
from .types import DataSplits, ImageSet

__all__ = [
    "class_names",
    "DATASETS",
    "DataSplits",
    "DataUnavailableError",
    "ImageSet",
    "data_dir",
    "describe",
    "load",
    "seed_samples",
    "stratified_subset",
]
