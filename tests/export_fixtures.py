"""Small hand-made scores tables and run reports shared by the exporter tests."""

from __future__ import annotations

import json
from collections import Counter

import pandas as pd

from detector.runinfo import RunReport


def scores_frame() -> pd.DataFrame:
    """Four sessions of three tenants: two alerts (tenant a, tenant b), one restricted origin."""
    start = pd.Timestamp("2024-06-01T00:00:00Z")
    feats = [
        json.dumps([{"feature": f, "value": 1.0, "contribution": 0.5}])
        for f in ("origin:direct", "workload:tensor_share", "origin:clock", "workload:lockstep")
    ]
    return pd.DataFrame(
        {
            "session_id": ["s1", "s2", "s3", "s4"],
            "tenant_id": ["a", "a", "b", "c"],
            "start": [start] * 4,
            "end": [start + pd.Timedelta(hours=2)] * 4,
            "duration_s": [7200.0] * 4,
            "n_gpus": [8, 1, 4, 1],
            "n_hosts": [1, 1, 1, 1],
            "gpu_hours": [16.0, 2.0, 8.0, 2.0],
            "origin_evidence": [0.9, 0.0, 0.2, float("nan")],
            "anomaly_score": [0.7, 0.1, 0.6, 0.2],
            "risk_score": [95.0, 15.0, 75.0, 35.0],
            "severity": ["critical", "low", "high", "medium"],
            "alert": [True, False, True, False],
            "top_features": feats,
            "model_version": ["m1"] * 4,
            "run_id": ["r1"] * 4,
        }
    )


def run_report(success: bool = True) -> RunReport:
    return RunReport(
        run_id="r1",
        started_at=1_717_200_000.0,
        finished_at=1_717_200_090.5,
        stage_seconds={"ingest": 1.5, "score": 0.25},
        rows_read=Counter({"telemetry": 100, "access": 40}),
        rows_accepted=Counter({"telemetry": 98, "access": 40}),
        rows_quarantined=Counter({("telemetry", "gpu_util out of range"): 2}),
        ips_total=10,
        ips_unknown=1,
        sessions=4,
        model_version="m1",
        model_trained_at="2024-05-30T12:00:00Z",
        success=success,
    )
