"""Publish one run's metrics to the configured sinks (textfile and/or Pushgateway)."""

from __future__ import annotations

import time
from dataclasses import replace
from itertools import chain

import pandas as pd
from prometheus_client.core import Metric

from ..runinfo import RunReport
from .metrics import run_families, score_families, success_families
from .options import ExportOptions
from .push import push
from .textfile import merge_textfile, write_textfile


def snapshot_families(
    scores: pd.DataFrame, report: RunReport, options: ExportOptions
) -> list[Metric]:
    """Every family of a successful run."""
    return list(
        chain(run_families(report), success_families(report), score_families(scores, options))
    )


def publish(scores: pd.DataFrame, report: RunReport, options: ExportOptions) -> None:
    """Write the textfile and/or push: the complete, self-consistent picture of this run."""
    report = _finished(report)
    families = snapshot_families(scores, report, options)
    if options.metrics_file is not None:
        write_textfile(options.metrics_file, families)
    if options.pushgateway is not None:
        push(options.pushgateway, options.job, options.grouping, families, add=False)


def publish_failure(report: RunReport, options: ExportOptions) -> None:
    """A failed run: replace only the run metrics, keep the last success and its scores."""
    families = list(run_families(replace(_finished(report), success=False)))
    if options.metrics_file is not None:
        merge_textfile(options.metrics_file, families)
    if options.pushgateway is not None:
        push(options.pushgateway, options.job, options.grouping, families, add=True)


def _finished(report: RunReport) -> RunReport:
    return report if report.finished_at is not None else replace(report, finished_at=time.time())
