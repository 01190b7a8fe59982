"""Counter-based random numbers for the demo world.

Every draw is a pure function of (seed, stream name, keys): a SplitMix64 hash instead of a
stateful generator, so no value depends on how many others were drawn before it.
"""

from __future__ import annotations

import zlib
from typing import Any, Iterable

import numpy as np
from scipy.special import ndtri

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (wrapping uint64 arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


class KeyedRandom:
    """Random numbers as pure functions of (seed, stream, keys...).

    The keys are arrays (broadcast against each other), so one call draws a number for
    every customer, order or event at once."""

    def __init__(self, seed: int) -> None:
        self._seed = np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64)

    def bits(self, stream: str, *keys: Any) -> np.ndarray:
        """64 random bits per key combination."""
        with np.errstate(over="ignore"):
            state = _mix64(self._seed ^ np.uint64(zlib.crc32(stream.encode())))
            for key in keys:
                key = np.asarray(key, dtype=np.int64).view(np.uint64)
                state = _mix64(state + (key + np.uint64(1)) * _GOLDEN)
        return state

    def uniform(self, stream: str, *keys: Any) -> np.ndarray:
        """Uniform in the open interval (0, 1)."""
        return ((self.bits(stream, *keys) >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53

    def between(self, low: float, high: float, stream: str, *keys: Any) -> np.ndarray:
        """Uniform in (low, high)."""
        return low + (high - low) * self.uniform(stream, *keys)

    def normal(self, stream: str, *keys: Any) -> np.ndarray:
        """Standard normal."""
        return ndtri(self.uniform(stream, *keys))

    def exponential(self, stream: str, *keys: Any) -> np.ndarray:
        """Exponential with mean 1."""
        return -np.log(self.uniform(stream, *keys))

    def choice(self, weights: Iterable[float], stream: str, *keys: Any) -> np.ndarray:
        """An index into ``weights``, drawn with those relative weights."""
        w = np.asarray(list(weights), dtype=np.float64)
        cumulative = np.cumsum(w) / w.sum()
        cumulative[-1] = 1.0
        return np.searchsorted(cumulative, self.uniform(stream, *keys), side="right").astype(np.int64)

    def below(self, n: int, stream: str, *keys: Any) -> np.ndarray:
        """An integer in ``0 .. n-1``."""
        return (self.bits(stream, *keys) % np.uint64(n)).astype(np.int64)
