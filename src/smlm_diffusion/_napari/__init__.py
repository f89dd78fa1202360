"""The napari face: readers, widgets, writers and sample data. Thin shells over the
library; the only place that imports napari or Qt. torch is never imported here at
module import time."""
