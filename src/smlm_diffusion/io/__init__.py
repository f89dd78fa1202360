"""I/O layer: lazy TIFF stacks, ThunderSTORM CSV, atomic writes."""

from .atomic import atomic_path
from .csv import read_localizations_csv, write_localizations_csv
from .picasso import write_picasso_hdf5
from .tiff import StackMetadata, TiffStack, read_metadata, write_stack

__all__ = ["StackMetadata", "TiffStack", "atomic_path", "read_localizations_csv", "read_metadata",
           "write_localizations_csv", "write_picasso_hdf5", "write_stack"]
