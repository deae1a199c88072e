"""The fine-tuner's docstring examples, run on its modules as they install: ``labelflow.finetune.*``.

pytest's ``--doctest-modules`` names a file by its folder, so collecting ``finetune/`` would load
each module a second time as a top-level ``finetune.*`` (a copy with its own classes), and run the
examples there. They run here on the real modules instead; ``finetune/`` is not in ``testpaths``.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil

import pytest

import labelflow.finetune

MODULES = sorted(
    info.name for info in pkgutil.iter_modules(labelflow.finetune.__path__, "labelflow.finetune.")
    if ">>>" in (importlib.util.find_spec(info.name).loader.get_source(info.name) or "")  # type: ignore[union-attr]
)


def test_the_modules_with_examples_are_found():
    assert "labelflow.finetune.config" in MODULES and len(MODULES) >= 5, MODULES


@pytest.mark.parametrize("name", MODULES)
def test_examples(name):
    module = importlib.import_module(name)
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = [t for t in finder.find(module, name) if t.examples]
    assert tests, f"{name} has '>>>' in its source but no example doctest finds"
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed (printed above)"
