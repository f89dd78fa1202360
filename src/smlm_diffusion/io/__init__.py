"""I/O layer: lazy TIFF and raw (.raw + .yaml, .dax + .inf) stacks, ThunderSTORM CSV, atomic writes."""

from .atomic import atomic_path
from .csv import read_localizations_csv, write_localizations_csv
from .picasso import write_picasso_hdf5
from .raw import RAW_SUFFIXES, RawStack, open_stack
from .tiff import StackMetadata, TiffStack, read_metadata, write_stack

__all__ = [
    "RAW_SUFFIXES",
    "RawStack",
    "StackMetadata",
    "TiffStack",
    "open_stack",
    "atomic_path",
    "read_localizations_csv",
    "read_metadata",
    "write_localizations_csv",
    "write_picasso_hdf5",
    "write_stack",
]
