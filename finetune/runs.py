"""A project's fine-tuning runs in the background: start, watch, stop and resume them.

Each run is a ``labelflow finetune`` process (:func:`start_run`) detached from the
caller, so a run outlives the app page or notebook that started it. Its files
live in the project's store::

    store/runs/NAME/              the run folder (see :mod:`labelflow.finetune.run_folder`)
    store/runs/NAME.pid           the launch: {"pid", "started" (Unix seconds), "proc_start" (the process's start
                                  time in clock ticks after boot, from /proc; null elsewhere), "argv", "config",
                                  "label_model"} (JSON, written atomically)
    store/runs/NAME.console.log   the process's stdout and stderr (rewritten at each launch)
    store/runs/NAME.exit          its exit status once it ends by itself (absent while it runs or after
                                  :func:`stop_run`: the launch's shell waits for the run to end, writing no
                                  status for a run that was asked to stop)

A run's status is derived from its process and its files, never from a cached
value: see :func:`run_info`. Stopping a run (SIGTERM) makes it write its
checkpoint at the end of the current step, so a resumed run continues from the
step it was stopped at.

Example::

    from labelflow.finetune import FinetuneConfig
    from labelflow.finetune.runs import list_runs, start_run, stop_run, wait_run
    start_run(project, "student-1", FinetuneConfig(epochs=3))
    [(r.name, r.status, r.progress) for r in list_runs(project)]
    stop_run(project, "student-1")
    start_run(project, "student-1", resume=True)   # continues from the step it stopped at
    wait_run(project, "student-1").metrics["test"]["student"]["accuracy"]
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from labelflow.conventions import ABSTAIN
from labelflow.errors import FinetuneError
from labelflow.files import write_json
from labelflow.finetune.config import FinetuneConfig
from labelflow.finetune.options import config_argv
from labelflow.finetune.run_folder import LABELS_FILE, METRICS_FILE, RUN_FILE, RunFolder, read_json_or_none
from labelflow.finetune.run_folder import proc_start as _proc_start
from labelflow.validation import is_int

if TYPE_CHECKING:
    import polars as pl

    from labelflow.project import Project

Status = Literal["training", "complete", "stopped", "failed"]
"""``training``: its process is alive (launched here, or the process ``progress.json`` names); ``complete``: finished
(``metrics.json`` written); ``stopped``: not finished and no process (stopped, or killed); ``failed``: its last
attempt ended with an error (exit status, or ``progress.json`` status ``failed``)."""

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
ERROR_LINES = 20
# Runs the command given after the exit file's path and waits for it to end, then writes its exit status there (via a
# temporary file), unless it was asked to stop: SIGTERM (stop_run signals the process group) or SIGINT only mark the
# shell, which keeps waiting while the run writes its checkpoint, so the launch is alive until the run has ended.
_WRAPPER = ('exit_file=$1; shift; trap "stopped=1" TERM INT; "$@" & child=$!; '
            'while :; do wait "$child"; code=$?; kill -0 "$child" 2>/dev/null || break; done; '
            '[ -n "$stopped" ] || { echo $code > "$exit_file.tmp" && mv "$exit_file.tmp" "$exit_file"; }')
_CHILDREN: dict[int, subprocess.Popen] = {}
"""The runs this process launched, by pid: polled (and so reaped) here."""


@dataclass(frozen=True)
class RunInfo:
    """One run of a project, as :func:`list_runs` finds it.

    Attributes
    ----------
    name, path
        The run's name and folder (``store/runs/NAME``).
    status
        See :data:`Status`.
    started
        Unix seconds of its last launch (of ``finetune.json`` for a run started elsewhere).
    progress
        The folder's ``progress.json`` (:meth:`RunFolder.read_progress`; ``None`` before the first write).
    config
        The fine-tuning options it runs with (:meth:`FinetuneConfig.to_dict` form).
    error
        For a ``failed`` run: the last lines of its console output (or the error ``progress.json`` records).
    checkpoint
        Its resumable checkpoint: ``{"step", "epoch", "done"}``
        (:func:`labelflow.finetune.checkpoint.checkpoint_summary`; ``step`` ``None`` for a checkpoint of an older
        labelflow), or ``None`` when it has none.
    launched
        Whether :func:`start_run` launched it (only such a run can be stopped from here).
    """

    name: str
    path: Path
    status: Status
    started: float
    progress: dict[str, Any] | None
    config: dict[str, Any]
    error: str | None = None
    checkpoint: dict[str, Any] | None = None
    launched: bool = False

    @property
    def done(self) -> float:
        """Fraction of the planned optimizer steps done, in [0, 1]; 1 once complete (early stopping included)."""
        if self.status == "complete":
            return 1.0
        p = self.progress or {}
        return min(p.get("step", 0) / p["total_steps"], 1.0) if p.get("total_steps") else 0.0

    @property
    def resumable(self) -> bool:
        """Whether Resume continues it from a checkpoint: it is stopped or failed, and has one."""
        return self.status in ("stopped", "failed") and self.checkpoint is not None

    @property
    def not_resumable(self) -> str | None:
        """Why :func:`start_run` cannot resume it (``None`` when it can), in words for the user."""
        if self.status == "training":
            return "it is training"
        if self.checkpoint is not None:
            return None
        if self.status == "failed":
            last = (self.error or "").strip().splitlines()[-1:] or ["see its log"]
            return (f"it failed before its first checkpoint ({last[0]}), so there is no step to continue from; "
                    "start a new run once the cause is fixed")
        step = (self.progress or {}).get("step")
        at = "" if not step else f", at step {step}"
        return (f"it ended before its first checkpoint{at}, so there is no step to continue from; start a new run"
                if self.status == "stopped" else "it has no checkpoint")

    @cached_property
    def metrics(self) -> dict[str, Any] | None:
        """``metrics.json`` of a complete run (see :func:`labelflow.finetune.finetune`), else ``None``; read once."""
        if self.status != "complete" or not (self.path / METRICS_FILE).is_file():
            return None
        return RunFolder(self.path).read_metrics()


def runs_folder(project: Project) -> Path:
    """``project.store.runs``: where the project's runs live."""
    return project.store.runs


def list_runs(project: Project) -> list[RunInfo]:
    """Every run of the project (a folder with ``finetune.json``, or a launch record), newest first."""
    folder = runs_folder(project)
    if not folder.is_dir():
        return []
    names = {p.parent.name for p in folder.glob(f"*/{RUN_FILE}")} | {p.stem for p in folder.glob("*.pid")}
    return sorted((run_info(project, n) for n in names if NAME_PATTERN.fullmatch(n)),
                  key=lambda r: (-r.started, r.name))


def run_info(project: Project, name: str) -> RunInfo:
    """The run called ``name``; :class:`FinetuneError` when there is none."""
    path = runs_folder(project) / _check_name(name)
    folder = RunFolder(path)
    launch = read_json_or_none(_beside(path, "pid"))
    meta = folder.read_meta() if folder.has_run() else None
    if launch is None and meta is None:
        raise FinetuneError(f"no fine-tuning run {name!r} in {runs_folder(project)}")
    exit_file = _beside(path, "exit")
    try:
        code = int(exit_file.read_text()) if exit_file.is_file() else None
    except ValueError:  # being written
        code = None
    progress = folder.read_progress()
    # progress.json of the last attempt (an older one may be left from before a resume that failed at once)
    latest = progress if progress is not None and (
        launch is None or progress.get("time", 0) >= launch.get("started", 0) - 1) else None
    error = None
    if (launch is not None and _alive(launch, path)) or _trainer_alive(progress, path):
        status: Status = "training"
    elif meta is not None and meta.get("status") == "complete" and (path / METRICS_FILE).is_file():
        status = "complete"
    elif latest is not None and latest.get("status") == "stopped":
        status = "stopped"
    elif code or (latest is not None and latest.get("status") == "failed"):
        status = "failed"
        console = _beside(path, "console.log")
        lines = console.read_text(encoding="utf-8", errors="replace").splitlines() if console.is_file() else []
        error = "\n".join(lines[-ERROR_LINES:]) if code and lines else None
        error = error or (latest or {}).get("error") or f"exit status {code}"
    else:
        status = "stopped"
    started = launch["started"] if launch is not None else (path / RUN_FILE).stat().st_mtime
    config = meta["config"] if meta is not None else launch["config"]
    return RunInfo(name, path, status, started, progress, config, error, checkpoint=folder.checkpoint_summary(),
                   launched=launch is not None)


def new_run_name(project: Project, prefix: str = "student") -> str:
    """``"<prefix>-<n>"`` with the smallest ``n ≥ 1`` that no run or file in the runs folder uses."""
    folder, n = runs_folder(project), 1
    while (folder / f"{prefix}-{n}").exists() or any(folder.glob(f"{prefix}-{n}.*")):
        n += 1
    return f"{prefix}-{n}"


def start_run(project: Project, name: str, config: FinetuneConfig | None = None, *, resume: bool = False,
              label_model: str | None = None) -> RunInfo:
    """Launch ``labelflow finetune`` on the project's labels into ``store/runs/NAME``, detached; return at once.

    Parameters
    ----------
    name
        The run's name: a plain folder name (letters, digits, ``-``, ``_``). A new run
        needs a name no run has; ``resume`` needs an existing run that is not training.
    config
        Fine-tuning options (default :class:`FinetuneConfig()`; on ``resume``, the run's own).
    resume
        Continue the run from its last checkpoint (``--resume``), on the labels it started with.
    label_model
        The fitted label model whose labels to train on (default: the project's; on ``resume``,
        the one the run started with). Unused when a resumed run has its labels already.

    Raises
    ------
    FinetuneError
        A bad or taken name, a run to resume that does not exist or is training, options
        that ``labelflow finetune`` cannot express (:func:`config_argv`).
    ProjectError
        ``label_model`` is not fit on the current LFs (and its labels are needed).
    """
    path = runs_folder(project) / _check_name(name)
    current = None
    if _beside(path, "pid").is_file() or (path / RUN_FILE).is_file():
        current = run_info(project, name)
    if resume:
        if current is None:
            raise FinetuneError(f"no run {name!r} to resume in {runs_folder(project)}")
        if current.status == "training":
            raise FinetuneError(f"run {name!r} is training already")
        if current.not_resumable:
            raise FinetuneError(f"run {name!r} cannot be resumed: {current.not_resumable}")
        config = config or FinetuneConfig.from_dict(current.config)
        label_model = label_model or (read_json_or_none(_beside(path, "pid")) or {}).get("label_model")
    elif current is not None or (path.exists() and (not path.is_dir() or any(path.iterdir()))):
        raise FinetuneError(f"a run named {name!r} exists already in {runs_folder(project)}; choose another name "
                            "(or resume it)")
    config = config or FinetuneConfig()
    if not (resume and (path / LABELS_FILE).is_file()):
        project.label_model(label_model)  # fitted on the current LFs, or a ProjectError saying what to run
    argv = [sys.executable, "-m", "labelflow", "finetune", "-p", str(project.root), "--out", str(path),
            *config_argv(config), *(["--label-model", label_model] if label_model else []),
            *(["--resume"] if resume else []), "--json", "-v"]  # -v: the console log keeps the trainer's log lines
    path.parent.mkdir(parents=True, exist_ok=True)
    _beside(path, "exit").unlink(missing_ok=True)
    with open(_beside(path, "console.log"), "w", encoding="utf-8") as console:
        proc = subprocess.Popen(["/bin/sh", "-c", _WRAPPER, "sh", str(_beside(path, "exit")), *argv],
                                stdin=subprocess.DEVNULL, stdout=console, stderr=subprocess.STDOUT,
                                start_new_session=True)
    _CHILDREN[proc.pid] = proc
    write_json(_beside(path, "pid"), {"pid": proc.pid, "started": time.time(), "proc_start": _proc_start(proc.pid),
                                      "argv": argv, "config": config.to_dict(), "label_model": label_model})
    return run_info(project, name)


def stop_run(project: Project, name: str, *, wait: float = 30.0) -> RunInfo:
    """Send SIGTERM to a training run's process group; wait up to ``wait`` seconds for it to end.

    The run finishes its current optimizer step, writes its checkpoint and ends (status
    ``stopped``): ``start_run(project, name, resume=True)`` continues from that step. A run
    still setting up (loading the base model) ends at once, with no checkpoint when it had none.
    The returned info says ``training`` when the run had not ended within ``wait`` seconds.
    Raises :class:`FinetuneError` when the run is not training, or not launched by :func:`start_run`
    (stop it where it runs: Ctrl+C writes the checkpoint too), or when the process its launch
    record (``NAME.pid``, a file in the project) names cannot be verified as this run's
    ``labelflow finetune`` process, started when the record says (:func:`_not_this_run`):
    nothing is signalled then.
    """
    info = run_info(project, name)
    launch = read_json_or_none(_beside(info.path, "pid"))
    if info.status != "training":
        raise FinetuneError(f"run {name!r} is not training (status {info.status!r})")
    if launch is None or not _alive(launch, info.path):
        raise FinetuneError(f"run {name!r} was not started from here (by the app or labelflow.finetune.runs); stop it "
                            "where it runs (Ctrl+C stops it after writing its checkpoint)")
    problem = _not_this_run(launch, info.path, strict=True)
    if problem:
        raise FinetuneError(f"refusing to stop run {name!r}: {problem}; nothing was signalled")
    try:
        os.killpg(launch["pid"], signal.SIGTERM)
    except ProcessLookupError:
        pass  # ended meanwhile
    deadline = time.monotonic() + wait
    while _alive(launch, info.path) and time.monotonic() < deadline:
        time.sleep(0.05)
    return run_info(project, name)


def wait_run(project: Project, name: str, *, timeout: float | None = None, poll: float = 0.5) -> RunInfo:
    """Block until the run is no longer training (``timeout`` seconds at most: then :class:`FinetuneError`)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while (info := run_info(project, name)).status == "training":
        if deadline is not None and time.monotonic() > deadline:
            raise FinetuneError(f"run {name!r} is still training after {timeout} s")
        time.sleep(poll)
    return info


def split_predictions(project: Project, run: str | Path, split: str) -> pl.DataFrame:
    """The student of a finished run folder on the gold-labelled rows of ``split``: :func:`labelflow.finetune.predict`'s
    frame (``id``, ``split``, ``pred``, ``pred_name``, ``prob_<class>``), for ``analyze(..., predictions=...)``."""
    import polars as pl

    from labelflow.finetune.predict import predict

    frame = project.dataset().frame
    rows = (frame["split"] == split) & pl.Series(project.gold() != ABSTAIN)
    return predict(run, frame.filter(rows).select("id", "split", "text"), device="cpu")


# --- helpers ---------------------------------------------------------------------------------------


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise FinetuneError(f"run name {name!r} must be a plain folder name: 1-64 letters, digits, '-' or '_', "
                            "starting with a letter or digit")
    return name


def _beside(path: Path, kind: str) -> Path:
    """``runs/NAME.<kind>`` for the run folder ``runs/NAME``."""
    return path.parent / f"{path.name}.{kind}"


def _alive(launch: dict[str, Any], path: Path) -> bool:
    """Whether the process of a launch record runs (not a zombie) and, where ``/proc`` shows it, is this run's
    launched process (:func:`_not_this_run`: so a recycled pid, or a crafted record, does not count)."""
    pid = launch.get("pid")
    if isinstance(pid, int) and pid in _CHILDREN:
        return _CHILDREN[pid].poll() is None
    if not _plain_pid(pid):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # another user's process is not a run of ours
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True  # no /proc here: the pid is alive, that is all that can be told
    return state != "Z" and _not_this_run(launch, path) is None


def _plain_pid(pid: Any) -> bool:
    """A pid that may be signalled: an int above 1 that is neither this process nor its process group."""
    return is_int(pid, minimum=2) and pid != os.getpid() and pid != os.getpgrp()


def _trainer_alive(progress: dict[str, Any] | None, path: Path) -> bool:
    """Whether the process ``progress.json`` names (a run started elsewhere: ``labelflow finetune`` in a terminal, a
    notebook) still trains: the record says ``training``, and the pid runs, is not a zombie and started at the
    recorded clock tick (a recycled pid does not count). Without /proc nothing can be told: ``False``."""
    if not progress or progress.get("status") != "training":
        return False
    pid, ticks = progress.get("pid"), progress.get("proc_start")
    if not is_int(pid, minimum=1) or not is_int(ticks):
        return False
    if pid == os.getpid():  # a run trained in this very process (finetune() called here) is not running now
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and _proc_start(pid) == ticks


def _not_this_run(launch: dict[str, Any], path: Path, *, strict: bool = False) -> str | None:
    """``None`` when the launch record's pid is, now, the leader of its own process group running this run's
    ``labelflow finetune --out <path>`` (its ``/proc`` command line, relative paths resolved in its working
    folder) and started when the record says (``proc_start``, or within 10 s of ``started`` for records without
    it); else why not. The record is a file in the project, so nothing in it is believed before this check.
    A process this one launched (and still holds) passes. Without ``/proc`` nothing can be checked: ``strict``
    gives a reason then."""
    pid = launch.get("pid")
    if not _plain_pid(pid):
        return f"its launch record names pid {pid!r}, which is not a process labelflow may signal"
    if pid in _CHILDREN and _CHILDREN[pid].poll() is None:
        return None
    proc = Path(f"/proc/{pid}")
    try:
        args = [a.decode(errors="replace") for a in (proc / "cmdline").read_bytes().split(b"\0")]
        cwd = Path(os.readlink(proc / "cwd"))
        ticks = _proc_start(pid)
        group = os.getpgid(pid)
    except ProcessLookupError:
        return f"process {pid} has ended"
    except FileNotFoundError:
        if not proc.exists() and not Path("/proc/self").exists():
            return "this system has no /proc to check which process that is" if strict else None
        return f"process {pid} has ended"
    except OSError as exc:
        return f"process {pid} cannot be inspected ({exc.__class__.__name__}): it is not a run of this user"
    found = next((i for i in range(len(args) - 2) if args[i:i + 3] == ["-m", "labelflow", "finetune"]), None)
    outs = [args[i + 1] for i in range(len(args) - 1) if args[i] == "--out"]
    here = path.resolve()
    if found is None or not any((cwd / out).resolve() == here for out in outs):
        return f"process {pid} is not this run's `labelflow finetune --out {path}` (its command line: {' '.join(args)[:200]!r})"
    if group != pid:
        return f"process {pid} does not lead its own process group (group {group})"
    recorded = launch.get("proc_start")
    if is_int(recorded):
        if ticks != recorded:
            return f"process {pid} started at tick {ticks}, not at tick {recorded} as the run's launch record says"
    else:
        started = launch.get("started")
        boot = _boot_time()
        if ticks is None or boot is None or not isinstance(started, (int, float)) \
                or abs(boot + ticks / os.sysconf("SC_CLK_TCK") - started) > 10:
            return f"process {pid} did not start when the run's launch record says"
    return None


def _boot_time() -> float | None:
    """Unix seconds of the last boot (``btime`` of ``/proc/stat``)."""
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        pass
    return None
