"""Foreign formats: dcgm-exporter dumps, NVML/Alibaba mappings, CloudTrail, VPC Flow Logs, sshd.

Every fixture is read; bad records are quarantined with a fixed reason; a file of another
format is a clear InputError; `auto` tells the formats apart; read = accepted + quarantined.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detector.errors import ConfigError, InputError
from detector.ingest import read_table
from detector.ingest.dcgm import rates
from detector.ingest.options import SourceOptions, load_tenant_map
from detector.schema import ACCESS, TELEMETRY

FIX = Path(__file__).resolve().parent / "fixtures" / "formats"
TENANT_MAP = load_tenant_map(FIX / "tenant-map.csv")
MAR_2026 = pd.Timestamp("2026-06-01", tz="UTC").timestamp()


def read(name: str | Path, schema=TELEMETRY, fmt: str = "auto", **options):
    loaded = read_table([FIX / name], schema, fmt=fmt, options=SourceOptions(**options))
    assert loaded.counts.read == loaded.counts.accepted + loaded.counts.quarantined
    assert loaded.counts.accepted == len(loaded.table)
    return loaded


def copy(tmp_path: Path, name: str, mtime: float | None = None) -> Path:
    path = shutil.copy(FIX / name, tmp_path / name)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return Path(path)


def lines_file(tmp_path: Path, name: str, lines: list[str | bytes]) -> Path:
    data = b"\n".join(x if isinstance(x, bytes) else x.encode() for x in lines) + b"\n"
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- dcgm-exporter text / OpenMetrics ------------------------------------------------------


def test_dcgm_scrapes_become_one_row_per_gpu_and_scrape():
    t = read("dcgm-scrapes.prom").table
    assert len(t) == 6
    gpu0 = t[t["gpu"] == "0"]
    assert gpu0["tenant_id"].unique().tolist() == ["acme-research"]
    assert gpu0["job_id"].unique().tolist() == ["llm-pretrain-0"]
    assert gpu0["gpu_util"].tolist() == [97.0, 99.0, 98.0]
    assert gpu0["power_w"].tolist()[:2] == [612.5, 655.25]
    assert gpu0["model_name"].iloc[0] == "NVIDIA H100 80GB HBM3"
    assert t["timestamp"].iloc[0] == pd.Timestamp(1_760_000_000, unit="s", tz="UTC")
    # GPU 1 has only the energy counter: 6e6 mJ in 30 s = 200 W, then a reset to 7.5e6 mJ
    power = t[t["gpu"] == "1"]["power_w"].tolist()
    assert np.isnan(power[0]) and power[1:] == [200.0, 250.0]


def test_openmetrics_timestamps_are_seconds_and_nvlink_rates_kept():
    t = read("dcgm-openmetrics.om").table
    assert t["timestamp"].tolist() == [
        pd.Timestamp(1_760_000_000.5, unit="s", tz="UTC"),
        pd.Timestamp(1_760_000_060.5, unit="s", tz="UTC"),
    ]
    assert t["nvlink_tx_bps"].tolist() == [1.2e10, 1.3e10]
    assert t["tenant_id"].tolist() == ["tenant-17"] * 2


def test_fp64_pipe_read_and_fp64_tensor_where_it_is_missing(tmp_path):
    labels = 'gpu="{}",Hostname="n1",namespace="hpc",modelName="NVIDIA A100-SXM4-80GB"'
    path = lines_file(
        tmp_path,
        "hpc.prom",
        [
            f"DCGM_FI_DEV_GPU_UTIL{{{labels.format(0)}}} 90 1760000000000",
            f"DCGM_FI_PROF_PIPE_FP64_ACTIVE{{{labels.format(0)}}} 0.4 1760000000000",
            f"DCGM_FI_PROF_PIPE_TENSOR_DFMA_ACTIVE{{{labels.format(0)}}} 0.2 1760000000000",
            f"DCGM_FI_DEV_GPU_UTIL{{{labels.format(1)}}} 90 1760000000000",
            f"DCGM_FI_PROF_PIPE_TENSOR_DFMA_ACTIVE{{{labels.format(1)}}} 0.3 1760000000000",
        ],
    )
    t = read(path).table.set_index("gpu")
    assert t.loc["0", "fp64_active"] == 0.4 and t.loc["1", "fp64_active"] == 0.3


def test_counter_rates_treat_a_drop_as_a_reset():
    samples = pd.DataFrame(
        {"ts": [0.0, 10.0, 20.0, 30.0, 0.0, 10.0], "value": [100.0, 200.0, 50.0, 150.0, 5.0, 5.0]}
    )
    got = rates(samples, np.array([0, 0, 0, 0, 1, 1]))
    assert np.isnan(got[0]) and np.isnan(got[4])
    assert got[[1, 2, 3, 5]].tolist() == [10.0, 5.0, 10.0, 0.0]


def test_tenant_from_another_label_or_the_tenant_map():
    assert set(read("dcgm-scrapes.prom", tenant_label="pod").table["tenant_id"]) == {
        "llm-pretrain-0",
        "sd-serve-7d9f",
    }
    mapped = read("dcgm-scrapes.prom", tenant_label="nope", tenant_map=TENANT_MAP)
    # pod sd-serve-7d9f is in the map; the other GPU falls back to its host's entry
    assert set(mapped.table["tenant_id"]) == {"blue-sky-media", "acme-research"}
    unlabelled = read("dcgm-scrapes.prom", tenant_label="nope")
    assert unlabelled.counts.accepted == 0
    assert set(unlabelled.quarantine["reason"]) == {"tenant_id: missing required value"}


def test_a_scrape_without_timestamps_takes_the_file_time(tmp_path):
    path = lines_file(
        tmp_path,
        "scrape.prom",
        [
            "# TYPE DCGM_FI_DEV_GPU_UTIL gauge",
            'DCGM_FI_DEV_GPU_UTIL{gpu="0",Hostname="n1",namespace="t1"} 42',
        ],
    )
    os.utime(path, (1_760_000_123, 1_760_000_123))
    t = read_table([path], TELEMETRY).table
    assert t["timestamp"].tolist() == [pd.Timestamp(1_760_000_123, unit="s", tz="UTC")]


def test_bad_prometheus_lines_are_quarantined(tmp_path):
    good = 'DCGM_FI_DEV_GPU_UTIL{gpu="0",Hostname="n1",namespace="t1"} 42 1760000000000'
    path = lines_file(
        tmp_path,
        "bad.prom",
        [
            good,
            'DCGM_FI_DEV_GPU_UTIL{gpu="1",Hostname="n1",namespace="t1"',  # truncated
            'DCGM_FI_DEV_GPU_UTIL{gpu="2",Hostname="n1",namespace="t1"} busy 1760000000000',
            'DCGM_FI_DEV_GPU_UTIL{gpu="3",Hostname="n1",namespace="t1"} 7 yesterday',
            b'DCGM_FI_DEV_GPU_UTIL{gpu="4",Hostname="n\xff1",namespace="t1"} 7 1760000000000',
            'DCGM_FI_DEV_GPU_UTIL{gpu="5",Hostname="n1",namespace="t1"} 170 1760000000000',
            'node_cpu_seconds_total{cpu="0"} 1234.5',  # not DCGM: no row
        ],
    )
    loaded = read_table([path], TELEMETRY)
    assert loaded.counts.read == 6 and loaded.counts.accepted == 1
    assert dict(zip(loaded.quarantine["row"], loaded.quarantine["reason"], strict=True)) == {
        2: "malformed sample line",
        3: "sample value is not a number",
        4: "sample timestamp is not a number",
        5: "not UTF-8",
        6: "gpu_util: above maximum 100",
    }


def test_a_file_that_is_not_prometheus_text_is_an_input_error(tmp_path):
    path = lines_file(tmp_path, "x.prom", ["timestamp,tenant_id,gpu_util", "1,2,3"])
    with pytest.raises(InputError, match="not Prometheus text exposition"):
        read_table([path], TELEMETRY)
    with pytest.raises(InputError, match="telemetry records, not access"):
        read_table([FIX / "dcgm-scrapes.prom"], ACCESS)


# --- NVML / Alibaba column mappings ----------------------------------------------------------


def test_nvml_mapping_converts_names_and_units():
    t = read("nvml-spar.csv", fmt="nvml", columns="nvml-spar").table
    assert len(t) == 6
    first = t.iloc[0]
    assert first["gpu_util"] == 26.0 and first["power_w"] == 85.368
    assert first["fb_used_mib"] == 7943.0 and first["fb_free_mib"] == 40960.0 - 7943.0
    assert first["pcie_tx_bps"] == 2.240234375 * 2**20
    assert first["host"] == "spar-a100-sxm4-40gb" and first["job_id"] == "580ec1ad835e"
    assert first["tenant_id"] == "gpt2_wikitext2_amp"
    # auto: a CSV without the canonical columns is read through the mapping given
    assert read("nvml-spar.csv", columns="nvml-spar").counts.accepted == 6


def test_nvml_bad_rows_and_sentinels(tmp_path):
    text = (FIX / "nvml-spar.csv").read_text().splitlines()
    rows = [
        text[0],
        text[1],
        text[2].replace(",26,", ",lots,").replace(",98,", ",lots,"),
        text[3].rsplit(",", 2)[0],
        text[4].replace("10.251953125", "-1"),
    ]
    path = lines_file(tmp_path, "nvml.csv", rows)
    loaded = read_table([path], TELEMETRY, fmt="nvml", options=SourceOptions(columns="nvml-spar"))
    assert loaded.counts.read == 4 and loaded.counts.accepted == 2
    assert sorted(loaded.quarantine["reason"]) == [
        "gpu_util: not a number",
        "malformed row: wrong number of fields",
    ]
    assert loaded.table["pcie_tx_bps"].isna().tolist() == [False, True]  # -1 = no value


def test_nvml_mapping_errors(tmp_path):
    with pytest.raises(InputError, match="needs a column mapping"):
        read_table([FIX / "nvml-spar.csv"], TELEMETRY, fmt="nvml")
    bad = tmp_path / "bad.toml"
    bad.write_text('[columns]\ngpu_util = { column = "u", unit = "furlongs" }\n')
    with pytest.raises(ConfigError, match="furlongs"):
        read_table(
            [FIX / "nvml-spar.csv"], TELEMETRY, fmt="nvml", options=SourceOptions(columns=bad)
        )
    other = tmp_path / "other.toml"
    other.write_text('[columns]\ntimestamp = "ts"\ngpu_util = "util"\n')
    with pytest.raises(InputError, match="needs source column"):
        read_table(
            [FIX / "nvml-spar.csv"], TELEMETRY, fmt="nvml", options=SourceOptions(columns=other)
        )
    with pytest.raises(ConfigError, match="cannot read column mapping"):
        read_table(
            [FIX / "nvml-spar.csv"],
            TELEMETRY,
            fmt="nvml",
            options=SourceOptions(columns="no-such-mapping"),
        )


def test_long_layout_merges_the_metric_files():
    loaded = read("alibaba", fmt="nvml", columns="alibaba-genai")
    t = loaded.table
    assert loaded.counts.read == 5 and loaded.counts.accepted == 4
    assert loaded.quarantine["reason"].tolist() == ["gpu_util: missing required value"]
    pod = t[t["tenant_id"] == "23b8eba99c14e73d454503a55ae96989"]
    assert pod["gpu_util"].tolist() == [0.0, 12.1]
    assert pod["fb_used_mib"].tolist() == [33879490560.0 / 2**20] * 2
    assert (t["host"] == t["tenant_id"]).all() and (t["gpu"] == "0").all()


# --- CloudTrail ------------------------------------------------------------------------------


def test_cloudtrail_records_skip_aws_service_principals():
    loaded = read("cloudtrail.json", ACCESS)
    t = loaded.table
    assert loaded.counts.read == 3  # 2 of 5 records were made by AWS services
    assert t["tenant_id"].tolist() == ["111122223333", "444455556666", "111122223333"]
    assert t["event"].tolist() == ["api", "console", "api"]
    assert t["src_ip"].tolist()[1] == "2001:db8:85a3::8a2e:370:7334"
    assert t["principal"].iloc[0] == "arn:aws:iam::111122223333:user/mlops-ci"
    mapped = read("cloudtrail.json", ACCESS, tenant_map=TENANT_MAP).table
    assert mapped["tenant_id"].tolist()[1] == "reseller-asia-01"


def test_cloudtrail_gzip_folder_and_cut_file(tmp_path):
    data = (FIX / "cloudtrail.json").read_bytes()
    (tmp_path / "a.json.gz").write_bytes(gzip.compress(data))
    cut = data[: data.index(b'"eventTime": "2026-03-09T18:25:37Z"')]
    (tmp_path / "b.json").write_bytes(cut)
    loaded = read_table([tmp_path], ACCESS)
    assert loaded.counts.read == 3 + 3 and loaded.counts.accepted == 3
    # the cut file keeps its first records (copies of a's: duplicates), the rest is one row
    bad = loaded.quarantine
    assert bad["reason"].tolist() == ["duplicate", "duplicate", "invalid JSON"]
    assert bad["row"].tolist() == [1, 2, 4]


def test_cloudtrail_bad_records(tmp_path):
    path = tmp_path / "ct.json"
    path.write_bytes(
        b'{"Records": [{"eventTime": "2026-03-09T18:20:11Z", "eventName": "X", '
        b'"sourceIPAddress": "300.1.1.1", "userIdentity": {"accountId": "1"}}, 7, '
        b'{"eventTime": "yesterday", "eventName": "X", "sourceIPAddress": '
        b'"1.2.3.4", "userIdentity": {"accountId": "1"}}, {"eventTime": '
        b'"2026-03-09T18:20:11Z", "eventName": "X", "sourceIPAddress": "1.2.3.4", '
        b'"userAgent": "\xff", "userIdentity": {"accountId": "1"}}]}'
    )
    loaded = read_table([path], ACCESS, fmt="cloudtrail")
    assert loaded.counts.read == 4 and loaded.counts.accepted == 0
    assert sorted(loaded.quarantine["reason"]) == [
        "not UTF-8",
        "not a JSON object",
        "src_ip: invalid IP address",
        "timestamp: unparsable timestamp",
    ]
    other = tmp_path / "other.json"
    other.write_text('{"Records": 3')
    with pytest.raises(InputError, match="not a CloudTrail log file"):
        read_table([other], ACCESS, fmt="cloudtrail")


# --- VPC Flow Logs -----------------------------------------------------------------------------


def test_vpc_flow_v2_keeps_inbound_accepted_flows():
    loaded = read("vpcflow-v2.log", ACCESS)
    t = loaded.table
    assert t["src_ip"].tolist() == ["198.51.100.23", "192.0.2.140"]
    assert t["bytes_in"].tolist() == [5112.0, 2188311.0]
    assert t["tenant_id"].unique().tolist() == ["123456789012"]
    assert loaded.quarantine["reason"].tolist() == ["SKIPDATA: flows not captured"]
    mapped = read("vpcflow-v2.log", ACCESS, tenant_map=TENANT_MAP).table
    assert mapped["tenant_id"].unique().tolist() == ["tenant-vpc-a"]


def test_vpc_flow_custom_fields_use_flow_direction_and_instance():
    t = read("vpcflow-v5.log", ACCESS, tenant_map=TENANT_MAP).table
    assert t["src_ip"].tolist() == ["2001:db8:1234::17", "198.51.100.61"]
    assert t["tenant_id"].tolist() == ["acme-research", "123456789012"]


def test_vpc_flow_bad_records(tmp_path):
    head, *rows = (FIX / "vpcflow-v2.log").read_text().splitlines()
    path = lines_file(
        tmp_path,
        "flows.log",
        [
            head,
            rows[0],
            rows[0].rsplit(" ", 3)[0],
            rows[0].replace("198.51.100.23", "198.51.100.300"),
            rows[0].replace("1760000000", "soon", 1),
            rows[0].encode().replace(b"ACCEPT", b"\xff"),
        ],
    )
    loaded = read_table([path], ACCESS)
    assert loaded.counts.accepted == 1
    assert sorted(loaded.quarantine["reason"]) == [
        "malformed record: wrong number of fields",
        "not UTF-8",
        "src_ip: invalid IP address",
        "timestamp: unparsable timestamp",
    ]
    with pytest.raises(InputError, match="not a VPC Flow Log"):
        read_table([lines_file(tmp_path, "x.log", ["hello world"])], ACCESS, fmt="vpcflow")


# --- sshd ------------------------------------------------------------------------------------


def test_sshd_syslog_lines_with_the_year_of_the_file(tmp_path):
    path = copy(tmp_path, "auth.log", mtime=MAR_2026)
    loaded = read_table([path], ACCESS, options=SourceOptions(tenant_map=TENANT_MAP))
    t = loaded.table
    assert loaded.counts.read == 3
    assert t["timestamp"].tolist()[0] == pd.Timestamp("2026-03-09 18:21:13", tz="UTC")
    assert t["src_ip"].tolist()[1] == "2001:db8:ff00:42::8329"
    assert t["principal"].tolist() == ["alice", "bob", "deploy"]
    assert t["tenant_id"].tolist() == ["acme-research", "blue-sky-media", "blue-sky-media"]
    # a file written in January holds last year's March
    early = copy(tmp_path, "auth.log", mtime=pd.Timestamp("2027-01-15", tz="UTC").timestamp())
    assert read_table([early], ACCESS).table["timestamp"].dt.year.unique().tolist() == [2026]


def test_sshd_journal_short_iso_with_offsets():
    t = read("sshd-journal.log", ACCESS).table
    assert t["timestamp"].tolist() == [
        pd.Timestamp("2026-03-09 18:21:13", tz="UTC"),
        pd.Timestamp("2026-03-09 18:05:52", tz="UTC"),
    ]
    assert t["tenant_id"].tolist() == ["gpu-node-07", "gpu-node-09"]


def test_sshd_bad_lines(tmp_path):
    ok = "2026-03-09T18:21:13+0000 n1 sshd[1]: Accepted publickey for a from 1.2.3.4 port 5 ssh2"
    path = lines_file(
        tmp_path,
        "auth.log",
        [
            ok,
            ok.replace("1.2.3.4", "1.2.3.400"),
            ok.replace("2026-03-09T18", "2026-13-09T18"),
            ok[:60],
            ok.encode().replace(b"for a", b"for \xff"),
            "2026-03-09T18:21:14+0000 n1 sshd[1]: Failed password for b from 5.6.7.8 port 6 ssh2",
        ],
    )
    loaded = read_table([path], ACCESS)
    assert loaded.counts.accepted == 1
    assert sorted(loaded.quarantine["reason"]) == [
        "malformed record: sshd Accepted line",
        "not UTF-8",
        "src_ip: invalid IP address",
        "timestamp: unparsable timestamp",
    ]
    with pytest.raises(InputError, match="not a syslog or journald auth log"):
        read_table([lines_file(tmp_path, "x.log", ["hello"])], ACCESS, fmt="sshd")


# --- auto ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "schema", "fmt"),
    [
        ("dcgm-scrapes.prom", TELEMETRY, "prometheus"),
        ("cloudtrail.json", ACCESS, "cloudtrail"),
        ("vpcflow-v2.log", ACCESS, "vpcflow"),
        ("vpcflow-v5.log", ACCESS, "vpcflow"),
        ("sshd-journal.log", ACCESS, "sshd"),
    ],
)
def test_auto_tells_formats_apart(tmp_path, name, schema, fmt):
    bare = copy(tmp_path, name)
    renamed = bare.rename(tmp_path / "noextension")
    auto = read_table([renamed], schema).table
    forced = read_table([FIX / name], schema, fmt=fmt).table
    pd.testing.assert_frame_equal(auto, forced)


def test_auto_rejects_unknown_content(tmp_path):
    with pytest.raises(InputError, match="content is not"):
        read_table([lines_file(tmp_path, "notes", ["just some text"])], ACCESS)


# --- property tests: no traceback, read = accepted + quarantined -----------------------------


def _mutations(name: str) -> st.SearchStrategy[bytes]:
    lines = (FIX / name).read_bytes().splitlines()
    line = st.one_of(
        st.sampled_from(lines),
        st.tuples(st.sampled_from(lines), st.integers(0, 200)).map(lambda t: t[0][: t[1]]),
        st.binary(max_size=40),
        st.tuples(
            st.sampled_from(lines), st.binary(min_size=1, max_size=4), st.integers(0, 200)
        ).map(lambda t: t[0][: t[2]] + t[1] + t[0][t[2] :]),
    )
    return st.lists(line, min_size=0, max_size=12).map(lambda ls: b"\n".join(ls))


@pytest.mark.parametrize(
    ("name", "schema", "fmt", "options"),
    [
        ("dcgm-scrapes.prom", TELEMETRY, "prometheus", {}),
        ("dcgm-openmetrics.om", TELEMETRY, "prometheus", {}),
        ("nvml-spar.csv", TELEMETRY, "nvml", {"columns": "nvml-spar"}),
        ("cloudtrail.json", ACCESS, "cloudtrail", {}),
        ("vpcflow-v2.log", ACCESS, "vpcflow", {}),
        ("vpcflow-v5.log", ACCESS, "vpcflow", {}),
        ("auth.log", ACCESS, "sshd", {}),
        ("sshd-journal.log", ACCESS, "sshd", {}),
    ],
)
def test_parsers_never_crash_and_account_for_every_row(tmp_path, name, schema, fmt, options):
    @settings(
        max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(_mutations(name))
    def check(data: bytes) -> None:
        path = tmp_path / ("input" + Path(name).suffix)
        path.write_bytes(data)
        try:
            loaded = read_table([path], schema, fmt=fmt, options=SourceOptions(**options))
        except InputError:
            return  # a clear error naming the file: allowed for input that is not the format
        assert loaded.counts.read == loaded.counts.accepted + loaded.counts.quarantined
        assert loaded.counts.accepted == len(loaded.table)

    check()


# --- command line ----------------------------------------------------------------------------


def test_cli_reads_foreign_formats(tmp_path):
    from click.testing import CliRunner

    from detector.cli import main

    runner = CliRunner()
    args = ["train", "--access", str(FIX / "auth.log"), "--model-dir", str(tmp_path / "m")]
    result = runner.invoke(main, args)
    assert result.exit_code == 2 and "give --telemetry or --prometheus-url" in result.output
    result = runner.invoke(main, [*args, "--prometheus-url", "http://127.0.0.1:9"])
    assert result.exit_code == 2 and "--prometheus-url needs --since" in result.output
    result = runner.invoke(
        main,
        [
            *args,
            "--telemetry",
            str(FIX / "dcgm-scrapes.prom"),
            "--access-format",
            "vpcflow",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 2 and "not a VPC Flow Log" in result.output
