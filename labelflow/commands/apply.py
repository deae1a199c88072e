"""``labelflow apply``: the LF suite applied, the label matrix (cached per LF); or its FM LFs estimated."""

from __future__ import annotations

import argparse
from typing import Any, get_args

from labelflow.chunk_applier import OnError
from labelflow.commands.common import (Command, count, engine_arguments, extend_arguments, non_empty,
                                       open_project, positive, set_extend, trust_project)


def add_parsers(command: Command) -> None:
    """Add the parsers of ``apply`` (``command``: :data:`.common.Command`)."""
    p = command("apply", "Apply the LF suite: the label matrix (cached per LF).")
    p.add_argument("--lfs", help="make this LF suite file the project's suite (recorded in labelflow.json once it "
                                 "applied), then apply it")
    p.add_argument("--on-error", choices=get_args(OnError), default=None,
                   help="an LF raising on a row stops the run (raise) or abstains there (abstain); default: the "
                        "project's on_error setting (raise unless changed, as the app's LFs page can)")
    p.add_argument("--jobs", type=positive, default=None, help="worker processes for Python LFs (default: all CPUs)")
    p.add_argument("--lf-timeout", type=float, default=None, metavar="SECONDS",
                   help="time limit of one Python LF call on one row; a call past it is an LF error "
                        "(--on-error decides; default: no limit)")
    p.add_argument("--trust", action="store_true",
                   help="trust the project's LF suite and config as they are now (see `labelflow trust`), then apply")
    p.add_argument("--estimate", action="store_true",
                   help="apply nothing: measure each FM LF (prompt, zero-shot, kNN) on a seeded sample of dev gold rows "
                        "(coverage, accuracy, seconds per row, projected time of the full run)")
    p.add_argument("--estimate-rows", type=positive, default=None, metavar="N",
                   help="dev gold rows each estimate samples (default 40)")
    p.add_argument("--estimate-seed", type=count, default=None, metavar="SEED", help="seed of the sample (default 0)")
    p.add_argument("--estimate-lf", action="append", default=None, metavar="NAME", type=non_empty,
                   help="estimate only this FM LF; repeatable (default: every FM LF of the suite)")
    engine_arguments(p)
    extend_arguments(p)


def _check(args: argparse.Namespace) -> str | None:
    """The ``--estimate-*`` options without ``--estimate``."""
    if not args.estimate and (args.estimate_lf or args.estimate_rows is not None or args.estimate_seed is not None):
        return "arguments --estimate-rows, --estimate-seed, --estimate-lf: only with --estimate"
    return None


def _apply(args: argparse.Namespace) -> dict[str, Any]:
    project = open_project(args)
    if args.trust:
        trust_project(project)
    if args.estimate:
        return _estimate(project, args)
    set_extend(project, args)
    suite_before = project.config.lfs
    matrix, cache = project.apply(lfs=args.lfs, on_error=args.on_error, n_jobs=args.jobs, progress=True,
                                  engine=args.engine, address=args.address, timeout_s=args.lf_timeout)
    result = {
        "rows": matrix.shape[0], "lfs": list(matrix.lf_names),
        "applied": cache.misses, "cached": cache.hits,
        "failures": [f.__dict__ for f in matrix.failures],
    }
    if project.config.lfs != suite_before:  # apply --lfs FILE made FILE the project's suite
        result.update(suite=str(project.suite_path.resolve()), suite_was=suite_before)
        if not args.json:
            print(f"the project's LF suite is now {project.suite_path.resolve()}"
                  + (f" (was {project._resolve(suite_before).resolve()})" if suite_before else ""))
    if cache.uncached:  # LF name → what its fingerprint cannot cover (so it was re-applied)
        result["uncached"] = cache.uncached
    if project.config.extend is not None:
        result["extension"] = project.extension()
    if not args.json:
        print(f"label matrix {matrix.shape[0]} rows × {matrix.shape[1]} LFs "
              f"({len(cache.misses)} applied, {len(cache.hits)} from cache)")
        for name, why in cache.uncached.items():
            print(f"  LF {name!r} re-applied: {why}")
        for f in matrix.failures[:20]:
            print(f"  LF {f.lf!r} failed on row id {f.row_id!r}: {f.error}")
        if len(matrix.failures) > 20:
            print(f"  ... {len(matrix.failures) - 20} more failures (see --json)")
        _print_extension(project)
    return result


def _estimate(project, args: argparse.Namespace) -> dict[str, Any]:
    from labelflow.fm.estimate import estimate_suite, format_estimates

    estimates = estimate_suite(project, project.lfs(args.lfs), names=args.estimate_lf,
                               rows=args.estimate_rows or 40, seed=args.estimate_seed or 0,
                               on_error=args.on_error or project.config.on_error,
                               progress=not args.json)
    if not args.json:
        print(format_estimates(estimates))
    return {"estimates": [e.to_dict() for e in estimates]}


def _print_extension(project) -> list[dict[str, Any]]:
    """Print (and return) what each LF's extension gave."""
    report = project.extension()
    extended = [e for e in report if e["column"]]
    if report:
        print(f"extended LFs over {project.extend_config.embedding!r}: {len(extended)} of {len(report)} LFs")
        for e in extended:
            print(f"  {e['column']}: radius {e['radius']:.3f}, {e['votes']} votes; dev precision "
                  f"{e['dev_precision']:.2f} on {e['dev_votes']} (bar {e['bar']:.2f})")
        skipped = [e["lf"] for e in report if not e["column"]]
        if skipped:
            print(f"  not extended ({len(skipped)}, reasons in --json): {', '.join(skipped)}")
    return report

COMMANDS = {"apply": _apply}
CHECKS = {"apply": _check}

