"""Every memo coda keeps between calls, in one visible, bounded, clearable place.

coda caches pure computations keyed by their arguments (layer profiles, plan cost arrays,
collective costs, roofline bounds, tile features, ...) so that a plan search or a design-space
sweep does not redo them. Each cache is bounded (least recently used entries go first) and
registered here under a dotted name, so a notebook session can see what it holds and free it:

    >>> import coda
    >>> coda.caches.sizes()          # {"placement.terms": (currsize, maxsize), ...}
    >>> coda.clear_caches()          # empties every one

Module-level state elsewhere in the package holds only immutable tables (the GPU catalog, the
shipped calibration, measured network curves), loaded once.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple, Protocol, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class CacheInfo(NamedTuple):
    """Entries held and the bound (functools' `cache_info()` shape, without the hit counts)."""

    currsize: int
    maxsize: int


class _Clearable(Protocol):
    def cache_info(self) -> Any: ...

    def cache_clear(self) -> None: ...


class LRUCache:
    """A bounded least-recently-used mapping for caches that fill several keys at once (`get` /
    `put`), with the `cache_info()` / `cache_clear()` of a functools cache."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._store: OrderedDict[Hashable, Any] = OrderedDict()

    def get(self, key: Hashable) -> Any:
        """The value under `key` (marked as recently used), or None."""
        if key in self._store:
            self._store.move_to_end(key)
            return self._store[key]
        return None

    def put(self, key: Hashable, value: Any) -> None:
        """Store `value`, evicting the least recently used entry beyond `maxsize`."""
        self._store[key] = value
        self._store.move_to_end(key)
        if len(self._store) > self.maxsize:
            self._store.popitem(last=False)

    def __len__(self) -> int:
        return len(self._store)

    def cache_info(self) -> CacheInfo:
        return CacheInfo(len(self._store), self.maxsize)

    def cache_clear(self) -> None:
        self._store.clear()


class Registry:
    """The caches of the package by name: sizes, bounds and one `clear()` for all of them."""

    def __init__(self) -> None:
        self._caches: dict[str, _Clearable] = {}

    def register(self, name: str, cache: _Clearable) -> None:
        """Add a cache (anything with `cache_info()` and `cache_clear()`) under its name (a module
        reloaded registers its new cache in place of the old one)."""
        self._caches[name] = cache

    def names(self) -> list[str]:
        return sorted(self._caches)

    def sizes(self) -> dict[str, CacheInfo]:
        """(entries, bound) of every registered cache."""
        out = {}
        for name in self.names():
            info = self._caches[name].cache_info()
            out[name] = CacheInfo(int(info.currsize), int(info.maxsize))
        return out

    def entries(self) -> int:
        """Entries held over all caches."""
        return sum(info.currsize for info in self.sizes().values())

    def clear(self) -> None:
        """Empty every cache."""
        for cache in self._caches.values():
            cache.cache_clear()


registry = Registry()


def memoize(name: str, maxsize: int) -> Callable[[F], F]:
    """`functools.lru_cache(maxsize)`, registered in `registry` under `name`."""

    def wrap(fn: F) -> F:
        cached = functools.lru_cache(maxsize=maxsize)(fn)
        registry.register(name, cached)
        return cached  # type: ignore[return-value]

    return wrap


def lru(name: str, maxsize: int) -> LRUCache:
    """A new `LRUCache`, registered in `registry` under `name`."""
    cache = LRUCache(maxsize)
    registry.register(name, cache)
    return cache


def sizes() -> dict[str, CacheInfo]:
    """(entries, bound) of every cache of the package (of the modules imported so far)."""
    return registry.sizes()


def clear() -> None:
    """Empty every cache of the package."""
    registry.clear()


__all__ = ["CacheInfo", "LRUCache", "Registry", "clear", "lru", "memoize", "registry", "sizes"]
