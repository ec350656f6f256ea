"""The run's checks, first and last: its params before any stage, and reconcile after them all."""
from __future__ import annotations

from typing import Any

import msgspec
from airflow.sdk import BaseOperator, conf
from airflow.sdk.exceptions import AirflowFailException

from include.pipeline.run import params as run_params
from include.pipeline.run import reconcile
from kafka_stages.operators import log_params_overridden, push_metrics


class ReconcileFailed(AirflowFailException):
    """A run that does not reconcile: the message reconcile.failure gives, and its discrepancies
    and manifest for the failure notification (``notifier``), which gets this exception."""

    def __init__(self, message: str, problems: list[str], manifest) -> None:
        super().__init__(message)
        self.problems, self.manifest = list(problems), str(manifest)


class ReconcileOperator(BaseOperator):
    """Checks that the run's stage results add up (``include.pipeline.run.reconcile``), writes the
    run manifest, and ends its log with the run's summary and a link to the Order metrics page.
    A discrepancy fails the task at once (``AirflowFailException``): it does not go away by itself.

    :param results: stage name -> the stage task's XCom (templated).
    """

    template_fields = ("results",)
    ui_color = "#e6f4ea"

    def __init__(self, *, results: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.results = results

    def execute(self, context) -> dict:
        """Reconciles the run and writes its manifest; the run's summary is the XCom. Its result's
        metrics (``reconcile.reconcile`` sets them) are pushed, whether it passed or not."""
        try:
            return self.reconcile(context)
        finally:
            push_metrics(self, context, None)

    def reconcile(self, context) -> dict:
        """The run reconciled, its manifest written and logged; a discrepancy fails the task."""
        manifest = reconcile.reconcile(context["run_id"], self.results, dag_id=self.dag_id)
        for line in reconcile.render(manifest).splitlines():
            self.log.info("%s", line)
        self.log.info("manifest: %s", reconcile.manifest_path(manifest.dag_id, manifest.run_id))
        base_url = conf.get("api", "base_url", fallback="http://localhost:8080").rstrip("/")
        self.log.info("Order metrics page: %s/plugin/order-metrics", base_url)
        if problem := reconcile.failure(manifest):
            raise ReconcileFailed(
                problem, manifest.problems, reconcile.manifest_path(manifest.dag_id, manifest.run_id),
            )
        return msgspec.to_builtins(manifest.summary)


class CheckParamsOperator(BaseOperator):
    """Fails the run at once, without retries, when its conf names a param the DAG does not have
    or its params contradict each other (``include.pipeline.run.params``)."""

    ui_color = "#fef7e0"

    def pre_execute(self, context) -> None:
        """Says which ``airflow tasks test -t`` params the run's conf overrode."""
        log_params_overridden(self, context)

    def execute(self, context) -> list[int]:
        """Fails the run when its params cannot work; otherwise logs them and returns the indexes
        of the mapped stages' instances (``range(workers)``: what they are mapped over)."""
        # The run's params have its conf merged in, unknown keys too: the DAG says which are real.
        conf = context["dag_run"].conf or {}
        if found := run_params.problems(conf, list(self.dag.params), dict(context["params"])):
            raise AirflowFailException("this run's params cannot work:\n  " + "\n  ".join(found))
        self.log.info("params: %s", dict(context["params"]))
        return list(range(int(context["params"].get("workers", 1))))
