"""The README's Python example runs as written, on the shipped data."""

from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(monkeypatch):
    monkeypatch.chdir(README.parent)
    code = README.read_text().split("```python\n")[1].split("```")[0]
    scope: dict = {}
    exec(compile(code, str(README), "exec"), scope)
    L, probs = scope["L"], scope["probs"]
    assert L.shape == (len(scope["ds"]), 5)
    assert probs.shape == (len(scope["ds"]), 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
