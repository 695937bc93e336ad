"""Fixtures of the Prefect flow tests: Prefect's test harness (a temporary local server), started once."""

import pytest


@pytest.fixture(scope="session")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
