"""Values that make no physical sense are refused by the Python API too, not only by the CLI."""

import pytest

from coda.errors import ConfigError
from coda.models import get, ops
from coda.models.summary import summarize


@pytest.mark.parametrize("dims", [dict(m=2**48 + 1, k=8, n=8), dict(m=8, k=10**20, n=8), dict(m=8, k=8, n=0),
                                  dict(m=8, k=8, n=8, batch=-1)])
def test_matmul_dimensions_beyond_any_workload_or_not_positive_are_refused(dims):
    with pytest.raises(ConfigError, match="op dimension"):
        ops.matmul(**dims)


def test_largest_accepted_dimension_still_builds():
    assert ops.elementwise(ops.MAX_OP_DIM).dims["n_elements"] == 2**48


@pytest.mark.parametrize("seq_len", [0, -1, 2.5, True])
def test_summary_refuses_a_sequence_that_is_not_a_positive_integer(seq_len):
    with pytest.raises(ConfigError, match="seq_len"):
        summarize(get("gpt2"), seq_len)


def test_summary_defaults_to_the_models_maximum():
    assert summarize(get("gpt2"))["seq_len"] == get("gpt2").max_seq_len
