"""Faults: a damaged or torn journal, a partial study, a locked or half-swapped results directory, a full disk.

Each test asserts that nothing finished is lost and that the results directory is either the old
set of files or the new one, never a mix.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from autotune.errors import InputError
from autotune.results.directory import clean_leftovers, results_lock, staged
from autotune.search.journal import check_journal
from tests.conftest import ROOT, fresh_signals

TINY = """
extends: {base}
name: tiny-study
workload:
  concurrency: [16]
  requests_per_point: 200
  warmup_requests: 20
  cooldown_requests: 20
search:
  trials: 3
  min_gpus: 4
  max_prefill_workers: 1
  max_decode_workers: 2
  prefill_tp: [4]
  decode_tp: [4]
  aggregated_tp: [4]
  operating_point: target
  target_concurrency: 16
slo:
  ttft_p99_ms: {ttft}
  itl_p99_ms: {itl}
baselines: ["1P4-1D4"]
"""


def _profile(tmp_path: Path, ttft: float = 5000, itl: float = 100) -> Path:
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY.format(base=ROOT / "profiles" / "paper-70b-1p5d.yaml", ttft=ttft, itl=itl))
    return p


def _autotune(*args: str, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "autotune", *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT
    )


def _snapshot(d: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(d)): (p.stat().st_ino, p.read_bytes()) for p in sorted(d.rglob("*")) if p.is_file()}


def _one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith(("INFO", "WARNING", "trial "))]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _complete(journal: Path) -> dict[int, dict[str, object]]:
    st = optuna.load_study(
        study_name="autotune-tiny-study",
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal))),
    )
    return {t.number: t.params for t in st.trials if t.state == optuna.trial.TrialState.COMPLETE}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished tiny study, copied by each test that damages it."""
    tmp = tmp_path_factory.mktemp("finished")
    r = _autotune("run", "-p", str(_profile(tmp)), "-r", str(tmp / "out"), "-j", "1", "-o", "json")
    assert r.returncode == 0, r.stderr
    return tmp / "out"


def _copy(finished: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    return out


def test_no_trial_meets_the_slo_recommends_the_least_violating(tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = _autotune("run", "-p", str(_profile(tmp_path, ttft=1, itl=1)), "-r", str(out), "-j", "1", "-o", "json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["slo_met"] is False and summary["recommended"]
    assert (out / "recommended.yaml").exists() and (out / "report.md").exists()


def test_torn_journal_tail_is_refused_by_report_and_repaired_by_resume(finished: Path, tmp_path: Path) -> None:
    out = _copy(finished, tmp_path)
    journal = out / "study.journal"
    before = _complete(journal)
    with open(journal, "ab") as f:
        f.write(b'{"op_code": 5, "worker_id": "x", "trial_id": 1, "user_a')  # a write cut by a full disk
    snap = _snapshot(out)
    r = _autotune("report", str(out), "-o", "json")
    assert r.returncode == 2 and "cut short" in _one_line(r.stderr)
    assert _snapshot(out) == snap  # nothing touched
    r = _autotune("run", "-p", str(out / "profile.resolved.yaml"), "-r", str(out), "--resume", "-n", "4", "-o", "json")
    assert r.returncode == 0, r.stderr
    after = _complete(journal)
    assert all(after[n] == p for n, p in before.items())  # finished trials kept and not repeated
    assert len(after) + 0 >= len(before)


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[: len(b) // 2] + b"\x00garbage\x00\n" + b[len(b) // 2 :],  # overwritten in the middle
        lambda b: os.urandom(4096),  # random bytes
        lambda b: b"\n".join(b.split(b"\n")[: len(b.split(b"\n")) // 2]) + b"\n",  # truncated at a record
    ],
    ids=["overwritten-middle", "random-bytes", "truncated"],
)
def test_report_never_overwrites_good_results_with_a_damaged_study(finished: Path, tmp_path: Path, damage) -> None:
    out = _copy(finished, tmp_path)
    journal = out / "study.journal"
    journal.write_bytes(damage(journal.read_bytes()))
    snap = _snapshot(out)
    r = _autotune("report", str(out), "-o", "json")
    assert r.returncode == 2, r.stderr
    _one_line(r.stderr)
    assert _snapshot(out) == snap


@pytest.mark.parametrize("content", ['{"autotune": "0.1", "backe', '["a list"]', '{"backend": 3}'])
def test_damaged_environment_json_is_one_line(finished: Path, tmp_path: Path, content: str) -> None:
    out = _copy(finished, tmp_path)
    (out / "environment.json").write_text(content)
    snap = _snapshot(out)
    r = _autotune("report", str(out))
    assert r.returncode == 2 and "environment.json" in _one_line(r.stderr)
    assert _snapshot(out) == snap


def test_report_rewrites_the_set_and_keeps_the_journal_inode(finished: Path, tmp_path: Path) -> None:
    out = _copy(finished, tmp_path)
    ino = (out / "study.journal").stat().st_ino
    (out / "stale-user-note.txt").write_text("mine")
    r = _autotune("report", str(out), "-o", "json")
    assert r.returncode == 0, r.stderr
    assert (out / "study.journal").stat().st_ino == ino
    assert (out / "stale-user-note.txt").read_text() == "mine"
    assert not list(out.parent.glob(".out.*"))  # no staging or swapped-out copies left


def test_a_second_process_on_one_results_directory_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with results_lock(out):
        r = _autotune("run", "-p", str(_profile(tmp_path)), "-r", str(out), "-o", "json")
    assert r.returncode == 2 and "in use by another autotune process" in _one_line(r.stderr)
    assert not (out / "study.journal").exists()


def test_staged_set_is_all_or_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "study.journal").write_text("journal\n")
    (out / "a.csv").write_text("old a")
    with pytest.raises(RuntimeError), staged(out, {"a.csv", "b.csv"}) as stage:
        (stage / "a.csv").write_text("new a")
        raise RuntimeError("killed half-way")
    assert sorted(p.name for p in out.iterdir()) == ["a.csv", "study.journal"]
    assert (out / "a.csv").read_text() == "old a"
    ino = (out / "study.journal").stat().st_ino
    with staged(out, {"a.csv", "b.csv"}) as stage:
        (stage / "a.csv").write_text("new a")
        (stage / "b.csv").write_text("new b")
    assert (out / "a.csv").read_text() == "new a" and (out / "b.csv").read_text() == "new b"
    assert (out / "study.journal").stat().st_ino == ino
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_leftovers_of_a_killed_writer_are_removed_and_a_half_swap_undone(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (tmp_path / ".out.staging-99").mkdir()
    old = tmp_path / ".out.old-98"  # killed between the two renames of the fallback swap
    old.mkdir()
    (old / "study.journal").write_text("journal\n")
    with results_lock(out):
        assert (out / "study.journal").read_text() == "journal\n"
        (out / ".trials.csv.tmp-x").write_text("half")
    clean_leftovers(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert not list(out.glob(".*.tmp-*"))


def test_check_journal_names_the_damaged_line(tmp_path: Path) -> None:
    j = tmp_path / "study.journal"
    j.write_text('{"op_code": 0}\nnot json\n{"op_code": 1}\n')
    with pytest.raises(InputError, match="line 2"):
        check_journal(j, repair=True)
    j.write_text('{"op_code": 0}\n{"op_co')
    assert check_journal(j, repair=True) == len('{"op_co')
    assert j.read_text() == '{"op_code": 0}\n'


def _mount_tmpfs(path: Path, size_kib: int) -> bool:
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(path)], capture_output=True)
    return r.returncode == 0


@pytest.mark.slow
def test_disk_full_loses_no_finished_trial(tmp_path: Path) -> None:
    """A tiny tmpfs fills during the study: one-line exit 5; after freeing space --resume completes it."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, 8192):
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs as root and must be able to mount a tmpfs for the disk-full test")
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        filler = disk / "filler"
        out = disk / "out"
        prof = _profile(tmp_path)
        # leave room for the study to start, not for it to finish: the journal of 3 trials needs ~100 KiB
        with open(filler, "wb") as f:
            f.write(b"\0" * (8192 - 60) * 1024)
        r = _autotune("run", "-p", str(prof), "-r", str(out), "-j", "1", "-o", "json")
        assert r.returncode == 5, r.stderr
        assert "No space left" in _one_line(r.stderr)
        journal = out / "study.journal"
        before = _complete(journal) if journal.exists() and check_journal(journal, repair=True) >= 0 else {}
        filler.unlink()
        r = _autotune("run", "-p", str(prof), "-r", str(out), "--resume", "-j", "1", "-o", "json")
        assert r.returncode == 0, r.stderr
        after = _complete(journal)
        assert all(after[n] == p for n, p in before.items())
        assert (out / "recommended.yaml").exists()
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def _spawn(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "autotune", *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
        preexec_fn=fresh_signals,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "sig,phase",
    [(signal.SIGKILL, "study"), (signal.SIGINT, "study"), (signal.SIGKILL, "finish"), (signal.SIGTERM, "finish")],
    ids=["kill-study", "int-study", "kill-finish", "term-finish"],
)
def test_a_signal_in_any_phase_loses_no_finished_trial(tmp_path: Path, sig: int, phase: str) -> None:
    """Signal the run mid-study or while it derives the controller and writes results: the directory holds
    the old set of outputs or none (never a mix), the journal loads, and --resume completes the study."""
    prof, out = _profile(tmp_path), tmp_path / "out"
    child = _spawn("run", "-p", str(prof), "-r", str(out), "-j", "1", "-n", "4", "-o", "json")
    marker = "trial 2/4" if phase == "study" else "deriving controller settings"
    seen = []
    assert child.stderr is not None
    for line in child.stderr:  # event-driven: wait for the phase, however slow the machine
        seen.append(line)
        if marker in line:
            break
    else:
        pytest.fail("the run ended before the phase: " + "".join(seen))
    child.send_signal(sig)
    _, rest = child.communicate(timeout=1200)
    err = "".join(seen) + rest
    assert child.returncode == (-9 if sig == signal.SIGKILL else 130), err
    assert "Traceback" not in err
    outputs = {"summary.json", "recommended.yaml", "trials.csv", "report.md", "dgd.yaml"}
    present = {p.name for p in out.iterdir()} & outputs
    assert present in (set(), outputs), present  # never a mix
    before = _complete(out / "study.journal")
    r = _autotune("run", "-p", str(prof), "-r", str(out), "--resume", "-j", "1", "-n", "4", "-o", "json")
    assert r.returncode == 0, r.stderr
    after = _complete(out / "study.journal")
    assert all(after[n] == p for n, p in before.items())
    assert outputs <= {p.name for p in out.iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no staging leftovers


@pytest.mark.parametrize("where", ["a-file", "under-a-file", "root"])
def test_unusable_results_path_is_one_line_and_touches_nothing(tmp_path: Path, where: str) -> None:
    f = tmp_path / "plain-file"
    f.write_text("keep me")
    target = {"a-file": f, "under-a-file": f / "out", "root": Path("/")}[where]
    r = _autotune("plan", "-p", str(_profile(tmp_path)), "-r", str(target), "-n", "1", "-o", "json")
    assert r.returncode == 2 and "--results" in _one_line(r.stderr)
    assert f.read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == ["plain-file", "tiny.yaml"]


@pytest.mark.slow
def test_ctrl_c_with_parallel_workers_prints_no_tracebacks(tmp_path: Path) -> None:
    """A terminal's Ctrl-C reaches the whole process group, pool workers included: one line, exit 130."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "autotune",
            "run",
            "-p",
            str(_profile(tmp_path)),
            "-r",
            str(tmp_path / "out"),
            "-j",
            "2",
            "-n",
            "6",
            "-o",
            "json",
        ],
        preexec_fn=fresh_signals,
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )
    assert child.stderr is not None
    seen = []
    for line in child.stderr:
        seen.append(line)
        if line.startswith("trial 1/"):
            break
    else:
        pytest.fail("the study ended before its first trial: " + "".join(seen))
    os.killpg(child.pid, signal.SIGINT)
    _, rest = child.communicate(timeout=1200)
    assert child.returncode == 130, "".join(seen) + rest
    assert "Traceback" not in rest and "KeyboardInterrupt" not in rest, rest
    assert "finished trial(s) are saved" in rest
