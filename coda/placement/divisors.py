"""Integer arithmetic the placement rules and enumerations are phrased in: the divisors of a
count (by prime factorisation, memoized) and the valid values nearest to a rejected one."""

from __future__ import annotations

from collections.abc import Iterable

from coda.caches import memoize


@memoize("placement.factorisations", 4096)
def _factor(n: int) -> tuple[tuple[int, int], ...]:
    """Prime factorisation of n >= 1 by trial division up to sqrt(n): ((p, e), ...)."""
    out, p = [], 2
    while p * p <= n:
        e = 0
        while n % p == 0:
            n //= p
            e += 1
        if e:
            out.append((p, e))
        p += 1 if p == 2 else 2
    if n > 1:
        out.append((n, 1))
    return tuple(out)


def divisors(n: int) -> list[int]:
    """The divisors of n, ascending (none for n < 1), from its prime factorisation: the work
    grows with sqrt(n) and the number of divisors, never with n."""
    if n < 1:
        return []
    out = [1]
    for p, e in _factor(n):
        out = [d * p**k for d in out for k in range(e + 1)]
    return sorted(out)


def nearest(values: Iterable[int], target: int, k: int = 3) -> str:
    """The (up to) k values closest to target, ascending, comma-separated."""
    best = sorted(values, key=lambda v: (abs(v - target), v))[:k]
    return ", ".join(str(v) for v in sorted(best))


__all__ = ["divisors", "nearest"]
