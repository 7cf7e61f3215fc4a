"""The constants of the accelerator power model as data: a `Technology`, each constant with its source.

`DEFAULT_TECHNOLOGY` holds the values `coda/arch/power.py` is documented with. A user who has
other figures (another node's energy table, a measured leakage density, HBM3e I/O energy) writes
them in a JSON file and passes `Technology.from_json(path)` to `Accelerator(technology=...)` or
`DesignSpace(technology=...)`; nothing is patched in a module. The file holds every field below
and a `sources` entry for each (the strict loader refuses a missing, unknown or unsourced key).

    {"name": "my-7nm", "mult_pj": {"1": 0.07, "2": 0.34, "4": 1.31}, ..., "sources": {"mult_pj": "...", ...}}

Energies are at 7 nm; `energy_factor_vs_7nm` scales the on-chip ones to another node.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from coda.errors import ConfigError
from coda.units import KiB, MiB

Table = tuple[tuple[int, float], ...]
"""(key, value) pairs: operand bytes -> pJ, SRAM bytes -> pJ per 64-bit access, node nm -> factor."""

_J21 = ("Jouppi et al., 'Ten Lessons From Three Generations Shaped Google's TPUv4i', ISCA 2021, Table 2 "
        "(7 nm update of Horowitz, ISSCC 2014)")
_DRAM = ("Micron MT40A2G4 8 Gb DDR4 datasheet (IDD2N 34 mA, IDD3N 38 mA, IDD5 250 mA, tRFC 350 ns) and JEDEC "
         "JESD235 (HBM tREFI 3.9 us), at VDD 1.2 V: 1.2 * (0.034 + 0.212 * 350e-9 / 3.9e-6) W per 8 Gb die")
# Standby + refresh of one 8 Gb (1 GiB) die: VDD * (IDD2N + (IDD5 - IDD3N) * tRFC / tREFI) [_DRAM].
_HBM_W_PER_GIB = 1.2 * (0.034 + (0.250 - 0.038) * 350e-9 / 3.9e-6)


@dataclass(frozen=True)
class Technology:
    """Energy and leakage constants of the TDP model (`coda.arch.power`), with their sources.

    Attributes:
        name: a label for tables.
        mult_pj, add_pj: one multiply / add of 1-, 2- and 4-byte operands at 7 nm, pJ.
        accumulate_pj: the accumulate of a MAC whose products are 1, 2 or 4 bytes wide, pJ.
        sram_pj_per_64b: SRAM array bytes -> pJ per 64-bit access at 7 nm (interpolated in log2).
        hbm_pj_per_bit: HBM I/O and access energy per bit transferred, pJ.
        hbm_w_per_gib: HBM standby and refresh power per GiB of capacity, W.
        link_pj_per_bit: inter-chip SerDes energy per bit (TX + RX), pJ.
        static_w_per_mm2: leakage density over the node-scaled area, W/mm^2.
        energy_factor_vs_7nm: node nm -> on-chip dynamic energy relative to 7 nm.
        sources: field name -> where its values come from.
    """

    name: str = "7nm-j21"
    mult_pj: Table = ((1, 0.07), (2, 0.34), (4, 1.31))  # fp16 (0.34), not bf16 (0.21): the conservative 16-bit
    add_pj: Table = ((1, 0.007), (2, 0.16), (4, 0.38))
    accumulate_pj: Table = ((1, 0.03), (2, 0.38), (4, 0.38))  # int32 for int8 products, fp32 otherwise
    sram_pj_per_64b: Table = ((8 * KiB, 7.5), (32 * KiB, 8.5), (1 * MiB, 14.0))
    hbm_pj_per_bit: float = 3.9
    hbm_w_per_gib: float = _HBM_W_PER_GIB
    link_pj_per_bit: float = 5.0
    static_w_per_mm2: float = 90.0 / 600.0
    energy_factor_vs_7nm: Table = ((7, 1.0), (5, 0.70), (4, 0.70 / 1.22))
    sources: tuple[tuple[str, str], ...] = (
        ("mult_pj", _J21), ("add_pj", _J21), ("accumulate_pj", _J21), ("sram_pj_per_64b", _J21),
        ("hbm_pj_per_bit", "O'Connor et al., 'Fine-Grained DRAM', MICRO 2017: HBM2 about 3.9 pJ/bit (the low end "
                           "of [J21]'s 250-450 pJ per 64-bit HBM2 access); published HBM3 figures are 3-4 pJ/bit"),
        ("hbm_w_per_gib", _DRAM),
        ("link_pj_per_bit", "the ~5 pJ/bit class of long-reach 25-112 Gb/s electrical SerDes (TX + RX with "
                            "equalisation) in the ISSCC literature; one figure for ICI and NVLink"),
        ("static_w_per_mm2", "Jouppi et al., 'TPU v4', ISCA 2023: minimum measured power 90 W (chip + HBM) over a "
                             "< 600 mm^2 die; an upper bound on leakage density, held across 7/5/4 nm"),
        ("energy_factor_vs_7nm", "TSMC N5: ~30% lower power than N7 at the same speed; TSMC N4P press release "
                                 "(26 Oct 2021): 22% better power efficiency than N5"),
    )

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"Technology.name={self.name!r} must be a non-empty string")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("name", "sources"):
                continue
            pairs = value if isinstance(value, tuple) else ((0, value),)
            for key, v in pairs:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0 < v < math.inf):
                    raise ConfigError(f"Technology.{f.name}: {v!r} (at {key}) must be a finite positive number")
        for table in ("mult_pj", "add_pj", "accumulate_pj"):
            if sorted(k for k, _ in getattr(self, table)) != [1, 2, 4]:
                raise ConfigError(f"Technology.{table} needs operand widths 1, 2 and 4 bytes exactly")
        if len(self.sram_pj_per_64b) < 2 or any(a >= b for (a, _), (b, _) in zip(self.sram_pj_per_64b,
                                                                                  self.sram_pj_per_64b[1:])):
            raise ConfigError("Technology.sram_pj_per_64b needs at least two points in increasing capacity")
        if dict(self.energy_factor_vs_7nm).get(7) != 1.0:
            raise ConfigError("Technology.energy_factor_vs_7nm must hold 7: 1.0 (energies are given at 7 nm)")
        cited = dict(self.sources)
        missing = [f.name for f in fields(self) if f.name not in ("name", "sources") and not cited.get(f.name)]
        if missing:
            raise ConfigError(f"Technology {self.name!r}: no source for {', '.join(missing)}; every constant "
                              "names where it comes from")

    @property
    def nodes_nm(self) -> tuple[int, ...]:
        """The technology nodes with an energy factor."""
        return tuple(k for k, _ in self.energy_factor_vs_7nm)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (the format `from_dict` reads)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = {str(k): v for k, v in value} if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: Any, source: str = "technology") -> Technology:
        """A `Technology` from `to_dict`-shaped data; every field and a source for each are required.

        Raises:
            ConfigError: not an object, a missing or unknown key, a malformed table or value.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: a technology is a JSON object, got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(names))
        missing = [n for n in names if n not in data]
        if unknown or missing:
            raise ConfigError(f"{source}: " + "; ".join(
                ([f"unknown key(s) {', '.join(unknown)}"] if unknown else [])
                + ([f"missing key(s) {', '.join(missing)}"] if missing else [])) + f" (keys: {', '.join(names)})")
        values: dict[str, Any] = {}
        for name in names:
            value = data[name]
            default = getattr(cls, name)
            if isinstance(default, tuple):
                if not isinstance(value, dict):
                    raise ConfigError(f"{source}: {name} must be an object, e.g. {json.dumps(dict(default[:2]))}")
                try:
                    values[name] = tuple((str(k), str(v)) if name == "sources" else (int(k), v)
                                         for k, v in value.items())
                except ValueError:
                    raise ConfigError(f"{source}: {name} keys must be whole numbers, got {list(value)}") from None
            else:
                values[name] = value
        return cls(**values)

    @classmethod
    def from_json(cls, path: str | Path) -> Technology:
        """A `Technology` from a JSON file (see the module doc).

        Raises:
            ConfigError: the file cannot be read or parsed, or its content is refused by `from_dict`.
        """
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except OSError as err:
            raise ConfigError(f"technology file {p}: cannot be read ({err.strerror or err})") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ConfigError(f"technology file {p}: not JSON text ({err})") from None
        return cls.from_dict(data, f"technology file {p}")


DEFAULT_TECHNOLOGY = Technology()
"""The constants `coda.arch.power` documents (7 nm, [J21] energies)."""
