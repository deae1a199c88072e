"""Every page at 1440 and 1024 px in a real browser: nothing runs off the side, no chart or table lies on
another, no "Deploy" button, and a screenshot of each in ``test-artifacts/app/`` (``layout-PAGE-WIDTH.png``).

Shared fixtures (``app``, ``new_page``, ``ui``) are in ``conftest.py``.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.slow

PAGES = {"": "Data", "lfs": "Labeling functions", "label_model": "Label model", "error_analysis": "Error analysis",
         "annotate": "Annotate", "finetune": "Fine-tune"}
BLOCKS = '[data-testid="stVegaLiteChart"], [data-testid="stDataFrame"], [data-testid="stMetric"]'

OVERLAPS = """(selector) => {
    const boxes = [...document.querySelectorAll(selector)].map(e => e.getBoundingClientRect())
        .filter(b => b.width > 0 && b.height > 0);
    const hits = [];
    for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
        const a = boxes[i], b = boxes[j];
        const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
        const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
        if (w > 1 && h > 1) hits.push([i, j, Math.round(w), Math.round(h)]);
    }
    return hits;
}"""

WIDEST = """(selector) => Math.max(0, ...[...document.querySelectorAll(selector)]
    .map(e => e.getBoundingClientRect().right))"""


@pytest.mark.parametrize("width", [1440, 1024])
def test_every_page_fits_the_window(app, new_page, ui, width):
    page = new_page(width=width, height=1000)
    for path, title in PAGES.items():
        ui.visit(page, app, path, title)
        page.wait_for_load_state("networkidle")
        expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=ui.TIMEOUT_MS)  # the page ran
        page.wait_for_timeout(500)  # charts lay out after the script ends
        ui.shot(page, f"layout-{path or 'data'}-{width}")
        window = page.evaluate("window.innerWidth")
        assert page.evaluate(WIDEST, BLOCKS) <= window + 1, f"{title} at {width} px: a block runs off the side"
        assert page.evaluate(OVERLAPS, BLOCKS) == [], f"{title} at {width} px: blocks overlap"
        assert page.get_by_role("button", name=re.compile("^Deploy")).count() == 0
        assert page.get_by_text(re.compile(r"^None$")).count() == 0, f"{title}: a cell or label shows 'None'"
