"""Which masking ratios make up the learning path.

The paper's grid is {0, 0.02, ..., 0.98} (ratio 0 is the unmasked model); a Monte Carlo
estimate uses a random subset of it that always contains 0.
"""

from __future__ import annotations

from numbers import Integral
import numpy as np
from sklearn.utils import check_random_state

__all__ = ["PAPER_GRID", "resolve_mask_ratios", "auto_ratio_order"]

PAPER_GRID: tuple[float, ...] = tuple(round(0.02 * i, 2) for i in range(50))


def resolve_mask_ratios(mask_ratios, random_state=None) -> tuple[float, ...]:
    """Turn the ``mask_ratios`` parameter into a sorted tuple of ratios.

    Parameters
    ----------
    mask_ratios : int or sequence of float
        An int ``n``: ``n`` ratios from :data:`PAPER_GRID`, always including 0, the
        others drawn with ``random_state``. A sequence: those ratios, each in [0, 1).
        (``"auto"`` is resolved by the scorer, which grows the path while scoring.)
    random_state : int, RandomState or None

    Returns
    -------
    tuple of float, ascending, without duplicates.
    """
    if isinstance(mask_ratios, Integral) and not isinstance(mask_ratios, bool):
        n = int(mask_ratios)
        if not 1 <= n <= len(PAPER_GRID):
            raise ValueError(
                f"mask_ratios as an int must be in [1, {len(PAPER_GRID)}], got {n}"
            )
        return tuple(sorted(auto_ratio_order(random_state)[:n]))
    if isinstance(mask_ratios, str):
        raise ValueError(f"mask_ratios must be an int, a sequence or 'auto', got {mask_ratios!r}")
    ratios = np.asarray(list(mask_ratios), dtype=float)
    if ratios.ndim != 1 or ratios.size == 0:
        raise ValueError(f"mask_ratios must be a non-empty 1-d sequence, got {mask_ratios!r}")
    bad = ratios[~((ratios >= 0) & (ratios < 1))]
    if bad.size:
        raise ValueError(f"mask_ratios must lie in [0, 1), got {bad.tolist()}")
    return tuple(sorted({float(r) for r in ratios}))


def auto_ratio_order(random_state=None) -> list[float]:
    """The order in which ratios join the path: 0 first, then the grid shuffled."""
    rng = check_random_state(random_state)
    rest = list(PAPER_GRID[1:])
    order = rng.permutation(len(rest))
    return [0.0] + [rest[i] for i in order]
