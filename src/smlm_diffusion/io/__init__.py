"""I/O layer: lazy TIFF stacks, ThunderSTORM CSV, atomic writes."""

from .atomic import atomic_path
from .csv import read_localizations_csv, write_localizations_csv
from .tiff import StackMetadata, TiffStack, read_metadata, write_stack

__all__ = ["StackMetadata", "TiffStack", "atomic_path", "read_localizations_csv", "read_metadata",
           "write_localizations_csv", "write_stack"]
