"""Herding with bounded cost per class (issue 18.1): exact up to a block, blocked beyond."""

import numpy as np

from skdlc._selection import herding_order, select_herding


def _reference(Z, n_steps):
    """Exact greedy herding, written out as the method says (float64, argmin over all rows)."""
    Z = np.asarray(Z, dtype=np.float64)
    mu, total, picked, order = Z.mean(0), np.zeros(Z.shape[1]), [], []
    for t in range(1, n_steps + 1):
        d = ((total + Z) / t - mu) ** 2
        d = d.sum(1)
        d[picked] = np.inf
        i = int(np.argmin(d))
        picked.append(i)
        order.append(i)
        total += Z[i]
    return np.array(order)


def _class(n, d=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)) + rng.standard_t(2, (n, 1)) * rng.random(d)


def test_small_classes_are_herded_exactly():
    Z = _class(300)
    np.testing.assert_array_equal(herding_order(Z, 60), _reference(Z, 60))


def test_blocked_herding_is_an_order_whose_prefixes_follow_the_mean():
    Z = _class(3000)
    full = herding_order(Z, block_size=512)
    assert sorted(full.tolist()) == list(range(3000))
    for k in (30, 300, 900):
        np.testing.assert_array_equal(herding_order(Z, k, block_size=512), full[:k])
        exact = _reference(Z, k) if k <= 300 else herding_order(Z, k, exact_max=3000)
        err = np.linalg.norm(Z[full[:k]].mean(0) - Z.mean(0))
        err_exact = np.linalg.norm(Z[exact].mean(0) - Z.mean(0))
        err_random = np.mean([np.linalg.norm(Z[np.random.default_rng(s).choice(3000, k, replace=False)].mean(0)
                                             - Z.mean(0)) for s in range(10)])
        assert err < max(2.0 * err_exact, 1e-3) and err < err_random / 5, (k, err, err_exact, err_random)


def test_blocked_herding_is_deterministic_and_float32_inputs_work():
    Z = _class(2500)
    a = herding_order(Z, 100, block_size=1000)
    np.testing.assert_array_equal(a, herding_order(Z.astype(np.float32), 100, block_size=1000))
    # small classes stay exact; forcing blocks on them gives another (close) order
    small = Z[:300]
    np.testing.assert_array_equal(herding_order(small, 50), _reference(small, 50))
    assert not np.array_equal(herding_order(small, 50, exact_max=0, block_size=30), herding_order(small, 50))
    kept = select_herding(np.zeros(2500), Z.astype(np.float32), 250)
    assert kept.size == 250 and np.all(np.diff(kept) > 0)
