"""Issue #13: an integer-list flag names a bad value once (``recompute_every='-3' is outside ...``).

A single bad value is shown once, in the ``dest=value`` prefix `Parser` adds; a bad entry of a
list is named once after the whole list (``has -3, which is outside ...``).
"""

import argparse
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coda.cli import main
from coda.cli._args import Parser, int_list

LO, HI = 1, 60


def _error(value, capsys):
    """The one-line error `Parser` prints for `--widths VALUE` (exit code 2)."""
    p = Parser(prog="coda t")
    p.add_argument("--widths", type=int_list(LO, HI, " (devices)"))
    with pytest.raises(SystemExit) as done:
        p.parse_args([f"--widths={value}"])
    assert done.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("value, bad, shown", [
    ("-3", "-3", "widths='-3' is outside [1, 60] (devices); nearest valid: 1"),
    ("0", "0", "widths='0' is outside [1, 60] (devices); nearest valid: 1"),
    ("61", "61", "widths='61' is outside [1, 60] (devices); nearest valid: 60"),
    ("x", "x", "widths='x' is not an integer; give a whole number in [1, 60]"),
    ("1,-3", "-3", "widths='1,-3' has -3, which is outside [1, 60] (devices); nearest valid: 1"),
    ("2, 99", "99", "widths='2, 99' has 99, which is outside [1, 60] (devices); nearest valid: 60"),
    ("1,y", "y", "widths='1,y' has y, which is not an integer"),
])
def test_a_bad_value_is_named_once(value, bad, shown, capsys):
    line = _error(value, capsys)
    assert shown in line, line
    message = line.split("argument --widths: ", 1)[1]
    words = message.replace("'", " ").replace(",", " ").split()
    assert words.count(bad) == (2 if "," in value else 1), line  # a list: once in it, once named


@given(st.integers(min_value=-10**6, max_value=10**6).filter(lambda v: not LO <= v <= HI))
def test_any_out_of_range_single_value_appears_once(value):
    parse = int_list(LO, HI)
    with pytest.raises(argparse.ArgumentTypeError) as err:
        parse(str(value))
    numbers = re.findall(r"-?\d+", str(err.value))  # the range and the nearest valid value
    assert str(value) not in numbers, err.value  # Parser adds `widths='<value>'`; the message does not repeat it
    assert numbers == [str(LO), str(HI), str(min(max(value, LO), HI))], err.value


def test_recompute_every_reads_once(capsys):
    """The report of issue #13: ``recompute_every='-3' -3 is outside`` printed the value twice."""
    assert main(["train", "--model", "gpt2", "--cluster", "dgx-a100", "--devices", "8", "--global-batch", "8",
                 "--seq-len", "128", "--recompute-every=-3"]) == 2
    err = capsys.readouterr().err
    assert "recompute_every='-3' is outside [1, " in err and err.count("-3") == 1, err
