"""Fixtures the fine-tuner's run tests share."""

import pytest


@pytest.fixture
def fitted(project, stop_runs_after):
    """The tiny project (16 rows), applied and fit; its runs are stopped at teardown."""
    project.apply()
    project.fit()
    stop_runs_after(project)
    return project
