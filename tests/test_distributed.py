"""The Ray engine on a real local cluster (2 CPUs): the YouTube suite gives the local engine's matrix exactly, a
killed worker's shard is retried, retries running out name the shard and leave the project as it was, an
unpicklable LF is named, the vote and FM caches are shared with local runs. Without a cluster: settings and an
unreachable address."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from labelflow import ABSTAIN, LFError, VoteCache, apply_lfs, labeling_function, load_lf_suite
from labelflow.distributed import EngineError, RayEngine

REPO = Path(__file__).resolve().parents[1]
HAM, SPAM = 0, 1


# --- without a cluster (these run first, before the module's cluster starts) -------------------------


def test_unreachable_address_fails_fast(tiny_dataset):
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("this process is connected to a Ray cluster already")
    start = time.monotonic()
    with pytest.raises(EngineError, match=r"cannot reach the Ray cluster at 'ray://127.0.0.1:1' within 2 s"):
        apply_lfs(tiny_dataset, [labeling_function(name="lf")(lambda x: ABSTAIN)], cardinality=2,
                  engine=RayEngine(address="ray://127.0.0.1:1", connect_timeout_s=2))
    with pytest.raises(EngineError, match=r"cannot reach the Ray cluster at '192.0.2.55:6379' within 1 s"):
        RayEngine(address="192.0.2.55:6379", connect_timeout_s=1).connect()  # TEST-NET-1: never answers
    assert time.monotonic() - start < 10 and not ray.is_initialized()


@pytest.mark.parametrize(("settings", "message"), [
    ({"address": "nowhere"}, r"Ray address must be 'auto', 'ray://HOST:PORT' or 'HOST:PORT'; got 'nowhere'"),
    ({"address": ""}, r"address must be None, 'auto', 'ray://HOST:PORT' or 'HOST:PORT'; got ''"),
    ({"shard_rows": 0}, r"shard_rows must be an integer ≥ 1; got 0"),
    ({"max_retries": -1}, r"max_retries must be an integer ≥ 0; got -1"),
    ({"connect_timeout_s": 0}, r"connect_timeout_s must be > 0; got 0"),
])
def test_bad_settings(settings, message):
    with pytest.raises(EngineError, match=message):
        RayEngine(**settings)


def test_cli_unreachable_address_exits_2(project, capsys):
    from labelflow.cli import main

    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("this process is connected to a Ray cluster already")
    assert main(["apply", "-p", str(project.root), "--engine", "ray", "--address", "127.0.0.1:1"]) == 2
    assert "labelflow: error: cannot reach the Ray cluster at '127.0.0.1:1'" in capsys.readouterr().err
    assert not project.store.matrix.exists()


def test_project_ray_engine_defaults(project):
    assert project.ray_engine("local") is None
    engine = project.ray_engine("ray", "auto")
    assert engine == RayEngine(address="auto", staging=str(project.store.ray))
    project.update_config(ray_address="ray://head:10001")
    assert project.ray_engine("ray").address == "ray://head:10001"


# --- on a local cluster -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    """A real local Ray cluster with 2 CPUs on 127.0.0.1, shut down after the module."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", configure_logging=False,
             log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def youtube_suite():
    return load_lf_suite(REPO / "lfs" / "youtube_spam.py")


@pytest.fixture(scope="module")
def local_matrix(youtube, youtube_suite):
    return apply_lfs(youtube, youtube_suite, cardinality=2, n_jobs=1)


@pytest.mark.slow
def test_youtube_suite_on_ray_equals_the_local_engine(cluster, youtube, youtube_suite, local_matrix, tmp_path):
    matrix = apply_lfs(youtube, youtube_suite, cardinality=2, engine=RayEngine(shard_rows=500, staging=str(tmp_path)))
    np.testing.assert_array_equal(matrix.values, local_matrix.values)
    assert matrix.ids.to_list() == local_matrix.ids.to_list() and matrix.lf_names == local_matrix.lf_names
    assert ((matrix.values != ABSTAIN).sum(axis=0) > 0).all()  # every LF votes somewhere
    shards = sorted(p.name for p in next(tmp_path.iterdir()).iterdir())
    assert shards == ["manifest.json", *[f"part-0000{i}.parquet" for i in range(4)]]  # 1,953 rows in 4 shards


@pytest.mark.slow
def test_a_killed_worker_is_retried_and_the_matrix_is_complete(cluster, youtube, youtube_suite, local_matrix,
                                                              tmp_path):
    flag = tmp_path / "worker.pid"
    target = youtube.frame["id"][1200]

    @labeling_function()
    def stall_once(x):  # on one row, the first time only: report the worker's pid and wait to be killed
        if x.id == target and not os.path.exists(flag):
            Path(flag).write_text(str(os.getpid()))
            time.sleep(60)
        return ABSTAIN

    killed = []

    def kill_when_stalled():
        deadline = time.monotonic() + 120
        while not flag.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # let the pid be written in full
        killed.append(int(flag.read_text()))
        os.kill(killed[0], signal.SIGKILL)

    killer = threading.Thread(target=kill_when_stalled, daemon=True)
    killer.start()
    suite = [*youtube_suite, stall_once]
    matrix = apply_lfs(youtube, suite, cardinality=2, engine=RayEngine(shard_rows=400, max_retries=2))
    killer.join(5)
    assert killed and killed[0] != os.getpid()
    np.testing.assert_array_equal(matrix.values[:, :-1], local_matrix.values)
    assert (matrix.values[:, -1] == ABSTAIN).all() and matrix.shape == (len(youtube), len(suite))


@pytest.mark.slow
def test_retries_running_out_name_the_shard_and_write_nothing(cluster, project, expected):
    before = project.apply()[0]
    saved = project.store.matrix.read_bytes()
    votes = sorted(p.name for p in project.store.votes.iterdir())

    @labeling_function()
    def crash(x):  # kills its worker on row d1, every time
        if x.id == "d1":
            os.kill(os.getpid(), signal.SIGKILL)
        return ABSTAIN

    with pytest.raises(EngineError, match=r"shard .*part-00001\.parquet \(rows 5\.\.9\) failed on the Ray cluster after 1 "
                                          r"retries: the worker labeling it died each time .*; nothing was written"):
        project.apply(lfs=[*load_lf_suite(project.suite_path), crash], engine=RayEngine(shard_rows=5, max_retries=1))
    assert project.store.matrix.read_bytes() == saved
    assert sorted(p.name for p in project.store.votes.iterdir()) == votes
    np.testing.assert_array_equal(project.matrix().values, before.values)


@pytest.mark.slow
def test_ray_and_local_runs_share_the_vote_cache(cluster, project, expected):
    matrix, cache = project.apply(engine="ray")
    assert cache.misses == list(expected.lfs) and matrix.values.tolist() == expected.matrix
    assert len(list(project.store.ray.glob("*/part-*.parquet"))) == 1  # 16 rows: one shard
    again, cache = project.apply()
    assert cache.hits == list(expected.lfs) and again.values.tolist() == expected.matrix


@pytest.mark.slow
def test_an_lf_error_on_a_worker_names_the_lf_row_and_shard(cluster, tiny_dataset):
    @labeling_function()
    def picky(x):
        if x.id == "c":
            raise KeyError("no c")
        return HAM

    with pytest.raises(LFError, match=r"LF 'picky' raised KeyError: 'no c' on row id 'c' .*\(in shard part-00001\.parquet\)"):
        apply_lfs(tiny_dataset, [picky], cardinality=2, engine=RayEngine(shard_rows=2))
    matrix = apply_lfs(tiny_dataset, [picky], cardinality=2, engine=RayEngine(shard_rows=2), on_error="abstain")
    local = apply_lfs(tiny_dataset, [picky], cardinality=2, on_error="abstain")
    assert matrix.failures == local.failures and len(matrix.failures) == 1
    np.testing.assert_array_equal(matrix.values, local.values)


@pytest.mark.slow
def test_item10_time_limit_and_item5_sys_exit_on_ray_workers(cluster, tiny_dataset):
    """Ray tasks run the LFs in their own process (a killed task is Ray's to retry): the time limit interrupts
    a slow call there, and sys.exit() in an LF is an LF error, as on the local engine."""

    @labeling_function()
    def slow(x):
        if x.id == "b":
            time.sleep(60)
        return SPAM if "cash" in x.text.lower() else ABSTAIN

    @labeling_function()
    def exits(x):
        if x.id == "d":
            sys.exit(3)
        return HAM

    began = time.monotonic()
    matrix = apply_lfs(tiny_dataset, [slow, exits], cardinality=2, engine=RayEngine(shard_rows=2), on_error="abstain",
                       timeout_s=0.5)
    assert time.monotonic() - began < 45
    assert matrix.values.tolist() == [[-1, 0], [-1, 0], [1, 0], [-1, -1]]
    assert [(f.lf, f.row_id, f.error) for f in matrix.failures] == [
        ("slow", "b", "TimeoutError: took longer than the time limit of 0.5 s"),
        ("exits", "d", "SystemExit: the LF called sys.exit(3); an LF must return a vote")]
    with pytest.raises(LFError, match=r"LF 'slow' raised TimeoutError: took longer than the time limit of 0.5 s on row "
                                      r"id 'b' .*\(in shard part-00000\.parquet\)"):
        apply_lfs(tiny_dataset, [slow], cardinality=2, engine=RayEngine(shard_rows=2), timeout_s=0.5)


@pytest.mark.slow
def test_unpicklable_lfs_are_named(cluster, tiny_dataset, tmp_path):
    lock = threading.Lock()

    @labeling_function()
    def locked(x):
        with lock:
            return HAM

    with pytest.raises(LFError, match=r"LF 'locked' cannot be sent to the Ray workers: pickling it failed with "
                                      r"TypeError: cannot pickle '_thread.lock' object"):
        apply_lfs(tiny_dataset, [locked], cardinality=2, engine="ray")
    with open(tmp_path / "lf.log", "w") as handle:
        @labeling_function(resources={"log": handle})
        def logs(x, log):
            return ABSTAIN

        with pytest.raises(LFError, match=r"LF 'logs' cannot be sent to the Ray workers: pickling it failed with "
                                          r"PicklingError: Cannot pickle files that are not opened for reading"):
            apply_lfs(tiny_dataset, [logs], cardinality=2, engine="ray")


@pytest.mark.slow
def test_fm_embed_on_ray_actors_fills_the_local_cache(cluster, tmp_path, project):
    from labelflow.fm.run import fm_embed

    on_ray = fm_embed(project, engine=RayEngine(fm_actors=2))
    assert (on_ray["rows"], on_ray["cached"], on_ray["computed"]) == (16, 0, 16)
    ray_values = np.array(pl.read_parquet(on_ray["stored"])["embedding"].to_list())
    local = fm_embed(project)
    assert (local["cached"], local["computed"], local["calls"]) == (16, 0, 0)  # the same cache keys
    project.fm_cache.path.unlink()
    fresh = fm_embed(project)
    assert fresh["computed"] == 16
    np.testing.assert_allclose(np.array(pl.read_parquet(fresh["stored"])["embedding"].to_list()), ray_values,
                               atol=1e-6)


@pytest.mark.slow
def test_fm_lfs_on_ray_actors_vote_as_locally(cluster, project):
    from labelflow.fm import zero_shot_lf

    zs = zero_shot_lf("zs", descriptions=["a fan's comment about the song", "an ad or a link"], margin=0.02)
    ray_run, local_run = VoteCache(project.root / "ray-votes"), VoteCache(project.root / "local-votes")
    on_ray = apply_lfs(project.rows(), [zs], cardinality=2, cache=ray_run, fm_cache=project.fm_cache,
                       engine=RayEngine(fm_actors=1))
    assert ray_run.runs["zs"]["computed"] == 16 + 2  # the rows and the two descriptions, on the actor
    local = apply_lfs(project.rows(), [zs], cardinality=2, cache=local_run, fm_cache=project.fm_cache)
    np.testing.assert_array_equal(local.values, on_ray.values)
    assert local_run.runs["zs"]["computed"] == 0 and local_run.runs["zs"]["cached"] == 18  # every output cached
