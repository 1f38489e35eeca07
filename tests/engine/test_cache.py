"""FeatureCache: LRU within a byte budget, statistics, oversized entries refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medrefine.engine.budget.cache import FeatureCache, image_digest
from medrefine.errors import InputError


def _f(n: int) -> tuple[torch.Tensor, ...]:
    return (torch.zeros(n, dtype=torch.uint8),)


def test_lru_eviction_by_bytes() -> None:
    cache = FeatureCache(max_bytes=100)
    assert cache.put(("a", "m", "p"), _f(40)) and cache.put(("b", "m", "p"), _f(40))
    assert cache.get(("a", "m", "p")) is not None  # a is now most recent
    cache.put(("c", "m", "p"), _f(40))  # evicts b
    assert ("b", "m", "p") not in cache and ("a", "m", "p") in cache
    s = cache.stats
    assert (s.hits, s.misses, s.evictions, s.entries, s.bytes) == (1, 0, 1, 2, 80)


def test_entry_larger_than_budget_is_not_stored() -> None:
    cache = FeatureCache(max_bytes=10)
    cache.put(("a", "m", "p"), _f(5))
    assert not cache.put(("b", "m", "p"), _f(11))
    assert ("a", "m", "p") in cache and cache.get(("b", "m", "p")) is None
    assert cache.stats.misses == 1


def test_replacing_a_key_updates_bytes() -> None:
    cache = FeatureCache(max_bytes=100)
    cache.put(("a", "m", "p"), _f(40))
    cache.put(("a", "m", "p"), _f(10))
    assert cache.stats.bytes == 10 and cache.stats.entries == 1


def test_image_digest_depends_on_values_dtype_and_shape() -> None:
    a = np.arange(12, dtype=np.uint8)
    assert image_digest(a) == image_digest(a.copy())
    assert image_digest(a) != image_digest(a.astype(np.int16))
    assert image_digest(a) != image_digest(a.reshape(3, 4))
    b = a.copy()
    b[5] = 0
    assert image_digest(a) != image_digest(b)
    assert image_digest(a.reshape(3, 4).T) == image_digest(np.ascontiguousarray(a.reshape(3, 4).T))


def test_shared_cache_is_one_object() -> None:
    assert FeatureCache.shared() is FeatureCache.shared()


@pytest.mark.parametrize("bad", [-1, "1", 1.5, True, None])
def test_budget_that_is_not_a_byte_count_is_refused_by_type(bad: object) -> None:
    with pytest.raises(InputError, match="max_bytes"):
        FeatureCache(max_bytes=bad)  # type: ignore[arg-type]


def test_budget_of_numpy_integer_is_taken() -> None:
    assert FeatureCache(max_bytes=np.int64(10)).stats.max_bytes == 10
