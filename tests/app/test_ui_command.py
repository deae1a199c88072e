"""``labelflow ui``: checks the project, then replaces itself with ``streamlit run app/main.py``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from labelflow.cli import main

APP = Path(__file__).resolve().parents[2] / "app"


@pytest.fixture
def execve(monkeypatch):
    """Record the process ``labelflow ui`` would become instead of becoming it."""
    calls = []
    monkeypatch.setattr(os, "execve", lambda path, argv, env: calls.append((path, argv, env)))
    return calls


def test_ui_runs_streamlit_on_the_app_bound_to_this_machine(app_project, execve, capsys):
    assert main(["ui", "-p", str(app_project.root)]) == 0
    [(path, argv, env)] = execve
    assert path == sys.executable
    assert argv == [sys.executable, "-m", "streamlit", "run", str(APP / "main.py"), "--server.address", "127.0.0.1",
                    "--server.port", "8501", "--server.headless", "true", "--browser.gatherUsageStats", "false",
                    "--client.toolbarMode", "viewer"]  # no Deploy button
    assert env["LABELFLOW_PROJECT"] == str(app_project.root.resolve())
    assert "on http://127.0.0.1:8501" in capsys.readouterr().err


def test_ui_host_and_port(app_project, execve):
    assert main(["ui", "-p", str(app_project.root), "--host", "0.0.0.0", "--port", "9000", "--allow-remote"]) == 0
    argv = execve[0][1]
    assert argv[argv.index("--server.address") + 1] == "0.0.0.0" and argv[argv.index("--server.port") + 1] == "9000"


@pytest.mark.parametrize("port", ["0", "70000"])
def test_ui_rejects_a_port_out_of_range(app_project, execve, capsys, port):
    assert main(["ui", "-p", str(app_project.root), "--port", port]) == 2
    assert f"--port must be in 1..65535; got {port}" in capsys.readouterr().err
    assert execve == []


def test_ui_on_a_folder_that_is_no_project_says_so_and_starts_nothing(tmp_path, execve, capsys):
    assert main(["ui", "-p", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("labelflow: error: ") and "is not a labelflow project" in err
    assert execve == []


def test_ui_without_the_app_folder_says_where_it_looked(app_project, execve, capsys, monkeypatch, tmp_path):
    import labelflow

    monkeypatch.setattr(labelflow, "__file__", str(tmp_path / "site-packages" / "labelflow" / "__init__.py"))
    assert main(["ui", "-p", str(app_project.root)]) == 2
    err = capsys.readouterr().err
    assert f"the app is missing: {tmp_path / 'site-packages' / 'app' / 'main.py'} does not exist" in err
    assert execve == []


# --- issue 14, item 9: the app (which runs typed Python) is not opened to the network by accident -------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "example.com"])
def test_item9_ui_refuses_a_non_loopback_host_without_allow_remote(app_project, execve, capsys, host):
    assert main(["ui", "-p", str(app_project.root), "--host", host]) == 2
    err = capsys.readouterr().err
    assert f"--host {host} would open the app to other machines" in err and "--allow-remote" in err
    assert execve == []


def test_item9_ui_with_allow_remote_warns_loudly(app_project, execve, capsys):
    assert main(["ui", "-p", str(app_project.root), "--host", "0.0.0.0", "--allow-remote"]) == 0
    argv = execve[0][1]
    assert argv[argv.index("--server.address") + 1] == "0.0.0.0"
    err = capsys.readouterr().err
    assert "WARNING: serving the labelflow app on 0.0.0.0:8501" in err and "run arbitrary Python code" in err


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_item9_ui_on_loopback_needs_no_flag_and_prints_no_warning(app_project, execve, capsys, host):
    assert main(["ui", "-p", str(app_project.root), "--host", host]) == 0
    assert "WARNING" not in capsys.readouterr().err
