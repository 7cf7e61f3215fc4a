"""`coda calibrate` rewrites the shipped calibration byte for byte (about 40 s)."""

from coda.predictor import calibrate
from coda.predictor.gpu_tiles import calibration_path


def test_refit_reproduces_shipped_file():
    assert calibrate.fit().to_json() == calibration_path().read_text()
