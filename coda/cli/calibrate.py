"""`coda calibrate`: refit the GPU tile model on the shipped measurements."""

from __future__ import annotations

import argparse
import sys

from coda.errors import CodaError


def _run(args: argparse.Namespace) -> int:
    from coda.predictor import calibrate
    from coda.predictor.gpu_tiles import calibration_path

    print("fitting the GPU tile model on the shipped NeuSight and Vidur kernels ...", file=sys.stderr)
    text = calibrate.fit().to_json()
    shipped = calibration_path().read_text()
    if args.check:
        if text != shipped:
            raise CodaError("the refit differs from the shipped coda/predictor/calibration/gpu_tiles.json; "
                            "run `coda calibrate` to rewrite it")
        print("the refit reproduces the shipped calibration byte for byte")
        return 0
    path = calibrate.write(calibrate.Calibration.from_json(text))
    print(f"wrote {path} ({'unchanged' if text == shipped else 'changed'})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="refit the GPU tile model on the shipped kernel measurements")
    p.add_argument("--check", action="store_true", help="only check that the refit equals the shipped file")
    p.set_defaults(handler=_run)
