"""One objective vocabulary (`coda.objectives`) shared by placement, the design search and the serving search."""

from __future__ import annotations

import pytest

from coda.errors import ConfigError
from coda.objectives import OBJECTIVES, objective
from coda.placement.optimize import OBJECTIVES as PLACEMENT
from coda.search.run import OBJECTIVES as SEARCH
from coda.serving.search import OBJECTIVES as SERVING


def test_every_search_ranks_by_names_of_the_one_vocabulary() -> None:
    assert set(PLACEMENT) <= set(OBJECTIVES) and set(SEARCH) <= set(OBJECTIVES) and set(SERVING) <= set(OBJECTIVES)


def test_alias_and_refusals() -> None:
    assert objective("throughput", PLACEMENT) == "tokens_per_s"
    assert objective("tokens_per_s_per_w", SEARCH) == "tokens_per_s_per_w"
    with pytest.raises(ConfigError, match="tokens_per_s"):
        objective("tokens_per_s_per_w", PLACEMENT)  # a name of the vocabulary this search cannot rank by
    with pytest.raises(ConfigError, match="objective=3"):
        objective(3, SEARCH)
    with pytest.raises(ConfigError, match="qps_per_device"):
        objective("tokens_per_s", SERVING)  # a training objective the serving search cannot rank by
