"""Data sets as in-memory tensors: loaders, subsets, seed samples."""
from .loaders import DATASETS, SHARED_SUBSETS, DataUnavailableError, class_names, classes_of, data_dir, describe, display_name, load, second_dataset, shared_folder, shared_subset
from .sampling import seed_samples, stratified_subset
from .types import DataSplits, ImageSet

__all__ = [
    "class_names",
    "classes_of",
    "DATASETS",
    "DataSplits",
    "DataUnavailableError",
    "ImageSet",
    "data_dir",
    "describe",
    "display_name",
    "load",
    "seed_samples",
    "second_dataset",
    "SHARED_SUBSETS",
    "shared_folder",
    "shared_subset",
    "stratified_subset",
]
