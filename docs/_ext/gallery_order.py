"""The order of the examples in the gallery: the main job first, then the variations."""

from __future__ import annotations

from pathlib import Path

ORDER = [
    "plot_prune_image_folder.py",
    "plot_pipeline_grid_search.py",
    "plot_noisy_labels.py",
    "plot_flexrand_strategies.py",
    "plot_text_classification.py",
    "plot_instruction_data.py",
    "plot_onnx_export.py",
    "plot_custom_backbone.py",
]


class GalleryOrder:
    """sphinx-gallery ``within_subsection_order`` key: ORDER, then any other file by name."""

    def __init__(self, src_dir):
        self.src_dir = src_dir

    def __call__(self, filename) -> tuple[int, str]:
        name = Path(filename).name
        return (ORDER.index(name) if name in ORDER else len(ORDER), name)
