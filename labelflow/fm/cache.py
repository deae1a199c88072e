"""Content-addressed cache of foundation-model outputs, in one SQLite file.

A key is the SHA-256 of (model identity, task, prompt template, generation
parameters, input text); the value is raw bytes (float32 vectors, float64
log-probabilities or UTF-8 text). SQLite in WAL mode lets several processes read
while one writes; every batch is one transaction, so an interrupted run keeps
every finished batch and the file is never left half-written.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from labelflow.files import write_transaction

SCHEMA = "CREATE TABLE IF NOT EXISTS outputs (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID"
_IN_CHUNK = 500


def output_key(identity: str, task: str, template: str, params: Mapping[str, Any], text: str) -> str:
    """Hex SHA-256 of everything that determines a model output.

    Examples
    --------
    >>> output_key("m@1", "embed", "", {}, "hi") == output_key("m@1", "embed", "", {}, "hi")
    True
    >>> output_key("m@1", "embed", "", {}, "hi") == output_key("m@2", "embed", "", {}, "hi")
    False
    """
    blob = json.dumps([identity, task, template, dict(sorted(params.items())), text], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()


class FMCache:
    """Key → bytes store on disk; safe to share between threads and processes.

    Parameters
    ----------
    path
        The SQLite file (created with its folder when missing).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = -1

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():  # a forked child opens its own
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=60, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(SCHEMA)
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        """The stored values of those ``keys`` that are present."""
        out: dict[str, bytes] = {}
        with self._lock:
            conn = self._connection()
            for start in range(0, len(keys), _IN_CHUNK):
                chunk = list(keys[start:start + _IN_CHUNK])
                marks = ",".join("?" * len(chunk))
                out.update(conn.execute(f"SELECT key, value FROM outputs WHERE key IN ({marks})", chunk).fetchall())
        return out

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        """Store ``(key, value)`` pairs in one transaction."""
        rows = list(items)
        with self._lock:
            with write_transaction(self._connection()) as conn:
                conn.executemany("INSERT OR REPLACE INTO outputs (key, value) VALUES (?, ?)", rows)

    def __len__(self) -> int:
        with self._lock:
            return self._connection().execute("SELECT COUNT(*) FROM outputs").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None
