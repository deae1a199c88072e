"""Label Studio round trip against a real Label Studio server on 127.0.0.1 (started and stopped here).

The server runs from the ``label-studio`` executable in ``$LABELFLOW_LABEL_STUDIO`` or
``.venv-studio/bin`` (``make test`` installs it there; Label Studio pins its own
Django stack, so it lives in a venv of its own).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import polars as pl
import pytest

from labelflow import studio
from labelflow.cli import main
from labelflow.errors import ProjectError

REPO = Path(__file__).resolve().parents[1]
BINARY = Path(os.environ.get("LABELFLOW_LABEL_STUDIO", REPO / ".venv-studio" / "bin" / "label-studio"))
TOKEN = "0123456789abcdef0123456789abcdef01234567"
ADMIN = "admin@example.com"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not BINARY.is_file(), reason=f"no Label Studio server at {BINARY} (make test installs it)")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A Label Studio server with a fresh data folder; yields its URL, then stops it."""
    port, data = free_port(), tmp_path_factory.mktemp("label-studio")
    env = {**os.environ, "LABEL_STUDIO_BASE_DATA_DIR": str(data), "LABEL_STUDIO_USERNAME": ADMIN,
           "LABEL_STUDIO_PASSWORD": "not-a-real-password", "LABEL_STUDIO_USER_TOKEN": TOKEN,
           "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true", "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true"}
    log = open(data / "server.log", "wb")
    proc = subprocess.Popen([str(BINARY), "start", "--internal-host", "127.0.0.1", "--port", str(port), "--no-browser"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if urllib.request.urlopen(f"{url}/health", timeout=5).status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Label Studio did not start: {(data / 'server.log').read_text()[-2000:]}")
            time.sleep(2)
        yield {"url": url, "proc": proc}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture
def ls_project(project, server, monkeypatch):
    """The tiny project (8 train rows without labels), applied and fit, pointed at the server."""
    from dataclasses import replace

    monkeypatch.setenv("LABEL_STUDIO_API_KEY", TOKEN)
    project.config = replace(project.config, studio_url=server["url"])
    studio.confirm_url(server["url"])  # the user's own server: a project's URL gets the key once confirmed
    project.apply()
    project.fit()
    return project


def client(server):
    from label_studio_sdk import LabelStudio

    return LabelStudio(base_url=server["url"], api_key=TOKEN)


def choose(task_id: int, choice: str, user: int, sdk, *, cancelled: bool = False) -> None:
    """Annotate a task through the API as a person would."""
    sdk.annotations.create(id=task_id, completed_by=user, was_cancelled=cancelled, result=[] if cancelled else [
        {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [choice]}}])


TRAIN = ["t0", "t1", "t2", "t3"]


def test_push_annotate_pull_round_trip(ls_project, server, capsys):
    project, sdk = ls_project, client(server)
    # push through the CLI (the URL is saved in labelflow.json), then check the tasks the way Label Studio sees them
    assert main(["studio", "push", "-p", str(project.root), "--url", server["url"], "--rows", ",".join(TRAIN),
                 "--json"]) == 0
    pushed = json.loads(capsys.readouterr().out)
    assert (pushed["created"], pushed["updated"], pushed["predictions_added"]) == (4, 0, 4)
    assert json.loads((project.root / "labelflow.json").read_text())["studio_url"] == server["url"]
    remote = sdk.projects.get(pushed["project_id"])
    assert studio.config_choices(remote.label_config) == ["HAM", "SPAM"]
    tasks = {t.data["labelflow_id"]: t for t in sdk.tasks.list(project=pushed["project_id"], fields="all")}
    assert sorted(tasks) == TRAIN
    assert tasks["t0"].data["lf_votes"] == "kw_sub → SPAM" and tasks["t1"].data["lf_votes"] == "kw_song → HAM"
    assert [p.model_version for p in tasks["t0"].predictions] == [pushed["model_version"]]
    assert tasks["t0"].predictions[0].result[0]["value"]["choices"] == ["SPAM"]
    # pushing again: nothing new
    again = studio.push(project, rows=TRAIN)
    assert (again.created, again.updated, again.unchanged, again.predictions_added) == (0, 0, 4, 0)
    assert len(list(sdk.tasks.list(project=pushed["project_id"]))) == 4

    # two people label: the admin and a second annotator who disagrees on t0; one task skipped
    admin = sdk.users.whoami().id
    other = sdk.users.create(email="bob@example.com", username="bob").id
    choose(tasks["t0"].id, "SPAM", admin, sdk)
    choose(tasks["t1"].id, "HAM", admin, sdk)
    choose(tasks["t0"].id, "HAM", other, sdk)
    choose(tasks["t2"].id, "SPAM", other, sdk)
    choose(tasks["t3"].id, "HAM", admin, sdk, cancelled=True)
    report = studio.pull(project)
    assert (report.added, report.changed, report.unchanged, report.skipped) == (4, 0, 0, 1)
    assert report.conflicts == [{"id": "t0", "labels": [0, 1], "annotators": [ADMIN, "bob@example.com"]}]
    stored = project.annotations.frame().sort("id", "annotator")
    assert stored.select("id", "annotator", "label", "source").rows() == [
        ("t0", ADMIN, 1, "label-studio"), ("t0", "bob@example.com", 0, "label-studio"),
        ("t1", ADMIN, 0, "label-studio"), ("t2", "bob@example.com", 1, "label-studio")]
    assert (stored["time"] > time.time() - 3600).all()
    ids = project.dataset().frame["id"].to_list()
    gold = project.gold()
    assert (gold[ids.index("t1")], gold[ids.index("t2")], gold[ids.index("t0")]) == (0, 1, -1)  # t0 disputed: no gold
    # pulling again changes nothing
    assert main(["studio", "pull", "-p", str(project.root)]) == 0
    assert "0 labels added, 0 changed, 4 unchanged, 1 skipped" in capsys.readouterr().out
    assert project.annotations.frame().sort("id", "annotator").equals(stored)
    assert main(["studio", "status", "-p", str(project.root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["annotated"] == 3


def test_bad_remote_state_is_refused_and_the_store_is_unchanged(ls_project, server, monkeypatch):
    project, sdk = ls_project, client(server)
    pushed = studio.push(project, rows=["t4", "t5"])
    task = next(t for t in sdk.tasks.list(project=pushed.project_id) if t.data["labelflow_id"] == "t4")
    choose(task.id, "HAM", sdk.users.whoami().id, sdk)
    choose(task.id, "EGGS", sdk.users.whoami().id, sdk)  # a class the schema lacks (the admin's second answer)
    with pytest.raises(studio.StudioError, match=r"nothing stored.*chose \['EGGS'\]"):
        studio.pull(project)
    assert project.annotations.frame().is_empty()
    # a labeling config that no longer matches the schema
    sdk.projects.update(pushed.project_id, label_config=studio.label_config(["HAM", "SPAM", "OTHER"], ["", "", ""]))
    with pytest.raises(studio.StudioError, match=r"has the classes \['HAM', 'SPAM', 'OTHER'\].*schema has \['HAM', 'SPAM'\]"):
        studio.push(project, rows=["t4"])
    # a wrong key, a missing key
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "f" * 40)
    with pytest.raises(studio.StudioError, match="rejected the API key"):
        studio.status(project)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY")
    with pytest.raises(studio.StudioError, match="LABEL_STUDIO_API_KEY, which is not set"):
        studio.pull(project)


def test_pre_annotations_are_the_class_fit_and_export_give_ties_included(ls_project, server, tmp_path):
    """A row whose votes tie gets the class Project.predictions gives it (the tie broken by the row's position, as
    `fit` scores it and `export` writes it), not the first class."""
    project, sdk = ls_project, client(server)
    # "love this song" (t1, row 1): kw_song says HAM, kw_love SPAM; majority vote ties; the hash of row 1 picks SPAM
    project.suite_path.write_text(project.suite_path.read_text()
                                  + '\nkw_love = keyword_lf("kw_love", ["love"], label=1)\n')
    project.trust()  # an edited suite runs once trusted again
    project.apply()
    project.fit()
    predictions = project.predictions()
    ids = project.dataset().frame["id"].to_list()
    t1, t3 = ids.index("t1"), ids.index("t3")
    assert predictions.tied[t1] and not predictions.tied[t3] and predictions.probs[t1].tolist() == [0.5, 0.5]
    assert predictions.pred[t1] == 1  # np.argmax would say HAM
    exported = project.export(tmp_path / "labels.parquet").filter(pl.col("id").is_in(["t1", "t3"])).sort("id")
    assert exported["pred_name"].to_list() == ["SPAM", "HAM"] and exported["tied"].to_list() == [True, False]
    pushed = studio.push(project, rows=["t1", "t3"])
    assert (pushed.created, pushed.predictions_added) == (2, 2)
    tasks = {t.data["labelflow_id"]: t for t in sdk.tasks.list(project=pushed.project_id, fields="all")}
    assert tasks["t1"].data["lf_votes"] == "kw_song → HAM; kw_love → SPAM"
    assert [p.result[0]["value"]["choices"] for p in tasks["t1"].predictions] == [["SPAM"]]
    assert [p.score for p in tasks["t1"].predictions] == [0.5]
    assert [p.result[0]["value"]["choices"] for p in tasks["t3"].predictions] == [["HAM"]]


def test_server_down_push_and_pull_fail_clearly(ls_project, server):
    project = ls_project
    studio.push(project, rows=["t6"])
    state = project.store.studio.read_bytes()
    project.annotate("t6", "SPAM", annotator="ann")
    before = project.annotations.frame()
    os.killpg(server["proc"].pid, signal.SIGTERM)
    server["proc"].wait(timeout=60)
    for action in (lambda: studio.push(project, rows=["t6"]), lambda: studio.pull(project)):
        with pytest.raises(studio.StudioError, match=f"cannot reach Label Studio at {server['url']}"):
            action()
    assert project.annotations.frame().equals(before)
    assert project.store.studio.read_bytes() == state
    with pytest.raises(ProjectError, match="no Label Studio URL configured"):
        from dataclasses import replace
        project.config = replace(project.config, studio_url=None)
        studio.push(project)


def test_label_config_round_trips_the_schema():
    assert studio.config_choices(studio.label_config(["A", "B & C", 'say "hi"'], ["first", "", ""])) == [
        "A", "B & C", 'say "hi"']
