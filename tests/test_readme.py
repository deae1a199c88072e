"""The README's Python example runs as written, on the shipped data."""

from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(monkeypatch):
    monkeypatch.chdir(README.parent)
    head, rest = README.read_text().split("```python\n", 1)
    # blank lines first, so line numbers are the README's and inspect.getsource finds the LFs' source there
    code = "\n" * (head.count("\n") + 1) + rest.split("```")[0]
    scope: dict = {}
    exec(compile(code, str(README), "exec"), scope)
    L, probs = scope["L"], scope["probs"]
    assert L.shape == (len(scope["ds"]), 5)
    assert probs.shape == (len(scope["ds"]), 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
