"""Issue 14: no code runs from project files that the user has not trusted.

Item 8: a project's LF suite runs only when its hash (suite, the files beside it, config) is recorded in the
user's trust file, outside the project. Item 7: a Label Studio URL from a project file gets no API key until the
user confirmed it, the key's variable is never named by the project, and credentials in URLs are never saved or
printed. Each "machine" is a ``$LABELFLOW_HOME`` of its own.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from labelflow.cli import main
from labelflow.errors import UntrustedProjectError
from labelflow.project import Project
from labelflow.project_config import CONFIG_FILE
from labelflow.suite_edit import try_lf
from labelflow.trust import trust_file

PAYLOAD = "\nopen({marker!r}, 'a').write('ran\\n')\n"


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """``machine(name)``: switch to a machine of its own (an empty ``$LABELFLOW_HOME``); returns its folder."""

    def switch(name: str) -> Path:
        home = tmp_path / "homes" / name
        monkeypatch.setenv("LABELFLOW_HOME", str(home))
        return home

    switch("mine")
    return switch


@pytest.fixture
def received(project, machine, tmp_path, project_files):
    """A project made on another machine (the tiny project, applied), whose suite carries a payload that writes
    ``marker`` when the suite is imported, as it arrives on this machine: nothing of it trusted here."""
    machine("sender")
    marker = tmp_path / "payload-ran"
    project.apply(lfs=project_files["suite"], n_jobs=1)  # the sender names their suite
    project.fit("majority_vote")
    project_files["suite"].write_text(project_files["suite"].read_text() + PAYLOAD.format(marker=str(marker)))
    machine("victim")
    return project, marker


def test_item8_apply_refuses_an_untrusted_project_and_says_how_to_trust_it(received, capsys):
    project, marker = received
    assert main(["apply", "-p", str(project.root), "--jobs", "1"]) == 2
    err = capsys.readouterr().err
    assert "is not a trusted project, so labelflow does not run its LF suite" in err
    assert f"labelflow trust {project.root.resolve()}" in err and "--trust" in err
    assert "outside the project folder" in err  # the suite is ../src/suite.py
    assert not marker.exists()
    with pytest.raises(UntrustedProjectError):
        project.lfs()
    assert not marker.exists()
    # trusting it (after reading it) lets it run
    assert main(["trust", str(project.root)]) == 0
    assert "trusted" in capsys.readouterr().err and trust_file().is_file()
    assert main(["apply", "-p", str(project.root), "--jobs", "1"]) == 0
    assert marker.read_text() == "ran\n"


def test_item8_apply_trust_flag_and_trust_check(received, capsys):
    project, marker = received
    assert main(["trust", "--check", str(project.root)]) == 2
    assert "is not a trusted project" in capsys.readouterr().err
    assert main(["apply", "-p", str(project.root), "--jobs", "1", "--trust"]) == 0
    assert marker.exists() and "trusted" in capsys.readouterr().err
    assert main(["trust", "--check", str(project.root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["trusted"] is True
    assert main(["trust", "--revoke", str(project.root)]) == 0
    assert not Project.open(project.root).trusted


def test_item8_an_edited_suite_must_be_trusted_again_and_a_copy_is_trusted(project, project_files, tmp_path, capsys):
    assert project.trusted  # init trusts the suite file the user named
    project.lfs()
    copy = tmp_path / "copy"
    shutil.copytree(project.root, copy)
    assert Project.open(copy).trusted  # trust is by content: the same suite and config
    marker = tmp_path / "payload-ran"
    project_files["suite"].write_text(project_files["suite"].read_text() + PAYLOAD.format(marker=str(marker)))
    assert not project.trusted and not Project.open(copy).trusted
    with pytest.raises(UntrustedProjectError, match="its suite or config changed since it was trusted"):
        project.lfs()
    # a file beside the suite is code the suite can load: it counts too
    project.trust()
    (project_files["suite"].parent / "helpers.py").write_text("import os\n")
    assert not project.trusted
    assert not marker.exists()
    # labelflow's own edit of a trusted suite (the app's Save, analyze --accept) keeps it trusted
    project.trust()
    from labelflow.suite_edit import save_lf

    save_lf(project, 'kw_cash = keyword_lf("kw_cash", ["cash"], label=1)')
    assert project.trusted and "kw_cash" in [lf.name for lf in project.lfs()]


def test_item8_trying_an_lf_in_an_untrusted_project_runs_nothing(received):
    project, marker = received
    trial = try_lf(project, 'kw_x = keyword_lf("kw_x", ["x"], label=1)')
    assert trial.error is not None and "is not a trusted project" in trial.error
    assert not marker.exists()


def test_item8_the_ray_address_of_an_untrusted_project_file_is_not_used(received, capsys, tmp_path, project_files):
    project, marker = received
    project.update_config(ray_address="ray://attacker.example:10001")
    suite = tmp_path / "my_suite.py"  # a suite the user names on the command line runs, but not on their cluster
    shutil.copy(project_files["suite"], suite)
    suite.write_text(suite.read_text().replace(PAYLOAD.format(marker=str(marker)), ""))
    assert main(["apply", "-p", str(project.root), "--lfs", str(suite), "--engine", "ray", "--jobs", "1"]) == 2
    err = capsys.readouterr().err
    assert "does not run code on the Ray cluster its config names (ray://attacker.example:10001)" in err


def test_item8_the_fingerprint_covers_where_the_config_points(received):
    project, _ = received
    fp = project.fingerprint()
    assert fp.outside and fp.suite == (project.root / project.config.lfs).resolve()
    raw = json.loads((project.root / CONFIG_FILE).read_text())
    (project.root / CONFIG_FILE).write_text(json.dumps({**raw, "lfs": "/etc/../" + str(fp.suite)}))
    assert Project.open(project.root).fingerprint().digest != fp.digest  # another config: another fingerprint


# --- item 7: Label Studio -----------------------------------------------------------------------------------


class FakeLabelStudio:
    """Stands in for ``label_studio_sdk.LabelStudio``: records where a key was sent; knows one project (7)."""

    made: list[tuple[str, str]] = []
    fail = False

    def __init__(self, *, base_url: str, api_key: str, timeout: float) -> None:
        FakeLabelStudio.made.append((base_url, api_key))
        outer = self

        class Projects:
            def get(self, project_id):
                if FakeLabelStudio.fail:
                    import httpx

                    raise httpx.ConnectError("connection refused")
                return type("P", (), {"label_config": '<View><Choices name="label"><Choice value="HAM"/>'
                                                      '<Choice value="SPAM"/></Choices></View>', "title": "t"})()

        class Tasks:
            def list(self, **kwargs):
                return []

        outer.projects, outer.tasks = Projects(), Tasks()


@pytest.fixture
def fake_studio(monkeypatch, project, machine):
    pytest.importorskip("label_studio_sdk")
    import label_studio_sdk

    FakeLabelStudio.made, FakeLabelStudio.fail = [], False
    monkeypatch.setattr(label_studio_sdk, "LabelStudio", FakeLabelStudio)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-for-label-studio")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "ls-key")
    return FakeLabelStudio


def _studio_state(project, url: str) -> None:
    project.store.studio.write_text(json.dumps({"url": url, "project_id": 7}))


def test_item7_a_project_file_does_not_send_an_api_key_to_its_url(project, fake_studio, capsys):
    # what a crafted project carries: an attacker's URL and the name of a valuable key
    project.update_config(studio_url="http://127.0.0.1:9/collect", studio_api_key_env="OPENAI_API_KEY")
    _studio_state(project, "http://127.0.0.1:9/collect")
    assert main(["studio", "status", "-p", str(project.root)]) == 2
    err = capsys.readouterr().err
    assert "comes from" in err and "has not been confirmed on this machine" in err and "--url" in err
    assert fake_studio.made == []  # no client made, no key sent anywhere
    # the user names the server: the key comes from LABEL_STUDIO_API_KEY, never from the variable the file names
    assert main(["studio", "status", "-p", str(project.root), "--url", "http://127.0.0.1:9/collect"]) == 0
    assert fake_studio.made == [("http://127.0.0.1:9/collect", "ls-key")]
    # now confirmed on this machine: the saved URL is used without --url
    assert main(["studio", "status", "-p", str(project.root)]) == 0
    assert [key for _, key in fake_studio.made] == ["ls-key", "ls-key"]
    assert "sk-not-for-label-studio" not in capsys.readouterr().out


def test_item7_the_key_variable_is_given_on_the_command_line_only(project, fake_studio, monkeypatch, capsys):
    project.update_config(studio_api_key_env="OPENAI_API_KEY")
    _studio_state(project, "http://127.0.0.1:9")
    monkeypatch.delenv("LABEL_STUDIO_API_KEY")
    assert main(["studio", "status", "-p", str(project.root), "--url", "http://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "LABEL_STUDIO_API_KEY, which is not set" in err and "studio_api_key_env 'OPENAI_API_KEY' is ignored" in err
    monkeypatch.setenv("MY_LS_KEY", "mine")
    assert main(["studio", "status", "-p", str(project.root), "--url", "http://127.0.0.1:9",
                 "--api-key-env", "MY_LS_KEY"]) == 0
    assert fake_studio.made == [("http://127.0.0.1:9", "mine")]


def test_item7_credentials_in_the_url_are_never_saved_or_printed(project, fake_studio, capsys):
    _studio_state(project, "http://127.0.0.1:9")
    url = "http://ann:s3cret-pw@127.0.0.1:9/"
    assert main(["studio", "status", "-p", str(project.root), "--url", url]) == 0
    out, err = capsys.readouterr()
    assert "s3cret" not in out + err and "at http://***@127.0.0.1:9/" in out
    assert fake_studio.made == [(url, "ls-key")]  # used for this command
    saved = json.loads((project.root / CONFIG_FILE).read_text())["studio_url"]
    assert saved == "http://127.0.0.1:9"
    assert "s3cret" not in trust_file().read_text() and "s3cret" not in project.store.studio.read_text()
    assert main(["studio", "status", "-p", str(project.root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["url"] == "http://127.0.0.1:9"


def test_item7_a_failed_studio_command_leaves_labelflow_json_unchanged(project, fake_studio, capsys):
    config = (project.root / CONFIG_FILE).read_bytes()
    fake_studio.fail = True
    assert main(["studio", "status", "-p", str(project.root), "--url", "http://user:pw@127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "has not pushed to Label Studio" in err or "cannot reach Label Studio" in err
    assert "pw@" not in err
    _studio_state(project, "http://127.0.0.1:9")
    assert main(["studio", "status", "-p", str(project.root), "--url", "http://user:pw@127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach Label Studio at http://***@127.0.0.1:9" in err and "pw" not in err
    assert (project.root / CONFIG_FILE).read_bytes() == config
