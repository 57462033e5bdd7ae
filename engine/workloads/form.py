"""The Load form's workload fields, as typed, to WorkloadOptions: the `load` command's options by
another road. The fields and their validators are the options' declarations
(engine.workloads.options); this is the form's name for `options_from_form`. Bad input:
BadRequestError naming the option."""

from __future__ import annotations

from typing import Any

from engine.workloads import WorkloadOptions
from engine.workloads.options import options_from_form


def form_workload(kind: str, *, seed: int = 0, **texts: Any) -> tuple[WorkloadOptions, str | None]:
    """The Load form's workload fields to (WorkloadOptions, suite name or file). `texts`: each field's
    text (a bool for a box) by its option's dest; `path` is the file field (dataset_path, or a suite)."""
    if "path" in texts:
        texts["dataset_path"] = texts.pop("path")
    return options_from_form(kind, texts, seed=seed)
