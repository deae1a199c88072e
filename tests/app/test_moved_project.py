"""A project moved to another folder opens in the app (issue 16, point 8): its suite outside the project folder
is found where it was, the sidebar says so once, and a settings change's stale outputs are said on every page."""

from __future__ import annotations

import json
import shutil

from labelflow.project import Project
from labelflow.project_config import CONFIG_FILE
from labelflow.store import ProjectStore


def errors(at) -> list[str]:
    assert not at.exception, [e.value for e in at.exception]
    return [e.value for e in at.error]


def test_a_moved_project_opens_in_the_app_with_its_suite(youtube_template, tmp_path, monkeypatch, open_page):
    made = tmp_path / "made" / "youtube"  # where the project was made, with its suite beside it, outside it
    shutil.copytree(youtube_template, made)
    suite = made.parent / "lfs" / "youtube_spam.py"
    suite.parent.mkdir()
    shutil.move(made / "lfs" / "youtube_spam.py", suite)
    config = json.loads((made / CONFIG_FILE).read_text())
    config.update(lfs="../lfs/youtube_spam.py", root=str(made.resolve()))
    (made / CONFIG_FILE).write_text(json.dumps(config))
    Project(made, Project.open(made).config).trust()

    moved = tmp_path / "elsewhere" / "youtube"
    moved.parent.mkdir()
    shutil.move(made, moved)
    monkeypatch.setenv("LABELFLOW_PROJECT", str(moved))
    at = open_page("lfs")
    assert errors(at) == []
    names = [lf.name for lf in Project.open(moved).lfs()]
    assert len(names) == 18 and list(at.dataframe[0].value["lf"]) == names
    notes = [i.value for i in at.sidebar.info]
    assert any(f"the project was at {made.resolve()} and is now at {moved.resolve()}" in n for n in notes), notes
    assert any(f"it now names the file it named before the move, {suite.resolve()}" in n for n in notes), notes
    assert json.loads((moved / CONFIG_FILE).read_text())["root"] == str(moved.resolve())

    ProjectStore.of(moved).stale_file.write_text(json.dumps({"apply": "the LF suite is now x.py (was y.py)"}))
    at = open_page("data")
    assert any("The label matrix is out of date: the LF suite is now x.py (was y.py). Apply the LFs again." in w.value
               for w in at.sidebar.warning)
