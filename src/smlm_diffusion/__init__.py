"""napari-smlm-diffusion: uncertainty-aware single-molecule localization microscopy.

Layers, one direction: ``simulation`` -> ``models`` -> ``inference`` -> ``analysis``
-> ``io`` -> faces (``cli``, ``_napari``). ``errors`` and ``localizations`` are plain
data/exception modules every layer may use.
"""

__version__ = "0.1.0"

from .errors import SmlmInputError  # noqa: E402

__all__ = ["SmlmInputError", "__version__"]
