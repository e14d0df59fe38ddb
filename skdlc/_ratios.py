"""Which masking ratios make up the learning path.

The paper's grid is {0, 0.02, ..., 0.98} (ratio 0 is the unmasked model); a Monte Carlo
estimate uses a random subset of it that always contains 0.
"""

from __future__ import annotations

from numbers import Integral
import numpy as np
from sklearn.utils import check_random_state

__all__ = ["PAPER_GRID", "CUMULATIVE_STEPS", "cumulative_ratios", "resolve_mask_ratios",
           "auto_ratio_order"]

PAPER_GRID: tuple[float, ...] = tuple(round(0.02 * i, 2) for i in range(50))

#: Masked models of the cumulative schedule that ``mask_ratios="cumulative"`` runs. The
#: official code prunes 2% of the remaining weights 50 times (sparsity 1 - 0.98**k,
#: k = 1..50) and averages all 50 models; skdlc takes every 10th step (k = 10, ..., 50,
#: sparsity 18% to 64%) plus the unmasked model: the same range at the paper's |T| = 5
#: saturation point, 6 passes instead of 50.
CUMULATIVE_STEPS = 5


def cumulative_ratios(n_steps: int = CUMULATIVE_STEPS, n_total: int = 50) -> tuple[float, ...]:
    """The official code's cumulative schedule: 0 plus ``1 - 0.98**k`` at ``n_steps`` even k.

    Parameters
    ----------
    n_steps : int, default=5
        Masked models taken from the ``n_total`` steps, evenly (k = n_total/n_steps, ...).
    n_total : int, default=50
        Steps of the official schedule (each prunes 2% of the remaining weights).

    Returns
    -------
    tuple of float, ascending, starting with 0.0.

    Examples
    --------
    >>> [round(r, 3) for r in cumulative_ratios(5)]
    [0.0, 0.183, 0.332, 0.455, 0.554, 0.636]
    """
    if not 1 <= int(n_steps) <= int(n_total):
        raise ValueError(f"n_steps must be in [1, {n_total}], got {n_steps}")
    ks = [round(n_total * i / n_steps) for i in range(1, int(n_steps) + 1)]
    return (0.0,) + tuple(1.0 - 0.98**k for k in ks)


def resolve_mask_ratios(mask_ratios, random_state=None) -> tuple[float, ...]:
    """Turn the ``mask_ratios`` parameter into a sorted tuple of ratios.

    Parameters
    ----------
    mask_ratios : int, "cumulative" or sequence of float
        An int ``n``: ``n`` ratios from :data:`PAPER_GRID`, always including 0, the
        others drawn with ``random_state``. ``"cumulative"``: the official code's
        schedule, :func:`cumulative_ratios` (meant for ``masking="global"``, which is
        what the official code prunes with). A sequence: those ratios, each in [0, 1).
        (``"auto"`` and ``"calibrated"`` are resolved by the scorer, which measures
        the backbone while scoring; see :mod:`skdlc._calibration`.)
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
        if mask_ratios == "cumulative":
            return cumulative_ratios()
        raise ValueError(
            "mask_ratios must be an int, a sequence, 'auto', 'calibrated' or 'cumulative', "
            f"got {mask_ratios!r}"
        )
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
