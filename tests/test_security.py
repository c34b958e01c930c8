"""Security: secret references, redaction of what autotune writes and logs, profile paths, file
permissions, the in-cluster pods' securityContext and the environment Dynamo children get."""

from __future__ import annotations

import logging
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from autotune.errors import InputError, ProfileError
from autotune.profile import load_profile, profile_from_dict
from autotune.redact import REDACTED, RedactingFilter, redact, redact_text
from tests.conftest import ROOT

HF = "hf_AbCdEfGhIjKlMnOpQrStUvWx"
WORKER_TOKEN = "s3cr3t-w0rker-T0ken"
BEARER = "eyJhbGciOiJIUzI1NiJ9.payload"
LITERALS = (HF, WORKER_TOKEN, BEARER)

SECRET_PROFILE = """
extends: {base}
name: secret-study
dynamo:
  extra_frontend_args: ["--hf-token", "{hf}", "--api-key", {{secret: router-auth, key: api-key}},
                        "--header=Authorization: Bearer {bearer}"]
  extra_worker_args: ["--hf-token", {{secret: hf-token, key: token}}, "--auth-token={worker}"]
workload:
  concurrency: [8, 16]
  requests_per_point: 120
  warmup_requests: 10
  cooldown_requests: 10
search:
  trials: 2
  min_gpus: 4
  prefill_tp: [4]
  decode_tp: [4]
  aggregated_tp: [4]
  max_prefill_workers: 1
  max_decode_workers: 2
  operating_point: target
  target_concurrency: 16
baselines: []
"""


def _secret_profile(tmp_path: Path) -> Path:
    p = tmp_path / "secret.yaml"
    base = ROOT / "profiles" / "paper-70b-1p5d.yaml"
    p.write_text(SECRET_PROFILE.format(base=base, hf=HF, bearer=BEARER, worker=WORKER_TOKEN))
    return p


def _autotune(*args: str, cwd: Path = ROOT, timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "autotune", *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd
    )


# ---- redaction ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("--hf-token abcdef123", "abcdef123"),
        ("--api-key=sk-live-1234", "sk-live-1234"),
        ("HF_TOKEN=abc123xyz rest", "abc123xyz"),
        (f"model {HF} loaded", HF),
        ("Authorization: Bearer abcdefghijklmnop", "abcdefghijklmnop"),
        ("postgresql://bob:hunter2@db:5432/optuna", "hunter2"),
        ('{"password": "pa55word"}', "pa55word"),
    ],
)
def test_redact_text_hides_credentials(text: str, secret: str) -> None:
    out = redact_text(text)
    assert secret not in out and REDACTED in out
    assert redact_text(out) == out  # idempotent


@pytest.mark.parametrize(
    "text", ["--max-num-batched-tokens 8192", "--kv-bytes-per-token 131072", "the token throughput", "--block-size 64"]
)
def test_redact_text_leaves_ordinary_text(text: str) -> None:
    assert redact_text(text) == text


def test_redact_structures_keeps_secret_references() -> None:
    obj = {
        "args": ["--auth-token", "abc", "--block-size", "64"],
        "envs": [{"name": "HF_TOKEN", "value": "xyz"}, {"name": "DYN_LOG", "value": "info"}],
        "ref": {"secret": "hf-token", "key": "token"},
        "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}},
    }
    out = redact(obj)
    assert out["args"] == ["--auth-token", REDACTED, "--block-size", "64"]
    assert out["envs"] == [{"name": "HF_TOKEN", "value": REDACTED}, {"name": "DYN_LOG", "value": "info"}]
    assert out["ref"] == obj["ref"] and out["valueFrom"] == obj["valueFrom"]


def test_log_records_are_redacted() -> None:
    record = logging.LogRecord("autotune", logging.WARNING, __file__, 1, "starting with --api-key %s", ("k-123",), None)
    assert RedactingFilter().filter(record)
    assert "k-123" not in record.getMessage()


def test_storage_url_password_not_echoed(tmp_path: Path) -> None:
    from autotune.search.study import StudyConfig, load_study

    prof = load_profile("paper-70b-1p2d")
    cfg = StudyConfig(tmp_path, 1, storage="postgresql://bob:hunter2@127.0.0.1:1/optuna")
    with pytest.raises(InputError) as exc:
        load_study(prof, cfg, create=True)
    assert "hunter2" not in str(exc.value) and "--storage" in str(exc.value)


# ---- secret references -------------------------------------------------------------------------


def _env_and_args(dgd: dict, name: str) -> tuple[list[dict], list[str]]:
    """A service's (v1alpha1) or component's main container (v1beta1) env and args."""
    if dgd["apiVersion"] == "nvidia.com/v1alpha1":
        s = dgd["spec"]["services"][name]
        return s["envs"], s["extraPodSpec"]["mainContainer"]["args"]
    main = next(c for c in dgd["spec"]["components"] if c["name"] == name)["podTemplate"]["spec"]["containers"][0]
    return main["env"], main["args"]


@pytest.mark.parametrize("api_version", ["v1alpha1", "v1beta1"])
def test_dgd_uses_secret_key_ref_and_hides_literals(tmp_path: Path, api_version: str) -> None:
    from autotune.k8s.render import render_dgd
    from autotune.topology import parse_topology

    prof = load_profile(_secret_profile(tmp_path))
    dgd = render_dgd(prof, parse_topology("1P4-1D4"), study="s", trial_id="t", api_version=api_version)
    env, args = _env_and_args(dgd, "Frontend")
    assert {"name": "AUTOTUNE_SECRET_ROUTER_AUTH_API_KEY", "valueFrom": {"secretKeyRef": {"name": "router-auth", "key": "api-key"}}} in env  # fmt: skip
    assert "$(AUTOTUNE_SECRET_ROUTER_AUTH_API_KEY)" in args
    for svc in ("prefill", "decode"):
        env, args = _env_and_args(dgd, svc)
        assert env[0]["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "token"}
        assert "$(AUTOTUNE_SECRET_HF_TOKEN_TOKEN)" in args
    r = _autotune("dgd", "-p", str(_secret_profile(tmp_path)), "-t", "1P4-1D4", "--api-version", api_version)
    assert r.returncode == 0, r.stderr
    assert not any(s in r.stdout + r.stderr for s in LITERALS)
    assert "secretKeyRef" in r.stdout and "secret reference" in r.stderr  # the warning says what to do


def test_secret_reference_validation() -> None:
    base = {"name": "x", "cluster": {"nodes": 1, "gpu": "H100", "gpus_per_node": 8}, "model": "Llama-3.1-8B"}
    with pytest.raises(ProfileError, match="extra_worker_args"):
        profile_from_dict({**base, "dynamo": {"extra_worker_args": [{"secret": "Bad_Name", "key": "k"}]}})
    refs = [{"secret": "a-b", "key": "c"}, {"secret": "a.b", "key": "c"}]
    with pytest.raises(ProfileError, match="one variable AUTOTUNE_SECRET_A_B_C"):
        profile_from_dict({**base, "dynamo": {"extra_worker_args": refs}})


def test_results_hold_no_literal_credential(tmp_path: Path) -> None:
    out = tmp_path / "results"
    r = _autotune("run", "-p", str(_secret_profile(tmp_path)), "-r", str(out), "-j", "1", "-o", "json")
    assert r.returncode == 0, r.stderr
    assert not any(s in r.stdout + r.stderr for s in LITERALS)
    for f in out.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert not any(s.encode() in data for s in LITERALS), f.name
    dgd = yaml.safe_load((out / "dgd.yaml").read_text())
    assert _env_and_args(dgd, "prefill")[0][0]["valueFrom"]["secretKeyRef"]["name"] == "hf-token"
    resolved = yaml.safe_load((out / "profile.resolved.yaml").read_text())
    assert {"secret": "router-auth", "key": "api-key"} in resolved["dynamo"]["extra_frontend_args"]
    # ---- permissions: directories 0700, files 0600 (also the Optuna journal and plots/)
    for f in [out, *out.rglob("*")]:
        mode = stat.S_IMODE(f.stat().st_mode)
        assert mode == (0o700 if f.is_dir() else 0o600), (f.name, oct(mode))
    assert (out / "study.journal").exists() and (out / "plots").is_dir()


# ---- profile paths and reads -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../../x", "/etc/x", "a/b", ".hidden", "", "x" * 64, "a b"])
def test_profile_name_must_be_one_safe_path_component(name: str) -> None:
    base = {"cluster": {"nodes": 1, "gpu": "H100", "gpus_per_node": 8}, "model": "Llama-3.1-8B"}
    with pytest.raises(ProfileError) as exc:
        profile_from_dict({**base, "name": name}, "p.yaml")
    assert str(exc.value).startswith("p.yaml: name: ") and "\n" not in str(exc.value)


@pytest.mark.parametrize("target", ["/dev/zero", "fifo", "dir"])
def test_extends_refuses_devices_fifos_directories_quickly(tmp_path: Path, target: str) -> None:
    if target == "fifo":
        os.mkfifo(tmp_path / "fifo.yaml")
        target = "fifo.yaml"
    elif target == "dir":
        (tmp_path / "dir.yaml").mkdir()
        target = "dir.yaml"
    p = tmp_path / "p.yaml"
    p.write_text(f"extends: {target}\nname: x\n")
    t0 = time.monotonic()
    with pytest.raises(ProfileError, match="extends: .* is not a regular file"):
        load_profile(p)
    assert time.monotonic() - t0 < 2


def test_profile_file_size_and_encoding(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("name: x\n" + "#" * (1 << 20))
    with pytest.raises(ProfileError, match="big.yaml: larger than 1024 KiB"):
        load_profile(big)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ProfileError, match="latin.yaml: not UTF-8 text"):
        load_profile(latin)
    with pytest.raises(ProfileError, match="not a regular file"):
        load_profile("/dev/null")


# ---- file permissions ----------------------------------------------------------------------------


def test_results_files_private_whatever_the_umask(tmp_path: Path) -> None:
    from autotune.results.files import write_json
    from autotune.search.study import StudyConfig, open_storage

    old = os.umask(0)
    try:
        write_json(tmp_path / "a" / "b" / "x.json", {"k": 1})
        open_storage(StudyConfig(tmp_path / "study", 1))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a" / "b" / "x.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "study").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "study" / "study.journal").stat().st_mode) == 0o600


# ---- in-cluster pods -----------------------------------------------------------------------------


def _pod_specs() -> list[dict]:
    out = []
    for f in sorted((ROOT / "k8s").glob("*.yaml")):
        for d in yaml.safe_load_all(f.read_text()):
            if not d:
                continue
            spec = d.get("spec", {})
            for path in (("template",), ("jobTemplate", "spec", "template")):
                node = spec
                for k in path:
                    node = node.get(k, {}) if isinstance(node, dict) else {}
                if node.get("spec", {}).get("containers"):
                    out.append(node["spec"])
    return out


def test_pods_run_restricted() -> None:
    pods = _pod_specs()
    assert len(pods) == 5  # Job, CronJob, the workers' Indexed Job, PostgreSQL, the controller
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        vols = {v["name"]: v for v in pod["volumes"]}
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"] == {"drop": ["ALL"]} and sc["runAsNonRoot"] is True
            mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
            assert "emptyDir" in vols[mounts["/tmp"]]


# ---- dynamo-local children -----------------------------------------------------------------------


def test_dynamo_children_get_an_allow_listed_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from autotune.dynamo.process import ProcessGroup
    from autotune.dynamo.stack import DynamoStack, secret_env

    monkeypatch.setenv("HF_TOKEN", HF)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-123")
    monkeypatch.setenv("AUTOTUNE_SECRET_ROUTER_AUTH_API_KEY", "router-key-42")
    prof = load_profile(_secret_profile(tmp_path))
    stack = DynamoStack.__new__(DynamoStack)  # only the environment builder: no processes
    stack.work_dir = tmp_path / "work"
    env = stack._env(DYN_LOG="info", **secret_env(prof))
    group = ProcessGroup(tmp_path / "logs")
    child = group.start("env", ["/usr/bin/env"], env)
    child.popen.wait(timeout=10)
    group.stop()
    seen = dict(line.split("=", 1) for line in child.log_path.read_text().splitlines() if "=" in line)
    assert "HF_TOKEN" not in seen and "AWS_SECRET_ACCESS_KEY" not in seen
    assert seen["PATH"] == os.environ["PATH"] and seen["DYN_LOG"] == "info"
    assert seen["AUTOTUNE_SECRET_ROUTER_AUTH_API_KEY"] == "router-key-42"  # a reference the frontend uses
    monkeypatch.delenv("AUTOTUNE_SECRET_ROUTER_AUTH_API_KEY")
    with pytest.raises(InputError, match=r"set \$AUTOTUNE_SECRET_ROUTER_AUTH_API_KEY"):
        secret_env(prof)
