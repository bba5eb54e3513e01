"""Data: file formats (:mod:`.formats`), scaling and binarising (:mod:`.transforms`), the data
set that ships with boltzkit (:mod:`.embedded`).  Every loader takes a path and returns numpy
arrays; every bad input raises :class:`boltzkit.errors.DataError` with a one-line message."""

from .embedded import DEFAULT_DATASET, load_binarized_mnist, load_default
from .formats import load_array, load_csv, load_idx, load_mat, load_mnist, load_npy, load_npz
from .transforms import binarize, scale_to_unit, validate_data

__all__ = ["DEFAULT_DATASET", "binarize", "load_array", "load_binarized_mnist", "load_csv", "load_default",
           "load_idx", "load_mat", "load_mnist", "load_npy", "load_npz", "scale_to_unit", "validate_data"]
