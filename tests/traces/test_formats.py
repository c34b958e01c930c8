"""Reading traces: Mooncake JSONL, aiperf profile_export.jsonl (autotune's own export read back), and
autotune's per-request records; a bad line is one error naming file:line and field, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from autotune.cli.app import main
from autotune.errors import EXIT_BAD_INPUT, InputError
from autotune.loadgen.aiperf_export import aiperf_record
from autotune.loadgen.aiperf_export import write_jsonl as write_aiperf
from autotune.loadgen.client import BurstResult, RequestRecord
from autotune.records import REQUEST_COLUMNS
from autotune.traces.spec import TraceSpec
from autotune.traces.trace import build_trace

from .helpers import trace_profile, write_jsonl

MOONCAKE = [
    {"timestamp": 0, "input_length": 700, "output_length": 10, "hash_ids": [1, 2]},
    {"timestamp": 500, "input_length": 1024, "output_length": 20, "hash_ids": [1, 3]},
    {"timestamp": 250, "input_length": 300, "output_length": 5, "hash_ids": [9]},
]


def test_mooncake_is_read_in_time_order_with_chained_prefixes(tmp_path) -> None:
    t = build_trace(TraceSpec(path="x"), write_jsonl(tmp_path / "m.jsonl", MOONCAKE))
    assert t.arrival_s.tolist() == [0.0, 0.25, 0.5]  # ms -> s, sorted by time
    assert t.input_tokens.tolist() == [700, 300, 1024] and t.output_tokens.tolist() == [10, 5, 20]
    a, _, b = t.prefix_ids
    assert a[0] == b[0] and a[1] != b[1]  # hash id 1 shared; 2 and 3 are not
    assert t.shared[a[0]] and not t.shared[a[1]]
    assert t.template.tolist() == [0, -1, 0]  # the prefix group: the first block, when shared
    # an infinite cache serves request 3's first block (512 of 1024 tokens) and nothing else
    assert t.reuse_rate() == pytest.approx(512 / 2024)


def test_autotune_aiperf_export_reads_back(tmp_path) -> None:
    recs = []
    for i in range(4):
        r = RequestRecord(i, 0, send_s=0.5 * i, first_token_s=0.5 * i + 0.1, end_s=0.5 * i + 0.3, status="ok")
        r.chunk_times = [0.5 * i + 0.1, 0.5 * i + 0.2, 0.5 * i + 0.3]
        r.prompt_tokens, r.completion_tokens = 100 + i, 3
        recs.append(r)
    bad = RequestRecord(4, 0, send_s=2.5, status="rejected", http_status=503, error="busy")
    burst = BurstResult(recs + [bad], t0_wall=1_700_000_000.0, t0_perf=0.0, duration_s=3.0, cpu_s=0.1)
    rows = [aiperf_record(r, burst, input_tokens=100, measured=True) for r in burst.records]
    path = write_aiperf(tmp_path / "profile_export.jsonl", rows)
    t = build_trace(TraceSpec(path="x", format="aiperf", prefix_tokens=64, block_size_tokens=16), path)
    assert np.allclose(t.arrival_s, [0, 0.5, 1.0, 1.5], atol=1e-6)
    assert t.input_tokens.tolist() == [100, 101, 102, 103] and t.output_tokens.tolist() == [3] * 4
    assert t.skipped == 1  # the rejected request has no output length
    assert t.mean_shared_tokens() == 64  # one prefix group: 4 shared 16-token blocks each


def test_autotune_request_records_read_back(tmp_path) -> None:
    n = 6
    df = pd.DataFrame({c: np.zeros(n) for c in REQUEST_COLUMNS})
    df["arrival_s"] = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    df["input_tokens"] = [64, 64, 80, 80, 96, 96]
    df["output_tokens"] = [4, 4, 4, 0, 4, 4]
    df["template"] = [0, 1, 0, 1, 0, 1]
    df["status"] = ["ok", "ok", "ok", "rejected", "ok", "ok"]
    df.to_csv(tmp_path / "requests.csv", index=False)
    df.to_parquet(tmp_path / "requests.parquet", index=False)
    for name in ("requests.csv", "requests.parquet"):
        t = build_trace(TraceSpec(path="x", format="autotune", prefix_tokens=32), tmp_path / name)
        assert len(t) == 5 and t.skipped == 1
        assert t.template.tolist() == [0, 1, 0, 0, 1]  # templates 0 and 1 share 32 tokens within their group
        assert t.mean_shared_tokens() == 32


@pytest.mark.parametrize(
    ("line", "where"),
    [
        (
            '{"timestamp": 1, "input_length": 0, "output_length": 3}',
            "m.jsonl:2: input_length: expected an integer >= 1",
        ),
        ('{"timestamp": 1, "output_length": 3}', "m.jsonl:2: input_length: required field is missing"),
        ('{"timestamp": "x", "input_length": 5, "output_length": 3}', "m.jsonl:2: timestamp: expected a number"),
        ('{"timestamp": 1, "input_length": 5, "output_length": 3, "hash_ids": "a"}', "m.jsonl:2: hash_ids:"),
        ("[1, 2]", "m.jsonl:2: line: expected a JSON object"),
        ("{oops", "m.jsonl:2: line: not a JSON object"),
    ],
)
def test_bad_line_names_file_line_and_field(tmp_path, line, where) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps(MOONCAKE[0]) + "\n" + line + "\n")
    with pytest.raises(InputError) as exc:
        build_trace(TraceSpec(path="x"), path)
    assert str(exc.value).startswith(f"{path.parent}/{where}")


def test_bad_trace_in_profile_exits_2_with_one_line(tmp_path, capsys) -> None:
    write_jsonl(tmp_path / "t.jsonl", [MOONCAKE[0], {"timestamp": 5, "input_length": 3, "output_length": -1}])
    profile = tmp_path / "p.yaml"
    profile.write_text(
        "name: p\ncluster: {nodes: 1, gpu: B200, gpus_per_node: 8}\nmodel: Llama-3.1-70B\n"
        "workload: {trace: {path: t.jsonl}}\n"
    )
    with pytest.raises(SystemExit) as exc:
        main(["trace", "info", "-p", str(profile)])
    assert exc.value.code == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip()
    assert err == f"autotune: error: {tmp_path}/t.jsonl:2: output_length: expected an integer >= 1, got -1"
    (tmp_path / "t.jsonl").unlink()
    with pytest.raises(SystemExit):
        main(["trace", "info", "-p", str(profile)])
    assert "t.jsonl: workload.trace.path: file not found" in capsys.readouterr().err


def test_trace_spec_refuses_inconsistent_settings(tmp_path) -> None:
    path = write_jsonl(tmp_path / "m.jsonl", MOONCAKE)
    for trace, extra, why in [
        ({"path": str(path), "start_s": 5, "end_s": 2}, {}, "end_s (2.0) must be after start_s"),
        ({"path": str(path), "mode": "closed_loop", "rate_scale": 2}, {}, "rate_scale applies to mode 'timestamps'"),
        ({"path": str(path)}, {"arrival": "open", "rate_rps": 3}, "the trace's mode sets the arrivals"),
        ({"path": str(path), "start_s": 10}, {}, "no request in [10, end) s"),
    ]:
        with pytest.raises(InputError, match=None) as exc:
            trace_profile(trace, **extra)
        assert why in str(exc.value)


def test_relative_path_is_relative_to_the_profile_file(tmp_path, monkeypatch) -> None:
    from autotune.profile import load_profile

    (tmp_path / "sub").mkdir()
    write_jsonl(tmp_path / "sub" / "t.jsonl", MOONCAKE)
    (tmp_path / "sub" / "p.yaml").write_text(
        "name: p\ncluster: {nodes: 1, gpu: B200, gpus_per_node: 8}\nmodel: Llama-3.1-70B\n"
        "workload: {trace: {path: t.jsonl}}\n"
    )
    monkeypatch.chdir(tmp_path)
    prof = load_profile("sub/p.yaml")
    assert prof.workload.trace is not None and Path(prof.workload.trace.path) == tmp_path / "sub" / "t.jsonl"
    assert prof.workload.max_request_tokens() == 1044


def test_profile_digest_follows_the_trace_content(tmp_path) -> None:
    path = write_jsonl(tmp_path / "m.jsonl", MOONCAKE)
    before = trace_profile({"path": str(path)}).digest()
    assert trace_profile({"path": str(path)}).digest() == before
    write_jsonl(path, [{**MOONCAKE[0], "output_length": 11}, *MOONCAKE[1:]])
    assert trace_profile({"path": str(path)}).digest() != before
