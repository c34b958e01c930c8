"""``autotune run``, ``plan`` and ``report``: the main job and its dry-run and re-render twins.

One module because the three share the study options, the summary columns and the pipeline call.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import click

from autotune.cli.k8s import reconcile_on_resume, validate_plan_against_cluster
from autotune.cli.options import output_option, storage_option, study_options
from autotune.cli.output import emit
from autotune.errors import InputError
from autotune.profile_schema import MAX_TRIALS
from autotune.results.directory import check_results_dir, results_lock
from autotune.topology import shorten

SUMMARY_COLUMNS = [
    ("recommended", "recommended"),
    ("gpus", "GPUs"),
    ("poa_hat", "PoA-hat"),
    ("routing_regret", "routing regret"),
    ("tok_s_per_gpu", "tok/s/GPU"),
    ("ttft_p99_ms", "TTFT p99 ms"),
    ("itl_p99_ms", "ITL p99 ms"),
    ("slo_met", "SLO met"),
    ("baseline", "baseline"),
    ("poa_hat_vs_baseline", "PoA-hat gain"),
    ("poa_hat_ratio_ci", "95 % CI"),
    ("tok_s_per_gpu_vs_baseline", "tok/s/GPU gain"),
    ("tok_s_per_gpu_ratio_ci", "95 % CI"),
]


def _table_row(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary as the table shows it: intervals as ``lo–hi`` (json/yaml keep the raw pairs)."""
    row = dict(summary)
    for key in ("poa_hat_ratio_ci", "tok_s_per_gpu_ratio_ci"):
        ci = row.get(key)
        row[key] = f"{ci[0]:.3g}–{ci[1]:.3g}" if isinstance(ci, list | tuple) and len(ci) == 2 else "-"
    return row


def _progress(total: int) -> Any:
    """Live progress on a terminal; one plain line per trial otherwise (CronJob logs)."""
    from autotune.search.study import print_line
    from autotune.search.trials import trial_line

    if not sys.stderr.isatty():
        return print_line, None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    prog = Progress(
        TextColumn("[bold]trials"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=Console(file=sys.stderr),
        transient=False,
    )
    task = prog.add_task("", total=total)
    best: dict[str, float] = {}

    def on_trial(t: Any, done: int, total_: int) -> None:
        if t.values:
            if not best or t.values[1] > best["tput"]:
                best.update(tput=t.values[1], poa=t.values[0])
        desc = f"best {best['tput']:.0f} tok/s/GPU (PoA-hat {best['poa']:.3f})" if best else ""
        prog.update(task, completed=done, description=desc)
        prog.console.print(trial_line(t, done, total_), highlight=False)

    return on_trial, prog


def _backend_options(backend: str, study: str, kw: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    if backend == "dynamo-local":
        return (("timing", kw["timing"]), ("speedup", kw["speedup"]))
    if backend == "k8s":
        return (
            ("kubeconfig", kw["kubeconfig"]),
            ("context", kw["context"]),
            ("frontend_access", kw["frontend_access"]),
            ("study", study),
        )
    return ()


def _reconcile_cluster(prof: Any, cfg: Any, kw: dict[str, Any]) -> None:
    """``--resume`` on k8s: graphs a killed run left behind are removed before the study goes on."""
    import logging

    from autotune.search.study import load_study, study_name

    study = load_study(prof, cfg, create=False)
    finished = {f"t{t.number}" for t in study.trials if t.state.is_finished()}
    graphs = os.environ.get("AUTOTUNE_STUDY") or study_name(prof)
    rec = reconcile_on_resume(prof, graphs, finished, kw["kubeconfig"], kw["context"])
    logging.getLogger("autotune").info("resume: reconciled the cluster with the study: %s", rec)


def study_config(
    profile: str,
    backend: str,
    trials: int | None,
    results: str | None,
    storage: str | None,
    resume: bool,
    seed: int | None,
    jobs: int | None,
    sampler: str,
    kw: dict[str, Any],
    **extra: Any,
) -> tuple[Any, Any]:
    """The profile and the ``StudyConfig`` of ``run``, ``plan`` and ``worker``, every flag checked first."""
    from autotune.backends import available
    from autotune.profile import load_profile
    from autotune.search.study import StudyConfig

    if backend not in available():
        raise InputError(f"--backend: unknown backend {backend!r} (choose from {', '.join(available())})")
    prof = load_profile(profile)
    if seed is not None:
        prof = prof.model_copy(update={"seed": seed})
    if backend == "dynamo-local":  # a missing secret variable is an input error now, not a failed trial later
        from autotune.dynamo.stack import secret_env

        secret_env(prof)
    out = Path(results) if results else Path("results") / prof.name
    if resume and storage is None and not (out / "study.journal").exists():
        raise InputError(f"--resume: {out} holds no study to continue; run without --resume to start one")
    if backend == "k8s":  # a bad kubeconfig would fail every trial and burn the budget: check it first
        from autotune.cli.k8s import connect_kube

        connect_kube(kw["kubeconfig"], kw["context"]).close()
    from autotune.search.config import polish_for, router_block_for
    from autotune.search.study import study_name

    name = extra.get("study_name") or study_name(prof)
    graphs = os.environ.get("AUTOTUNE_STUDY") or name  # label of this study's trial graphs
    extra.setdefault("reuse_graphs", kw["reuse_graphs"])
    extra.setdefault("polish", polish_for(backend, kw.get("polish")))
    extra.setdefault("router_block", router_block_for(backend, kw["router_block"], kw["reuse_graphs"]))
    cfg = StudyConfig(
        out,
        trials or prof.search.trials,
        backend,
        _backend_options(backend, graphs, kw),
        storage,
        resume,
        prof.seed,
        jobs or ((os.cpu_count() or 1) if backend == "sim" and not extra.get("worker") else 1),
        sampler,
        **extra,
    )
    check_results_dir(out)
    return prof, cfg


def _execute(
    profile: str,
    backend: str,
    trials: int | None,
    results: str | None,
    storage: str | None,
    resume: bool,
    seed: int | None,
    jobs: int | None,
    sampler: str,
    fmt: str,
    prediction: bool,
    screen: Any = None,
    **kw: Any,
) -> None:
    from autotune import pipeline

    prof, cfg = study_config(profile, backend, trials, results, storage, resume, seed, jobs, sampler, kw)
    out = cfg.results_dir
    check_results_dir(out)
    with results_lock(out):
        if backend == "k8s" and resume and (out / "study.journal").exists():
            _reconcile_cluster(prof, cfg, kw)
        live_total = screen.k * screen.rounds + len(prof.baselines) if screen is not None else cfg.trials
        on_trial, prog = _progress(live_total)
        info = {"backend": backend, "sampler": sampler}
        try:
            if prog is not None:
                prog.start()
            if screen is not None:
                info["prescreen"] = f"sim:{screen.k} x {screen.rounds} rounds"
                summary = pipeline.run_prescreened(prof, cfg, screen, on_trial, info)
            else:
                summary = pipeline.run(prof, cfg, on_trial, info, prediction)
        finally:
            if prog is not None:
                prog.stop()
    emit(
        summary,
        fmt,
        rows=[_table_row(summary)],
        columns=SUMMARY_COLUMNS,
        title=f"{prof.name}: {'predicted' if prediction else 'measured'} recommendation → {out}",
    )


PRESCREEN_K = 4  # live confirmations per round by default: a handful, each a live deployment
_PRESCREEN = re.compile(r"sim(?::([0-9]{1,6}))?", re.ASCII)


def parse_prescreen(text: str | None, rounds: int, backend: str, resume: bool) -> Any:
    """``--prescreen sim[:K]`` as a ``Prescreen`` (None when not given); errors name the flag."""
    from autotune.search.prescreen import Prescreen

    if text is None:
        return None
    m = _PRESCREEN.fullmatch(text.strip())
    if not m or (m.group(1) is not None and not 1 <= int(m.group(1)) <= MAX_TRIALS):
        raise InputError(f"--prescreen: {shorten(text)!r} is not sim or sim:K with 1 <= K <= {MAX_TRIALS}")
    if backend == "sim":
        raise InputError(
            "--prescreen: needs a live backend (--backend dynamo-local or k8s); on sim every trial is simulated"
        )
    if resume:
        raise InputError("--prescreen: cannot be combined with --resume; start a new results directory")
    return Prescreen(int(m.group(1) or PRESCREEN_K), rounds)


@click.command()
@study_options
@click.option(
    "--prescreen",
    default=None,
    metavar="sim[:K]",
    help=f"Live backends: the simulator searches, only its top K per round (default {PRESCREEN_K}) plus the "
    "baselines run live, and the simulator is recalibrated from them between rounds (docs/prescreen.md).",
)
@click.option(
    "--prescreen-rounds",
    type=click.IntRange(1, 100),
    default=2,
    show_default=True,
    help="Rounds of --prescreen (simulated search, live confirmation, recalibration).",
)
def run(prescreen: str | None, prescreen_rounds: int, **kw: Any) -> None:
    """Search topologies and router weights; write the recommendation and controller settings."""
    screen = parse_prescreen(prescreen, prescreen_rounds, kw["backend"], kw["resume"])
    _execute(**kw, prediction=kw["backend"] == "sim", screen=screen)


@click.command()
@study_options
def plan(**kw: Any) -> None:
    """Dry run: the same search on the simulator; nothing is deployed and outputs are predictions.

    With --backend k8s every trial's DynamoGraphDeployment is also validated by the cluster's
    server-side dry run (nothing is created).
    """
    from autotune.search.config import polish_for, router_block_for

    backend = kw.pop("backend")
    # the simulated search groups (and polishes) trials as the live one would: the plan predicts that study
    kw["router_block"] = router_block_for(backend, kw["router_block"], kw["reuse_graphs"])
    kw["polish"] = polish_for(backend, kw["polish"])
    if backend == "k8s":
        validate_plan_against_cluster(kw["profile"], kw["kubeconfig"], kw["context"])
    elif backend not in ("sim", "dynamo-local"):
        raise InputError(f"--backend: unknown backend {backend!r} (choose from sim, dynamo-local, k8s)")
    _execute(**kw, backend="sim", prediction=True)


@click.command()
@click.argument("results_dir", type=click.Path(file_okay=False))
@click.option("-p", "--profile", default=None, help="Profile (default: the directory's profile.resolved.yaml).")
@storage_option
@click.option("--study", "study_name", default=None, help="Study name in --storage (default: autotune-<profile>).")
@output_option
def report(results_dir: str, profile: str | None, storage: str | None, study_name: str | None, fmt: str) -> None:
    """Re-render a results directory from its study (no trial is re-run)."""
    from autotune import pipeline
    from autotune.profile import load_profile
    from autotune.search.study import StudyConfig

    out = Path(results_dir)
    if not out.is_dir() and not storage:  # from a shared database, a new directory is fine
        raise InputError(f"RESULTS_DIR: {out} is not a directory")
    check_results_dir(out, "RESULTS_DIR")
    with results_lock(out):
        prof = load_profile(profile or str(out / "profile.resolved.yaml"))
        cfg = StudyConfig(
            out,
            1,
            storage=storage,
            resume=True,
            seed=prof.seed,
            read_only=True,
            study_name=study_name,
            jobs=os.cpu_count() or 1,  # the controller's simulations: nothing else runs
        )
        summary = pipeline.report(prof, cfg)
    emit(summary, fmt, rows=[_table_row(summary)], columns=SUMMARY_COLUMNS, title=f"{prof.name} → {out}")
