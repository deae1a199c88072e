"""Python LFs on rows: each LF called on each row, here or in forked worker processes, under a time limit.

The rows (and the LFs) reach the workers by inheritance when they fork (nothing is pickled); a
worker labels the pieces of rows it is sent and replies with their votes and first failures.
LF code is untrusted: what escapes it (``sys.exit()``, any exception) is an LF error naming the
LF and the row; a worker that dies stops the run with an error naming its rows and LF, never a
hang; a call past the time limit is interrupted (SIGALRM here, a nudge signal in a worker), and a
worker that ignores the interrupt is killed and its piece labeled again without that call.
:func:`labelflow.apply.apply_lfs` is the way in.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import polars as pl

from labelflow.conventions import ABSTAIN, LABEL_DTYPE, LabelArray
from labelflow.errors import LFError
from labelflow.lf import PythonLF, Row
from labelflow.quiet import stdout_to_stderr

MAX_FAILURES_KEPT = 100
"""Per LF, how many failures (row id and exception) are kept when errors abstain."""
_WORK: dict[str, Any] = {}
"""State handed to forked workers by inheritance (nothing is pickled)."""
_SLOT = 3
"""Per worker, in the shared ``state`` array: the row it labels, the LF it is calling (-1 between calls), and
when that call began (``time.monotonic_ns``, 0 between calls; kept only under a time limit)."""
POLL_S = 0.1
"""Seconds between the checks for LF calls past their time limit, while workers run under one (at most)."""
_NUDGE = getattr(signal, "SIGUSR1", None)
"""The signal the parent sends a worker whose LF call is past the time limit (it raises there)."""


def merge_failures(into: dict[str, list[Any]], more: dict[str, list[Any]]) -> None:
    """Append the failures of a later chunk (or piece of one), keeping at most :data:`MAX_FAILURES_KEPT` per LF."""
    for name, found in more.items():
        kept = into.setdefault(name, [])
        kept.extend(found[:MAX_FAILURES_KEPT - len(kept)])


def run_rows(frame: pl.DataFrame, ids: pl.Series, lfs: Sequence[PythonLF], k: int, on_error: str, jobs: int,
             timeout_s: float | None = None, processes: bool = True,
             ) -> tuple[LabelArray, dict[str, list[tuple[int, str]]]]:
    """Each LF on each row: ``[n, len(lfs)]`` votes and, per LF, ``(row, error)`` of its first failures.

    ``on_error`` is ``"raise"`` or ``"abstain"`` (as in :func:`labelflow.apply.apply_lfs`). Rows are
    split into pieces run by up to ``jobs`` forked worker processes when ``jobs`` > 1, or when a time
    limit needs a process that can be stopped (``processes=False``: never); otherwise here.
    """
    n = frame.height
    _WORK.update(names=frame.columns, columns=[frame[c].to_list() for c in frame.columns], ids=ids.to_list(),
                 lfs=lfs, k=k, on_error=on_error, timeout_s=timeout_s)
    bounds = np.linspace(0, n, jobs * 4 + 1 if jobs > 1 else 2).astype(int)
    pieces = list(zip(bounds[:-1].tolist(), bounds[1:].tolist()))
    can_fork = processes and "fork" in multiprocessing.get_all_start_methods() \
        and not multiprocessing.current_process().daemon  # a daemon process may not have children
    try:
        if can_fork and n and (jobs > 1 or timeout_s is not None):
            results = _run_pool(pieces, jobs)
        else:
            with _alarm(timeout_s) as alarm:
                results = [_run_piece(piece, alarm=alarm) for piece in pieces]
    finally:
        _WORK.clear()
    votes = np.concatenate([r[0] for r in results]) if results else np.empty((0, len(lfs)), LABEL_DTYPE)
    errors: dict[str, list[tuple[int, str]]] = {}
    for _, piece_errors in results:
        merge_failures(errors, piece_errors)
    return votes, errors


class _LFTimeout(BaseException):
    """Raised into an LF call that outlives the time limit (not an ``Exception``, so LF code catching those
    does not swallow it)."""


_ALARM: dict[str, Any] = {"armed": False, "state": None, "at": 0, "limit": 0}
"""Whether an LF call may be interrupted now; in a worker, where its start time is (to ignore a late nudge)."""


def _on_alarm(signum: int, frame: Any) -> None:
    if not _ALARM["armed"]:
        return
    state = _ALARM["state"]
    if state is not None and time.monotonic_ns() - state[_ALARM["at"] + 2] <= _ALARM["limit"]:
        return  # a nudge meant for a call that has ended since
    _ALARM["armed"] = False
    raise _LFTimeout


@contextmanager
def _alarm(timeout_s: float | None) -> Iterator[bool]:
    """In this process: interrupt LF calls past ``timeout_s`` with a SIGALRM timer set per call; yields whether
    it can (a time limit, a platform with ``setitimer``, the main thread). Restores the previous handler and timer."""
    if timeout_s is None or not hasattr(signal, "setitimer") \
            or threading.current_thread() is not threading.main_thread():
        yield False
        return
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    timer = signal.setitimer(signal.ITIMER_REAL, 0)
    try:
        yield True
    finally:
        _ALARM["armed"] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous if previous is not None else signal.SIG_DFL)
        if timer[0] > 0:
            signal.setitimer(signal.ITIMER_REAL, *timer)


def _run_piece(bounds: tuple[int, int], *, slot: int | None = None, skip: dict[tuple[int, int], str] | None = None,
               alarm: bool = False) -> tuple[LabelArray, dict[str, list[tuple[int, str]]]]:
    """Votes ``[end - start, m_python]`` of the Python LFs on rows ``start .. end-1``, and their first failures.

    ``slot``: this worker's place in the shared ``state`` array (``None`` in the parent process), where the
    parent watches the time calls take (and nudges, then kills, a worker past the limit); ``skip``:
    ``{(row, LF index): error}`` calls not to make again (their worker was stopped), failed with ``error``;
    ``alarm``: in the parent, interrupt calls past the time limit with a SIGALRM timer. A call found to have
    taken too long when it returns fails too.
    """
    start, end = bounds
    names, ids, lfs = _WORK["names"], _WORK["ids"], _WORK["lfs"]
    k, abstain_on_error, timeout = _WORK["k"], _WORK["on_error"] == "abstain", _WORK["timeout_s"]
    state = _WORK.get("state") if slot is not None else None
    at = _SLOT * slot if slot is not None else 0
    limit = int(timeout * 1e9) if timeout is not None else 0
    _ALARM.update(armed=False, state=state, at=at, limit=limit)
    valid = range(ABSTAIN, k)
    columns = [col[start:end] for col in _WORK["columns"]]
    out: list[list[int]] = [[] for _ in lfs]
    errors: dict[str, list[tuple[int, str]]] = {}
    # a plain PythonLF without resources is called as its bare function: one call fewer per row
    calls = [(j, lf, lf.func if type(lf) is PythonLF and not lf.resources else lf.__call__, out[j])
             for j, lf in enumerate(lfs)]
    for i, values in enumerate(zip(*columns), start):
        row = Row(**dict(zip(names, values)))
        if state is not None:
            state[at] = i
        for j, lf, call, sink in calls:
            try:
                if skip and (i, j) in skip:
                    raise _Skipped(skip[(i, j)])
                if state is not None:
                    state[at + 1] = j
                if timeout is None:
                    vote = call(row)
                else:
                    began = time.monotonic_ns()
                    if state is not None:
                        state[at + 2] = began
                    if alarm:
                        signal.setitimer(signal.ITIMER_REAL, timeout)
                    _ALARM["armed"] = True
                    vote = call(row)
                    _ALARM["armed"] = False
                    if alarm:
                        signal.setitimer(signal.ITIMER_REAL, 0)
                    if time.monotonic_ns() - began > limit:  # it swallowed the interrupt, or none could be sent
                        raise _LFTimeout
                if state is not None:
                    state[at + 2] = 0
                    state[at + 1] = -1
            except BaseException as exc:  # noqa: BLE001 (sys.exit() and the like from an LF are LF errors too)
                _ALARM["armed"] = False
                if alarm:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                if state is not None:
                    state[at + 2] = 0
                    state[at + 1] = -1
                if isinstance(exc, KeyboardInterrupt):
                    raise LFError(f"interrupted while LF {lf.name!r} was labeling row id {ids[i]!r}") from None
                error = _describe(exc, timeout)
                if not abstain_on_error:
                    hint = "raise the time limit, or use" if isinstance(exc, _LFTimeout) else "use"
                    raise LFError(f"LF {lf.name!r} raised {error} on row id {ids[i]!r} ({hint} on_error='abstain' "
                                  "to abstain on such rows)") from (None if isinstance(exc, _LFTimeout) else exc)
                kept = errors.setdefault(lf.name, [])
                if len(kept) < MAX_FAILURES_KEPT:
                    kept.append((i, error))
                vote = ABSTAIN
            if type(vote) is not int or vote not in valid:
                vote = _coerce_vote(lf.name, vote, ids[i], k)
            sink.append(vote)
    votes = np.array(out, dtype=LABEL_DTYPE).T if lfs else np.empty((end - start, 0), LABEL_DTYPE)
    return votes.reshape(end - start, len(lfs)), errors


class _Skipped(Exception):
    """A call not made again: it ran past the time limit before and its worker had to be stopped."""


def _describe(exc: BaseException, timeout: float | None) -> str:
    """``"Type: message"`` of an exception an LF raised, as kept in failures."""
    if isinstance(exc, _Skipped):
        return str(exc)
    if isinstance(exc, _LFTimeout):
        return f"TimeoutError: took longer than the time limit of {timeout:g} s"
    if isinstance(exc, SystemExit):
        return f"SystemExit: the LF called sys.exit({exc.code!r}); an LF must return a vote"
    return f"{type(exc).__name__}: {exc}"


def _coerce_vote(name: str, vote: Any, row_id: str, k: int) -> int:
    """Accept NumPy integers in range; raise naming the LF and row for anything else."""
    if isinstance(vote, np.integer) and ABSTAIN <= int(vote) < k:
        return int(vote)
    raise LFError(
        f"LF {name!r} returned {vote!r} ({type(vote).__name__}) on row id {row_id!r}; "
        f"expected a class index 0..{k - 1} or ABSTAIN (-1)"
    )


# --- worker processes ----------------------------------------------------------------------------------


class _Worker:
    """One forked process labeling pieces of rows it is sent over a pipe; it inherits :data:`_WORK`."""

    def __init__(self, context: Any, slot: int) -> None:
        self.slot = slot
        self.piece: int | None = None
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(slot, child), daemon=True,
                                       name=f"labelflow-lf-worker-{slot}")
        self.process.start()
        child.close()

    def give(self, piece: int, bounds: tuple[int, int], skip: dict[tuple[int, int], str] | None) -> None:
        self.piece = piece
        self.conn.send((bounds, skip))

    def receive(self) -> tuple[str, Any] | None:
        """The reply to the piece given, or ``None`` if the process died first."""
        try:
            if self.conn.poll():
                return self.conn.recv()
        except (EOFError, OSError):
            pass
        return None

    def exitcode(self) -> int | None:
        self.process.join(timeout=5)
        return self.process.exitcode

    def stop(self, *, kill: bool = False) -> None:
        if not kill and self.process.is_alive():
            try:
                self.conn.send(None)
            except OSError:
                kill = True
            else:
                self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()


def _worker_main(slot: int, conn: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the parent's to handle: it stops the workers
    if _NUDGE is not None:
        signal.signal(_NUDGE, _on_alarm)
    with stdout_to_stderr():
        while True:
            try:
                task = conn.recv()
            except (EOFError, OSError):  # the parent is gone
                return
            if task is None:
                return
            bounds, skip = task
            try:
                reply: tuple[str, Any] = ("ok", _run_piece(bounds, slot=slot, skip=skip))
            except BaseException as exc:  # noqa: BLE001 (sent back and raised in the parent)
                reply = ("error", exc if isinstance(exc, LFError) else LFError(f"{type(exc).__name__}: {exc}"))
            conn.send(reply)


def _run_pool(pieces: list[tuple[int, int]], jobs: int) -> list[tuple[LabelArray, dict[str, list[tuple[int, str]]]]]:
    """:func:`_run_piece` on every piece in up to ``jobs`` forked workers; results in piece order.

    A worker that dies raises :class:`LFError` naming its rows and the LF it was calling. Under a time
    limit, a call past it is interrupted (the worker is sent :data:`_NUDGE`); one that outlives it by a
    grace period (its code ignored the interrupt) has its worker killed: an LF error, or with
    ``on_error="abstain"`` the piece is labeled again skipping that call. The first error in row order is raised.
    """
    context = multiprocessing.get_context("fork")
    slots = max(1, min(jobs, len(pieces)))
    state = context.RawArray("q", _SLOT * slots)
    _WORK["state"] = state
    timeout = _WORK["timeout_s"]
    limit_ns = 0 if timeout is None else int(timeout * 1e9)
    hard_ns = 0 if timeout is None else int((timeout + max(1.0, timeout)) * 1e9)  # the grace: as long again, ≥ 1 s
    poll = None if timeout is None else min(POLL_S, timeout / 2)
    nudged: dict[int, int] = {}  # slot → start of the call it was nudged about
    results: list[Any] = [None] * len(pieces)
    todo = list(range(len(pieces)))  # kept sorted
    skips: dict[int, dict[tuple[int, int], str]] = {}
    errors: dict[int, LFError] = {}
    workers: list[_Worker | None] = [None] * slots
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*fork.*")  # workers never call into polars
            while True:
                first_error = min(errors, default=len(pieces))
                for slot in range(slots):
                    worker = workers[slot]
                    if worker is not None and worker.piece is not None and worker.piece > first_error:
                        worker.stop(kill=True)  # cannot raise an earlier error than the one known
                        workers[slot] = worker = None
                    if (worker is None or worker.piece is None) and todo and todo[0] < first_error:
                        if worker is not None and not worker.process.is_alive():  # died after its last reply
                            worker.stop(kill=True)
                            worker = None
                        if worker is None:
                            workers[slot] = worker = _Worker(context, slot)
                        state[_SLOT * slot:_SLOT * slot + _SLOT] = [-1, -1, 0]
                        piece = todo.pop(0)
                        worker.give(piece, pieces[piece], skips.get(piece))
                busy = [w for w in workers if w is not None and w.piece is not None]
                if not busy:
                    break
                ready = multiprocessing.connection.wait(
                    [w.conn for w in busy] + [w.process.sentinel for w in busy],
                    timeout=poll)
                for worker in busy:
                    if worker.conn not in ready and worker.process.sentinel not in ready:
                        continue
                    reply = worker.receive()
                    if reply is None:
                        raise _died(worker, pieces, state)
                    kind, value = reply
                    if kind == "ok":
                        results[worker.piece] = value  # type: ignore[index]
                    else:
                        errors[worker.piece] = value  # type: ignore[index]
                    worker.piece = None
                if timeout is not None:
                    for worker in busy:
                        began = _call_start(state, worker.slot) if worker.piece is not None else 0
                        if not began:
                            continue
                        late = time.monotonic_ns() - began
                        if late > hard_ns and _stop_overdue(worker, state, skips, todo):
                            workers[worker.slot] = None
                        elif _NUDGE is not None and late > limit_ns and nudged.get(worker.slot) != began:
                            nudged[worker.slot] = began  # interrupt the call (once); kill it if that does not help
                            with contextlib.suppress(ProcessLookupError):
                                os.kill(worker.process.pid, _NUDGE)
        if errors:
            raise errors[min(errors)]
    finally:
        for worker in workers:
            if worker is not None:
                worker.stop(kill=worker.piece is not None)
    return results


def _call_start(state: Any, slot: int) -> int:
    """When the LF call the worker in ``slot`` is in began (``time.monotonic_ns``), or 0 between calls."""
    at = _SLOT * slot
    lf, began = state[at + 1], state[at + 2]
    return began if lf >= 0 and began > 0 and state[at + 1] == lf else 0


def _stop_overdue(worker: _Worker, state: Any, skips: dict[int, dict[tuple[int, int], str]], todo: list[int]) -> bool:
    """Kill a worker stuck in an LF call past the time limit and requeue its piece, skipping that call; raise
    instead unless ``on_error="abstain"``. ``False`` (nothing done) if the call ended meanwhile."""
    at = _SLOT * worker.slot
    row, j, began = int(state[at]), int(state[at + 1]), int(state[at + 2])
    if j < 0 or not began:
        return False
    worker.stop(kill=True)
    piece, worker.piece = worker.piece, None
    stuck = (int(state[at]), int(state[at + 1]), int(state[at + 2])) == (row, j, began)
    if stuck:  # else the call returned just before the kill: the piece is labeled again in full
        name, row_id, timeout = _WORK["lfs"][j].name, _WORK["ids"][row], _WORK["timeout_s"]
        error = f"TimeoutError: took longer than the time limit of {timeout:g} s and ignored the interrupt"
        if _WORK["on_error"] != "abstain":
            raise LFError(f"LF {name!r} raised {error} on row id {row_id!r}; its worker process was stopped (raise "
                          "the time limit, or use on_error='abstain' to abstain on such rows)")
        skips.setdefault(piece, {})[(row, j)] = error  # type: ignore[arg-type]
    todo.append(piece)  # type: ignore[arg-type]
    todo.sort()
    return True


def _died(worker: _Worker, pieces: list[tuple[int, int]], state: Any) -> LFError:
    """The error for a worker process that exited while labeling a piece."""
    code = worker.exitcode()
    if code is not None and code < 0:
        try:
            how = f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            how = f"killed by signal {-code}"
        if code == -signal.SIGKILL:
            how += ", perhaps for lack of memory"
    else:
        how = f"exit status {code}"
    start, end = pieces[worker.piece]  # type: ignore[index]
    ids, lfs = _WORK["ids"], _WORK["lfs"]
    at = _SLOT * worker.slot
    row, j = int(state[at]), int(state[at + 1])
    rows = f"rows {ids[start]!r}..{ids[end - 1]!r}"
    if 0 <= j < len(lfs) and start <= row < end:
        doing = f"while LF {lfs[j].name!r} was labeling row id {ids[row]!r} (of {rows})"
    else:
        doing = f"while labeling {rows}"
    return LFError(f"a worker process died ({how}) {doing}; nothing was written. An LF must return a vote: look in it "
                   "for os._exit(), a crash in native code or heavy memory use (if memory ran out, use fewer worker "
                   "processes: n_jobs / --jobs)")
