import pytest

from coda.arch.clusters import cluster
from coda.models import get


@pytest.fixture(scope="session")
def llama70():
    return get("llama2-70b")


@pytest.fixture(scope="session")
def h100x8():
    return cluster("dgx-h100", 8)
