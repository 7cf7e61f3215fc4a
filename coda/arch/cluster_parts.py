"""A GPU cluster from its parts: GPU, GPUs per node, and per-GPU bandwidth inside and between nodes.

    Cluster.from_parts(gpu="h100-sxm", n_devices=64, gpus_per_node=8, intra_node_GBps=200,
                       inter_node_Gbps=400)          # an H800 system: NVLink at 400 GB/s both ways
    cluster("h100-sxm:8:nvlink=200GBps:ib=400Gbps", 64)   # the same, as a spec string

The result is an ordinary two-level `Cluster` (levels `nvswitch` and `infiniband`, innermost
first; one level if it fits in one node), so every collective formula of `coda.arch.clusters`
applies unchanged.

Units. `intra_node_GBps` is what one GPU can send, and at the same time receive, inside its node,
in GB/s each way (1e9 B/s): 300 for NVLink 3 (A100, "600 GB/s" bidirectional), 450 for NVLink 4
(H100, "900 GB/s"), 200 for the H800's NVLink ("400 GB/s"). `inter_node_Gbps` is the network
bandwidth per GPU each way in Gb/s (1e9 bit/s), the unit NICs are sold in: 8 x 400 Gb/s
ConnectX-7 for 8 GPUs is 400; a DGX with 4 such NICs for 8 GPUs is 200.

Latencies and efficiencies default to the cited values of the preset whose fabric the GPU uses
(`FABRIC_PRESETS`: Ampere -> `dgx-a100`, Hopper -> `dgx-h100`, any other architecture ->
`dgx-a100`): per-step latency and collective / send-recv efficiency of each level and the
per-call overhead, fitted to Vidur's NCCL measurements or, for InfiniBand, measured by NCCL's
maintainers (see `coda hardware clusters`). A default is *borrowed* when it was measured on
other hardware than it is used for: another GPU architecture, or a level bandwidth that differs
from the preset's; then `from_parts` logs a warning naming what was borrowed, and each level's
`source` says so. Pass `intra_efficiency`, `inter_efficiency`, `intra_latency_us`,
`inter_latency_us` or `collective_overhead_us` to replace them (an efficiency given applies to
ring collectives and send/recv alike; so does a latency).
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any

from coda.arch.clusters import (
    Cluster,
    Level,
    _check_n_devices,
    cluster,
    is_duration,
    is_fraction,
    is_rate,
    preset_description,
    whole_domains,
)
from coda.errors import ConfigError

log = logging.getLogger(__name__)

FABRIC_PRESETS: dict[str, str] = {"ampere": "dgx-a100", "hopper": "dgx-h100"}
"""The preset whose network parameters a GPU architecture's cluster takes by default (NVLink 3 +
HDR InfiniBand for Ampere, NVLink 4 + NDR for Hopper); other architectures borrow `dgx-a100`'s."""
DEFAULT_FABRIC_PRESET = "dgx-a100"

MAX_INTER_NODE_GBPS = 3200.0
"""Most network bandwidth per GPU accepted, Gb/s each way: 4 x 800 Gb/s NICs per GPU, four times
the most any system ships (one 800 Gb/s ConnectX-8 per GPU)."""
PCIE_GBPS_EACH_WAY = 64.0
"""Most intra-node bandwidth per GPU without NVLink, GB/s each way: PCIe 5.0 x16 (32 GT/s x 16
lanes, 128b/130b) is 63 GB/s each way."""

_LAT_UNITS = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3}
_SPEC_KEYS = {"nvlink": "intra", "intra": "intra", "ib": "inter", "inter": "inter", "net": "inter"}
_SPEC_EXTRA = ("eff", "lat")
SPEC_SYNTAX = ("GPU:GPUS_PER_NODE:nvlink=<bw>[:ib=<bw>][:nvlink-eff=<0..1>][:ib-eff=<0..1>][:nvlink-lat=<t>]"
               "[:ib-lat=<t>]  (bw: 450GBps, 400Gbps, 3.2Tbps; t: 2us, 500ns; `intra`/`inter` alias nvlink/ib)")


def is_parts_spec(name: object) -> bool:
    """Whether a `--cluster` value is a parts spec (has a `:`) rather than a preset name."""
    return isinstance(name, str) and ":" in name


def _bandwidth(text: str, key: str) -> float:
    """`450GBps` / `450GB/s` / `400Gbps` / `400Gb/s` / `3.2Tbps` -> bytes/s. B is bytes, b bits;
    a bare number is refused (which one would it be?)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([GT])([Bb])(ps|/s)\s*", text)
    if not m:
        raise ConfigError(f"cluster spec: {key}={text!r} is not a bandwidth; give a number and a unit: GBps (GB/s, "
                          f"bytes) or Gbps (Gb/s, bits), e.g. {key}=450GBps or {key}=400Gbps")
    value, prefix, b = float(m.group(1)), m.group(2), m.group(3)
    scale = 1e9 if prefix == "G" else 1e12
    return value * scale / (1 if b == "B" else 8)


def _latency(text: str, key: str) -> float:
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ns|us|ms)\s*", text)
    if not m:
        raise ConfigError(f"cluster spec: {key}={text!r} is not a latency; give a number and a unit, e.g. {key}=2us "
                          "(ns, us or ms)")
    return float(m.group(1)) * _LAT_UNITS[m.group(2)]


def parse_spec(spec: str) -> dict[str, Any]:
    """The keyword arguments of `cluster_from_parts` (without n_devices) from a spec string.

    Syntax: `SPEC_SYNTAX`, e.g. ``h100-sxm:8:nvlink=450GBps:ib=400Gbps``.

    Raises:
        ConfigError: a missing or non-integer GPUs per node, a part without `=`, an unknown or
            repeated key, a bandwidth or latency without a unit, an efficiency outside (0, 1].
    """
    parts = [p.strip() for p in spec.split(":")]
    if len(parts) < 3 or not parts[0] or not parts[1]:
        raise ConfigError(f"cluster spec {spec!r} needs at least GPU:GPUS_PER_NODE:nvlink=<bw>; syntax: {SPEC_SYNTAX}")
    try:
        per_node = int(parts[1])
    except ValueError:
        raise ConfigError(f"cluster spec {spec!r}: GPUs per node {parts[1]!r} is not a whole number; e.g. "
                          f"{parts[0]}:8:...") from None
    out: dict[str, Any] = {"gpu": parts[0], "gpus_per_node": per_node}
    seen: set[str] = set()
    for part in parts[2:]:
        _read_part(spec, part, out, seen)
    if "intra_node_GBps" not in out:
        raise ConfigError(f"cluster spec {spec!r} lacks the intra-node bandwidth, e.g. nvlink=450GBps; syntax: "
                          f"{SPEC_SYNTAX}")
    return out


def _read_part(spec: str, part: str, out: dict[str, Any], seen: set[str]) -> None:
    """One `key=value` part of a spec into `out` (keyword arguments of `cluster_from_parts`);
    `seen` holds the fields read so far (a repeated one is refused)."""
    key, sep, value = part.partition("=")
    key = key.strip().lower()
    base, _, extra = key.partition("-")
    if not sep or base not in _SPEC_KEYS or (extra and extra not in _SPEC_EXTRA):
        raise ConfigError(f"cluster spec {spec!r}: part {part!r} is not one of nvlink=, ib=, nvlink-eff=, ib-eff=, "
                          f"nvlink-lat=, ib-lat= (aliases intra, inter); syntax: {SPEC_SYNTAX}")
    level = _SPEC_KEYS[base]
    field = {"": f"{level}_node_bw", "eff": f"{level}_efficiency", "lat": f"{level}_latency_us"}[extra]
    if field in seen:
        raise ConfigError(f"cluster spec {spec!r}: {key} is given twice; give each part once")
    seen.add(field)
    if not extra:
        bw = _bandwidth(value, key)
        if level == "intra":
            out["intra_node_GBps"] = bw / 1e9
        else:
            out["inter_node_Gbps"] = bw * 8 / 1e9
    elif extra == "eff":
        try:
            out[field] = float(value)
        except ValueError:
            raise ConfigError(f"cluster spec {spec!r}: {key}={value!r} is not a number in (0, 1]") from None
    else:
        out[field] = _latency(value, key) * 1e6


def fabric_preset(gpu: Any) -> str:
    """The cluster preset whose network parameters a GPU's architecture takes by default
    (`FABRIC_PRESETS`; `DEFAULT_FABRIC_PRESET` for any other architecture)."""
    return FABRIC_PRESETS.get(gpu.architecture, DEFAULT_FABRIC_PRESET)


def _positive(value: Any, name: str, hi: float, unit: str, why: str) -> float:
    if not is_rate(value):
        raise ConfigError(f"cluster from parts: {name}={value!r} must be a number in (0, {hi:g}] {unit}{why}")
    if value > hi:
        raise ConfigError(f"cluster from parts: {name}={value:g} {unit} exceeds {hi:g} {unit}{why}")
    return float(value)


def _fraction(value: Any, name: str) -> float:
    if not is_fraction(value):
        raise ConfigError(f"cluster from parts: {name}={value!r} must be a fraction in (0, 1] (achieved share of the "
                          "nominal bandwidth)")
    return float(value)


def _latency_s(value: Any, name: str) -> float:
    if not is_duration(value):
        raise ConfigError(f"cluster from parts: {name}={value!r} must be a number of microseconds >= 0")
    return float(value) * 1e-6


def _checked_parts(g: Any, n_devices: int, gpus_per_node: int, intra_node_GBps: float,
                   inter_node_Gbps: float | None) -> tuple[float, float | None]:
    """Step 1 of `cluster_from_parts`: the counts and bandwidths validated, as (intra-node GB/s,
    inter-node Gb/s or None); the intra-node bandwidth is at most the GPU's NVLink each way, or
    PCIe 5.0's without NVLink."""
    _check_n_devices(n_devices, "cluster from parts")
    if isinstance(gpus_per_node, bool) or not isinstance(gpus_per_node, int) or not 1 <= gpus_per_node <= 1024:
        raise ConfigError(f"cluster from parts: gpus_per_node={gpus_per_node!r} must be a whole number in [1, 1024] "
                          "(GPUs in one NVLink domain; 8 in a DGX/HGX node)")
    nvlink = g.nvlink_bw_each_way_bytes_per_s
    hi, why = ((nvlink / 1e9, f" ({g.name}'s NVLink each way; the bidirectional figure is twice it: give the "
                              "each-way number)") if nvlink else (PCIE_GBPS_EACH_WAY, f" ({g.name} has no NVLink: "
                                                                                    "PCIe 5.0 x16 each way)"))
    intra = _positive(intra_node_GBps, "intra_node_GBps", hi, "GB/s", why)
    multi_node = n_devices > gpus_per_node
    if not whole_domains(n_devices, gpus_per_node):
        raise ConfigError(f"cluster from parts: n_devices={n_devices} must be at most gpus_per_node={gpus_per_node} "
                          f"or whole nodes (a multiple of {gpus_per_node})")
    if multi_node and inter_node_Gbps is None:
        raise ConfigError(f"cluster from parts: {n_devices} GPUs span {n_devices // gpus_per_node} nodes of "
                          f"{gpus_per_node}; give inter_node_Gbps (network bandwidth per GPU, e.g. 400 for one "
                          "400 Gb/s NIC per GPU)")
    inter = None if inter_node_Gbps is None else _positive(inter_node_Gbps, "inter_node_Gbps", MAX_INTER_NODE_GBPS,
                                                          "Gb/s", " (network bandwidth per GPU, each way)")
    return intra, inter


def _reference(g: Any) -> tuple[str, Cluster, list[str]]:
    """Step 2: the GPU's fabric preset, a two-level cluster of it (the levels whose fitted or cited
    parameters are the defaults) and, when the preset's GPU is of another architecture, what that borrows."""
    from coda.arch.gpus import gpu as gpu_lookup

    preset = fabric_preset(g)
    desc = preset_description(preset)
    ref = cluster(preset, 2 * desc["levels"][0]["size"])  # both levels, with their fitted/cited parameters
    ref_gpu = gpu_lookup(desc["device"])
    other_arch = [] if g.architecture == ref_gpu.architecture else [
        f"{g.name} is {g.architecture}; the network parameters were measured on {ref_gpu.architecture} "
        f"({ref_gpu.name})"]
    return preset, ref, other_arch


def _level(what: str, bw: float, eff: float | None, lat: float | None, ref_level: Level, size: int, preset: str,
           other_arch: bool) -> tuple[Level, list[str]]:
    """Step 3: one level of `size` devices at `bw` bytes/s each way, its efficiency and latency
    given or the reference level's, and what the defaults borrow (a level measured at another bandwidth)."""
    kw: dict[str, Any] = dict(latency_s=ref_level.latency_s, efficiency=ref_level.efficiency,
                              p2p_latency_s=ref_level.p2p_latency_s, p2p_efficiency=ref_level.p2p_efficiency)
    side = what.split("-")[0]
    if eff is not None:
        kw.update(efficiency=_fraction(eff, f"{side}_efficiency"), p2p_efficiency=_fraction(eff, f"{side}_efficiency"))
    if lat is not None:
        s = _latency_s(lat, f"{side}_latency_us")
        kw.update(latency_s=s, p2p_latency_s=s)
    defaults = [k for k, v in (("efficiency", eff), ("latency", lat)) if v is None]
    other_bw = not math.isclose(bw, ref_level.bw_each_way_bytes_per_s, rel_tol=1e-9)
    borrowed = []
    if defaults and other_bw:
        borrowed.append(f"{what} {' and '.join(defaults)} of {preset} {ref_level.name}, measured at "
                        f"{ref_level.bw_each_way_bytes_per_s / 1e9:g} GB/s, applied at {bw / 1e9:g} GB/s")
    src = f"from parts: {bw / 1e9:g} GB/s per GPU each way (given)"
    if defaults:
        src += (f"; {' and '.join(defaults)} {'borrowed ' if other_bw or other_arch else ''}from {preset} "
                f"{ref_level.name} ({ref_level.source})")
    return Level(ref_level.name, size, bw, source=src, **kw), borrowed


def cluster_from_parts(gpu: Any, n_devices: int, gpus_per_node: int, intra_node_GBps: float,
                       inter_node_Gbps: float | None = None, *, intra_efficiency: float | None = None,
                       inter_efficiency: float | None = None, intra_latency_us: float | None = None,
                       inter_latency_us: float | None = None, collective_overhead_us: float | None = None,
                       name: str | None = None) -> Any:
    """A cluster of `n_devices` GPUs, `gpus_per_node` per node (module doc for units and defaults).

    Args:
        gpu: a GPU catalog name or `GPU`.
        n_devices: GPUs in the cluster: at most one node's worth, or whole nodes.
        gpus_per_node: GPUs in one node (one NVLink/NVSwitch domain), >= 1.
        intra_node_GBps: per-GPU bandwidth inside a node, GB/s each way; at most the GPU's NVLink
            bandwidth each way (half its bidirectional figure), or PCIe 5.0's 64 GB/s without NVLink.
        inter_node_Gbps: per-GPU network bandwidth between nodes, Gb/s each way (needed when
            `n_devices` spans more than one node).
        intra_efficiency, inter_efficiency: achieved fraction of each level's bandwidth, (0, 1].
        intra_latency_us, inter_latency_us: per-step latency of each level, microseconds.
        collective_overhead_us: fixed time per collective call, microseconds.
        name: the cluster's name (default: the spec string of its parts).

    Returns:
        A `coda.arch.clusters.Cluster`.

    Raises:
        ConfigError: an unknown GPU, a count or bandwidth out of range (a bandwidth above the
            GPU's NVLink is the bidirectional figure, which the message says), a missing network
            bandwidth for a multi-node cluster.
    """
    from coda.arch.gpus import gpu as gpu_lookup

    g = gpu_lookup(gpu)
    intra, inter = _checked_parts(g, n_devices, gpus_per_node, intra_node_GBps, inter_node_Gbps)
    preset, ref, borrowed = _reference(g)
    other_arch = bool(borrowed)
    given = [("intra-node", intra * 1e9, intra_efficiency, intra_latency_us)]
    if inter is not None and n_devices > gpus_per_node:
        given.append(("inter-node", inter * 1e9 / 8, inter_efficiency, inter_latency_us))
    levels = []
    for (what, bw, eff, lat), ref_level, size in zip(given, ref.levels, (min(gpus_per_node, n_devices), n_devices)):
        level, why = _level(what, bw, eff, lat, ref_level, size, preset, other_arch)
        levels.append(level)
        borrowed += why
    overhead = (ref.collective_overhead_s if collective_overhead_us is None
                else _latency_s(collective_overhead_us, "collective_overhead_us"))
    if borrowed:
        log.warning("cluster from parts: defaults borrowed from %s (pass efficiencies/latencies to replace them): %s",
                    preset, "; ".join(borrowed))
    if name is None:
        name = f"{g.name}:{gpus_per_node}:nvlink={intra:g}GBps" + (f":ib={inter:g}Gbps" if inter is not None else "")
    return Cluster(g, n_devices, tuple(levels) if n_devices > 1 else (), overhead, name)


def cluster_from_spec(spec: str, n_devices: int, device: Any = None) -> Any:
    """`cluster_from_parts` of a spec string (`parse_spec`); `device`, if given, must be the spec's GPU."""
    kw = parse_spec(spec)
    if device is not None:
        from coda.arch.gpus import gpu as gpu_lookup

        dev_name = getattr(device, "name", device)
        if not isinstance(dev_name, str) or gpu_lookup(kw["gpu"]).name != gpu_lookup(dev_name).name:
            raise ConfigError(f"cluster spec {spec!r} names its GPU {kw['gpu']!r}; a second device {dev_name!r} was "
                              "given: name the GPU in one place")
    return cluster_from_parts(n_devices=n_devices, name=spec.strip(), **kw)


def spec_description(spec: str) -> dict[str, Any]:
    """A preset-like description of a parts spec: device, device kind, the preset its default
    latencies and efficiencies come from, and the nominal levels (what `preset_description` gives
    for a preset)."""
    from coda.arch.gpus import gpu as gpu_lookup

    kw = parse_spec(spec)
    g = gpu_lookup(kw["gpu"])
    preset = fabric_preset(g)
    levels = [{"name": "nvswitch", "size": kw["gpus_per_node"], "bw_each_way_GBps": kw["intra_node_GBps"],
               "source": "given"}]
    if "inter_node_Gbps" in kw:
        levels.append({"name": "infiniband", "size": None, "bw_each_way_GBps": kw["inter_node_Gbps"] / 8,
                       "source": "given"})
    return {"name": spec.strip(), "description": f"{g.name} cluster from parts; defaults from {preset}",
            "device": g.name, "device_kind": "gpu", "calibration": preset_description(preset)["calibration"],
            "levels": levels}
