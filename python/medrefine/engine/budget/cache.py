"""FeatureCache: the backbone's output per image, kept under a byte budget, evicted LRU.

Key: ``(image digest, model digest, preprocessing digest)``, so a second ``set_image`` of the same
pixels with the same model costs no backbone pass. Tensors are kept in the dtype the backend
produced.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import torch

from medrefine.errors import InputError

CacheKey = tuple[str, str, str]
_SHARED: FeatureCache | None = None
_SHARED_LOCK = threading.Lock()
Features = tuple[torch.Tensor, ...]


def image_digest(image: np.ndarray) -> str:
    """SHA-256 (first 16 hex digits) of an array's dtype, shape and bytes."""
    h = hashlib.sha256(f"{image.dtype.str}{image.shape}".encode())
    h.update(np.ascontiguousarray(image).view(np.uint8).reshape(-1).data)
    return h.hexdigest()[:16]


def nbytes(features: Features) -> int:
    """Bytes held by a feature tuple."""
    return sum(t.element_size() * t.nelement() for t in features)


@dataclass(frozen=True)
class CacheStats:
    """Counters of a :class:`FeatureCache` (bytes are the current total)."""

    hits: int
    misses: int
    evictions: int
    entries: int
    bytes: int
    max_bytes: int


class FeatureCache:
    """Thread-safe LRU cache of feature tuples with a byte budget.

    An entry larger than the whole budget is not stored (``put`` returns False), so one huge
    volume never empties the cache of everyone else's images.

    Args:
        max_bytes: the budget, bytes (an integer >= 0; 0 stores nothing). Anything else raises
            :class:`~medrefine.errors.InputError`.
    """

    def __init__(self, max_bytes: int = 2 << 30) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)):
            raise InputError(
                f"FeatureCache max_bytes must be an integer number of bytes, got {max_bytes!r}"
            )
        if max_bytes < 0:
            raise InputError(
                f"FeatureCache max_bytes must be >= 0 (0 keeps nothing), got {max_bytes}"
            )
        max_bytes = int(max_bytes)
        self.max_bytes = max_bytes
        self._entries: OrderedDict[CacheKey, Features] = OrderedDict()
        self._bytes = 0
        self._hits = self._misses = self._evictions = 0
        self._lock = threading.Lock()

    def get(self, key: CacheKey) -> Features | None:
        """The cached features for ``key`` (marking them most recently used), or None."""
        with self._lock:
            value = self._entries.get(key)
            if value is None:
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            return value

    def put(self, key: CacheKey, features: Features) -> bool:
        """Store ``features``; evict least recently used entries to stay within the budget."""
        size = nbytes(features)
        if size > self.max_bytes:
            return False
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= nbytes(old)
            while self._entries and self._bytes + size > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= nbytes(evicted)
                self._evictions += 1
            self._entries[key] = features
            self._bytes += size
            return True

    @classmethod
    def shared(cls) -> FeatureCache:
        """The process-wide cache sessions use when given none (2 GiB)."""
        global _SHARED
        with _SHARED_LOCK:
            if _SHARED is None:
                _SHARED = cls()
            return _SHARED

    def clear(self) -> None:
        """Drop every entry (counters are kept)."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._entries

    @property
    def stats(self) -> CacheStats:
        """Current counters."""
        with self._lock:
            return CacheStats(
                self._hits,
                self._misses,
                self._evictions,
                len(self._entries),
                self._bytes,
                self.max_bytes,
            )
