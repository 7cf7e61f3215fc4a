"""`coda calibrate`: refit the GPU tile model on the shipped measurements.

Writes the fit to `--out` (default `./gpu_tiles.json`), never into the installed package; use
it with `CODA_GPU_CALIBRATION=PATH` or `GPUTileModel.from_file(PATH)`. `--check` only compares
the refit with the shipped calibration within the reproducibility tolerances; `--report` prints
every parameter with its standard error and status (fitted, fixed or tied, and why), and writes
the fit only to an `--out` given with it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable

from coda.cli._output import print_json, print_table
from coda.errors import CodaError


def _progress(groups: Iterable[str]) -> Iterable[str]:
    """Per-group progress on stderr when it is a terminal."""
    if not sys.stderr.isatty():
        return groups
    return _bar(groups)


def _bar(groups: Iterable[str]) -> Iterable[str]:
    """A tqdm bar over the parameter groups, naming the one being fitted."""
    from tqdm import tqdm

    bar = tqdm(list(groups), desc="calibrate", unit="group", file=sys.stderr)
    for group in bar:
        bar.set_postfix_str(group)
        yield group


DEFAULT_OUT = "gpu_tiles.json"


def _run(args: argparse.Namespace) -> int:
    from coda.predictor import calibrate
    from coda.predictor.gpu_tiles import shipped_calibration
    from coda.predictor.identifiability import PARAM_RTOL, PREDICTION_RTOL, group_dicts, report_frame

    # --check writes nothing; --report writes only to an --out given explicitly
    writes = not args.check and (args.out is not None or not args.report)
    out = calibrate.check_out_path(args.out or DEFAULT_OUT) if writes else None
    print("fitting the GPU tile model on the shipped NeuSight and Vidur kernels ...", file=sys.stderr)
    cal, reports = calibrate.fit_report(progress=_progress)
    if args.report:
        if args.json:
            print_json({"groups": group_dicts(reports)})
        else:
            df = report_frame(reports)
            print_table(df.drop(columns="reason"),
                        title="GPU tile calibration: value, standard error (se), rel_se = se / value, "
                              "sensitivity (rms d log t / d log value), most correlated parameter, status")
            print("\nwhy each held parameter is held:")
            for r in df[df["status"] != "fitted"].itertuples(index=False):
                print(f"  {r.group}.{r.param} ({r.status}): {r.reason}")
    if args.check:
        diffs = calibrate.differences(cal, shipped_calibration())
        if diffs:
            raise CodaError(f"the refit differs from the shipped coda/predictor/calibration/gpu_tiles.json beyond "
                            f"the tolerances ({len(diffs)} differences; first: {'; '.join(diffs[:3])}); "
                            "refit with `coda calibrate --out PATH` and compare")
        print(f"the refit reproduces the shipped calibration: every parameter within {PARAM_RTOL:.0e} relative "
              f"and every prediction on the shipped measurements within {PREDICTION_RTOL:.1%}", file=sys.stderr)
        return 0
    if out is None:
        return 0
    path = calibrate.write(cal, out)
    print(f"wrote {path}; use it with CODA_GPU_CALIBRATION={path}", file=sys.stderr)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="refit the GPU tile model on the shipped kernel measurements")
    p.add_argument("--out", default=None, metavar="PATH",
                   help=f"where to write the fit (default ./{DEFAULT_OUT}, or nothing with --report; never the "
                        "installed package)")
    p.add_argument("--check", action="store_true",
                   help="write nothing; check that the refit reproduces the shipped calibration within tolerance "
                        "(default: off, write the fit to --out)")
    p.add_argument("--report", action="store_true",
                   help="print every parameter with its standard error and status (fitted, fixed, tied) (default: off)")
    p.add_argument("--json", action="store_true", help="with --report: the report as JSON (default: a table)")
    p.set_defaults(handler=_run)
