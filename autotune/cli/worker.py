"""``autotune worker``: one of many processes (or Indexed Job pods) working on one study in a shared database."""

from __future__ import annotations

import logging
from typing import Any

import click

from autotune.cli.options import worker_options
from autotune.cli.output import emit
from autotune.cli.run import SUMMARY_COLUMNS, _progress, _table_row, study_config
from autotune.errors import InputError

log = logging.getLogger("autotune")


def _sweeper(kw: dict[str, Any], profile: Any, study: str) -> Any:
    """k8s: the graphs of trials whose worker died are deleted by label (the dead worker cannot)."""
    from autotune.cli.k8s import connect_kube
    from autotune.k8s.housekeeping import sweep_trials
    from autotune.k8s.render import api_version_for

    def sweep(stale: list[Any]) -> None:
        ids = {f"t{t.number}" for t in stale}
        kube = connect_kube(kw["kubeconfig"], kw["context"])
        try:
            gone = sweep_trials(kube, profile.dynamo.namespace, study, ids, version=api_version_for(profile))
        finally:
            kube.close()
        log.info("swept the graphs of stale trial(s) %s: %s", ", ".join(sorted(ids)), [g.name for g in gone])

    return sweep


@click.command("worker")
@worker_options
def worker_cmd(
    study_name: str | None, worker_index: int | None, heartbeat_s: int, stale_after_s: int, fmt: str, **kw: Any
) -> None:
    """Work on a study shared through --storage (PostgreSQL) with other workers, until it is done.

    Start N of these (processes or the pods of an Indexed Job, k8s/workers.yaml): each asks the next
    trial, beats a heartbeat while it runs, fails and retries once the trial of a worker that died,
    and the first to see the study done writes the recommendation to --results.
    """
    from autotune import pipeline
    from autotune.search.workers import worker_label

    if not kw["storage"]:
        raise InputError("--storage: a worker needs the shared study's database URL (or $AUTOTUNE_STORAGE)")
    if stale_after_s <= heartbeat_s:
        raise InputError(f"--stale-after: {stale_after_s} s must exceed --heartbeat ({heartbeat_s} s)")
    backend = kw["backend"]
    me = worker_label(worker_index)
    prof, cfg = study_config(
        kw.pop("profile"),
        kw.pop("backend"),
        kw.pop("trials"),
        kw.pop("results"),
        kw.pop("storage"),
        False,
        kw.pop("seed"),
        kw.pop("jobs"),
        kw.pop("sampler"),
        kw,
        study_name=study_name,
        worker=me,
        worker_index=worker_index or 0,
        heartbeat_s=heartbeat_s,
        stale_after_s=stale_after_s,
    )
    on_stale = _sweeper(kw, prof, dict(cfg.backend_options)["study"]) if backend == "k8s" else None
    on_trial, prog = _progress(cfg.trials)
    try:
        if prog is not None:
            prog.start()
        prediction = backend == "sim"
        summary = pipeline.run_worker(
            prof, cfg, on_trial, {"backend": backend, "sampler": cfg.sampler}, prediction, on_stale
        )
    finally:
        if prog is not None:
            prog.stop()
    if summary["results_written_by"] != me:
        emit(summary, fmt, rows=[summary], columns=[(k, k) for k in summary], title=f"worker {me}: study done")
        return
    emit(
        summary,
        fmt,
        rows=[_table_row(summary)],
        columns=SUMMARY_COLUMNS,
        title=f"{prof.name}: worker {me} wrote the recommendation → {cfg.results_dir}",
    )
