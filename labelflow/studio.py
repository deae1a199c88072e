"""Label Studio round trip: push rows worth labeling, pull finished labels back as gold.

:func:`push` creates (or finds) the project's Label Studio project, with a label
config generated from the class schema, and imports the chosen rows with the LF
votes in the task data and the label model's prediction as a pre-annotation
(``model_version`` = a hash of the LF suite file): the class
:meth:`~labelflow.project.Project.predictions` gives the row (argmax, ties broken
by the row's position in the dataset), the one ``fit`` scores and ``export``
writes. Tasks are keyed by the row id, so pushing again updates tasks and adds
predictions of a new suite, never duplicates. :func:`pull` turns finished annotations into gold labels in the
project's annotation store, with annotator (e-mail) and time; it checks every
annotation before writing any, writes them in one transaction, reports
annotators who disagree instead of resolving them, and changes nothing when
pulled again.

**The key and the URL (trust).** The API key is read only from the environment
variable ``LABEL_STUDIO_API_KEY`` (or one the caller names: ``api_key_env=``,
``--api-key-env``), never from a name a project file gives (``studio_api_key_env``
in ``labelflow.json`` is ignored), and is never stored or printed. The server URL
is the caller's ``url=`` (``--url``), else the project config's ``studio_url``;
a URL read from the project file gets the key only when the user confirmed it on
this machine (:func:`confirm_url`: ``labelflow studio ... --url URL`` once, or the URL
listed under ``studio_urls`` in the user's trust file, see :mod:`labelflow.trust`),
so a project someone sends cannot send your key to their server. Credentials in a
URL (``http://user:password@host``) are used for that call only: what is saved,
confirmed and printed is the URL without them (:func:`clean_url`, :func:`redact_url`).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit
from datetime import datetime
from typing import Any, Literal, get_args
from xml.sax.saxutils import quoteattr

import numpy as np
import polars as pl

from labelflow.conventions import ABSTAIN
from labelflow.errors import ProjectError, StudioError, require
from labelflow.files import write_json
from labelflow.trust import confirm_studio_url, studio_url_confirmed, trust_file

PushRows = Literal["sample", "entropy"]
"""Which unlabeled rows :func:`push` sends: seeded-random ones, or those the label model is least sure about."""
SOURCE = "label-studio"
API_KEY_ENV = "LABEL_STUDIO_API_KEY"
"""The environment variable holding the API key, unless the caller names another (never a project file)."""


@dataclass(frozen=True)
class PushReport:
    """What :func:`push` did; ``created + updated + unchanged`` tasks were pushed."""

    project_id: int
    url: str
    created: int
    updated: int
    unchanged: int
    predictions_added: int
    model_version: str | None


@dataclass(frozen=True)
class PullReport:
    """What :func:`pull` did: annotations ``added`` / ``changed`` in the store, or ``unchanged``."""

    project_id: int
    added: int
    changed: int
    unchanged: int
    skipped: int
    """Cancelled (skipped) or empty annotations, not taken as labels."""
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    """Rows whose annotators disagree: ``{"id", "labels", "annotators"}``; they get no gold label."""


def label_config(class_names: list[str], descriptions: list[str]) -> str:
    """The Label Studio labeling config for a single-choice task over the text.

    Examples
    --------
    >>> config = label_config(["HAM", "SPAM"], ["", "ads"])
    >>> config_choices(config)
    ['HAM', 'SPAM']
    >>> '<Choice value="SPAM" hint="ads"/>' in config
    True
    """
    choices = "".join(f"<Choice value={quoteattr(name)}" + (f" hint={quoteattr(hint)}" if hint else "") + "/>"
                      for name, hint in zip(class_names, descriptions))
    return ('<View><Header value="LF votes: $lf_votes"/><Text name="text" value="$text"/>'
            f'<Choices name="label" toName="text" choice="single" showInline="true">{choices}</Choices></View>')


def config_choices(config: str) -> list[str]:
    """The ``Choice`` values of a label config, in order."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(config)
    except ET.ParseError as exc:
        raise StudioError(f"the Label Studio labeling config is not valid XML: {exc}") from None
    return [choice.get("value", "") for choice in root.iter("Choice")]


def push(project, *, rows: PushRows | list[str] = "sample", splits: tuple[str, ...] = ("dev", "test"),
         n: int = 100, seed: int = 0, model: str | None = None, url: str | None = None,
         api_key_env: str = API_KEY_ENV) -> PushReport:
    """Create or update the Label Studio project and import rows as tasks.

    Parameters
    ----------
    rows
        ``"sample"``: ``n`` seeded-random rows of ``splits`` that have no gold label yet;
        ``"entropy"``: the ``n`` such rows the label model is least sure about
        (highest entropy); or a list of row ids.
    model
        The fitted label model whose predictions become pre-annotations (default
        the project's); without a fitted model, tasks go without them. The
        pre-annotation is the row's class by :meth:`~labelflow.project.Project.predictions`
        (ties broken as ``fit`` and ``export`` break them), scored by its probability.
    url, api_key_env
        The server (default: the project's ``studio_url``, once confirmed) and the environment
        variable holding the key; see the module docstring.
    """
    client, url = _client(project, url, api_key_env)
    dataset = project.dataset()
    frame = dataset.frame
    matrix = _maybe(project.matrix)
    lm = _maybe(lambda: project.label_model(model)) if matrix is not None else None
    predictions = project.predictions(lm) if lm is not None else None
    probs = predictions.probs if predictions is not None else None
    chosen = _choose(project, frame, rows, splits, n, seed, probs)
    names = list(project.schema.names)
    version = hashlib.sha256(project.suite_path.read_bytes()).hexdigest()[:12] if lm is not None else None
    studio_id = _studio_project(project, client, url)
    existing = {t.data.get("labelflow_id"): t for t in _tasks(client, studio_id)}
    new_tasks, updated, unchanged, added = [], 0, 0, 0
    index = {row_id: i for i, row_id in enumerate(frame["id"].to_list())}
    for row_id in chosen:
        i = index[row_id]
        data = {"labelflow_id": row_id, "text": frame["text"][i], "split": frame["split"][i],
                "lf_votes": _votes_text(matrix, i, names) if matrix is not None else "(LFs not applied)"}
        prediction = None
        if predictions is not None:
            c = int(predictions.pred[i])
            prediction = {"model_version": version, "score": float(probs[i, c]),
                          "result": [{"from_name": "label", "to_name": "text", "type": "choices",
                                      "value": {"choices": [names[c]]}}]}
        task = existing.get(row_id)
        if task is None:
            new_tasks.append({"data": data, **({"predictions": [prediction]} if prediction else {})})
            continue
        if task.data != data:
            _call(lambda: client.tasks.update(str(task.id), data=data), url)
            updated += 1
        else:
            unchanged += 1
        if prediction and version not in {p.model_version for p in (task.predictions or [])}:
            _call(lambda: client.predictions.create(task=task.id, **prediction), url)
            added += 1
    if new_tasks:
        _call(lambda: client.projects.import_tasks(studio_id, request=new_tasks), url)
    return PushReport(studio_id, url, len(new_tasks), updated, unchanged,
                      added + (len(new_tasks) if probs is not None else 0), version)


def pull(project, *, url: str | None = None, api_key_env: str = API_KEY_ENV) -> PullReport:
    """Store every finished Label Studio annotation as a gold label (see the module docstring).

    Raises :class:`StudioError`, with the store unchanged, when an annotation names a
    class the schema lacks or a task's row is not in the dataset. ``url``, ``api_key_env``: as for :func:`push`.
    """
    client, url = _client(project, url, api_key_env)
    studio_id = _studio_project(project, client, url, create=False)
    emails = {u.id: u.email or u.username for u in _call(lambda: list(client.users.list()), url)}
    names = list(project.schema.names)
    known = set(project.dataset().frame["id"].to_list())
    incoming, skipped, problems = {}, 0, []
    for task in _tasks(client, studio_id):
        row_id = task.data.get("labelflow_id")
        for ann in task.annotations or []:
            choices = [c for r in ann.get("result") or [] for c in r.get("value", {}).get("choices", [])]
            if ann.get("was_cancelled") or not choices:
                skipped += 1
                continue
            annotator = emails.get(ann.get("completed_by"), f"user {ann.get('completed_by')}")
            if row_id not in known:
                problems.append(f"task {task.id} is for row {row_id!r}, which is not in the dataset")
            elif len(set(choices)) != 1 or choices[0] not in names:
                problems.append(f"task {task.id} (row {row_id!r}): {annotator} chose {choices}; the schema's classes are {names}")
            else:
                when = datetime.fromisoformat(ann.get("updated_at") or ann["created_at"]).timestamp()
                incoming[(row_id, annotator)] = (names.index(choices[0]), when)
    if problems:
        raise StudioError(f"pull refused, nothing stored: {len(problems)} annotation(s) do not fit the project: "
                          + "; ".join(problems[:5]))
    stored = {(r["id"], r["annotator"]): (r["label"], r["time"])
              for r in project.annotations.frame().filter(pl.col("source") == SOURCE).iter_rows(named=True)}
    fresh = [(row_id, annotator, label, when, SOURCE) for (row_id, annotator), (label, when) in incoming.items()
             if stored.get((row_id, annotator)) != (label, when)]
    project.annotations.put(fresh)
    _, conflicts = project.annotations.resolve()
    changed = sum((r[0], r[1]) in stored for r in fresh)
    return PullReport(studio_id, len(fresh) - changed, changed, len(incoming) - len(fresh), skipped,
                      conflicts.to_dicts())


def status(project, *, url: str | None = None, api_key_env: str = API_KEY_ENV) -> dict[str, Any]:
    """Tasks in the Label Studio project, how many have a finished annotation, and the store's conflicts.

    ``url``, ``api_key_env``: as for :func:`push`."""
    client, url = _client(project, url, api_key_env)
    studio_id = _studio_project(project, client, url, create=False)
    tasks = _tasks(client, studio_id)
    done = sum(any(not a.get("was_cancelled") for a in t.annotations or []) for t in tasks)
    _, conflicts = project.annotations.resolve()
    return {"url": url, "project_id": studio_id, "tasks": len(tasks), "annotated": done, "pending": len(tasks) - done,
            "conflicts": conflicts.height}


# --- helpers ------------------------------------------------------------------------------------------


def clean_url(url: str) -> str:
    """``url`` without credentials, query or fragment: what is saved, confirmed and compared.

    Raises :class:`StudioError` (the URL shown without its credentials) unless it is an
    ``http``/``https`` URL with a host.

    Examples
    --------
    >>> clean_url("https://ann:s3cret@label.example.com:8443/ls/?token=abc")
    'https://label.example.com:8443/ls'
    """
    if not isinstance(url, str):
        raise StudioError(f"the Label Studio URL must be a string; got {type(url).__name__}")
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise StudioError(f"the Label Studio URL {redact_url(url)!r} is not valid: {exc}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise StudioError(f"the Label Studio URL must be http:// or https:// with a host; got {redact_url(url)!r}")
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port is not None else "")
    return urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))


def redact_url(url: str) -> str:
    """``url`` for messages: credentials and query values masked.

    Examples
    --------
    >>> redact_url("http://ann:s3cret@127.0.0.1:8080/?token=abc")
    'http://***@127.0.0.1:8080/?token=***'
    """
    try:
        parts = urlsplit(str(url))
    except ValueError:
        return "<an invalid URL>"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = "&".join(f"{k.partition('=')[0]}=***" if "=" in k else "***" for k in parts.query.split("&")) \
        if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def confirm_url(url: str) -> str:
    """Record ``url`` (without credentials) as a Label Studio server this user chose; returns that URL.

    A project's ``studio_url`` gets the API key only once confirmed (``labelflow studio ... --url`` does this).
    """
    clean = clean_url(url)
    confirm_studio_url(clean)
    return clean


def remember_url(project, url: str) -> str:
    """After a successful call with ``url``: confirm it and save it (without credentials) as the project's
    ``studio_url`` when it differs; returns the URL saved."""
    clean = confirm_url(url)
    if clean != project.config.studio_url:
        project.update_config(studio_url=clean)
    return clean


def _client(project, url: str | None = None, api_key_env: str = API_KEY_ENV) -> tuple[Any, str]:
    """The SDK client and the URL to name in messages (credentials masked)."""
    if url is None:
        url = project.config.studio_url
        if not url:
            raise ProjectError(f"{project.root}: no Label Studio URL configured; pass --url (it is saved in "
                               "labelflow.json once the command succeeds)")
        if not studio_url_confirmed(clean_url(url)):
            raise StudioError(
                f"the Label Studio URL {redact_url(url)!r} comes from {project.root}'s labelflow.json and has not been "
                f"confirmed on this machine, so the API key is not sent there; if it is your server, pass --url "
                f"{redact_url(url)} once (or list it under \"studio_urls\" in {trust_file()})")
    shown = redact_url(url)
    clean_url(url)  # a valid http(s) URL
    if not isinstance(api_key_env, str) or not api_key_env:
        raise StudioError(f"api_key_env must name an environment variable; got {api_key_env!r}")
    key = os.environ.get(api_key_env)
    if not key:
        named = getattr(project.config, "studio_api_key_env", API_KEY_ENV)
        note = (f" (labelflow.json's studio_api_key_env {named!r} is ignored: a project file does not choose which "
                "secret is sent; pass --api-key-env to use another variable)" if named != api_key_env else "")
        raise StudioError(f"the Label Studio API key is read from the environment variable {api_key_env}, which is "
                          f"not set{note}")
    sdk = require("label_studio_sdk", "studio")
    return sdk.LabelStudio(base_url=url, api_key=key, timeout=60), shown


def _call(fn, url: str):
    """Run one SDK call, turning transport and HTTP failures into :class:`StudioError`."""
    httpx = require("httpx", "studio")
    from label_studio_sdk.core.api_error import ApiError

    try:
        return fn()
    except httpx.TransportError as exc:
        raise StudioError(f"cannot reach Label Studio at {url}: {exc.__class__.__name__}: {exc}") from None
    except ApiError as exc:
        if exc.status_code in (401, 403):
            raise StudioError(f"Label Studio at {url} rejected the API key (HTTP {exc.status_code}); check the key in "
                              "the environment variable") from None
        raise StudioError(f"Label Studio at {url} answered HTTP {exc.status_code}: {str(exc.body)[:300]}") from None


def _maybe(fn):
    try:
        return fn()
    except ProjectError:
        return None


def _studio_project(project, client, url: str, *, create: bool = True) -> int:
    """The Label Studio project id for this project (created on first push); checks its choices."""
    state_path = project.store.studio
    state = json.loads(state_path.read_text()) if state_path.is_file() else {}
    names = list(project.schema.names)
    studio_id = state.get("project_id") if state.get("url") == clean_url(url) else None
    if studio_id is not None:
        remote = _call(lambda: client.projects.get(studio_id), url)
        choices = config_choices(remote.label_config or "")
        if choices != names:
            raise StudioError(f"Label Studio project {studio_id} ({remote.title!r}) at {url} has the classes {choices}, "
                              f"but the project's schema has {names}; fix its labeling config or push to a new project "
                              f"(delete {state_path})")
        return studio_id
    if not create:
        raise StudioError(f"{project.root} has not pushed to Label Studio at {url} yet; run `labelflow studio push` first")
    descriptions = [c.get("description", "") for c in project.config.classes]
    remote = _call(lambda: client.projects.create(title=f"labelflow: {project.config.name}"[:50],
                                                  label_config=label_config(names, descriptions)), url)
    write_json(state_path, {"url": clean_url(url), "project_id": remote.id})
    return remote.id


def _tasks(client, studio_id: int) -> list[Any]:
    return list(client.tasks.list(project=studio_id, fields="all"))


def _votes_text(matrix, i: int, names: list[str]) -> str:
    votes = [f"{lf} → {names[v]}" for lf, v in zip(matrix.lf_names, matrix.values[i].tolist()) if v != ABSTAIN]
    return "; ".join(votes) or "none"


def _choose(project, frame: pl.DataFrame, rows, splits, n: int, seed: int, probs) -> list[str]:
    if isinstance(rows, (list, tuple)):
        known = set(frame["id"].to_list())
        missing = [r for r in rows if r not in known]
        if missing:
            raise ProjectError(f"cannot push rows not in the dataset: {missing[:5]}")
        return list(rows)
    if rows not in get_args(PushRows):
        raise ProjectError(f"rows must be {', '.join(map(repr, get_args(PushRows)))} or a list of row ids; got {rows!r}")
    pool = np.flatnonzero(frame["split"].is_in(list(splits)).to_numpy() & (project.gold() == ABSTAIN))
    if rows == "entropy":
        if probs is None:
            raise ProjectError("rows='entropy' needs a fitted label model; run `labelflow apply` and `labelflow fit`")
        entropy = -(probs[pool] * np.log(np.clip(probs[pool], 1e-12, 1))).sum(1)
        pool = pool[np.argsort(-entropy, kind="stable")][:n]
    else:
        pool = np.sort(np.random.default_rng(seed).permutation(pool)[:n])
    return frame["id"].gather(pool).to_list()
