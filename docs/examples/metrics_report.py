"""A DAG of yours, run after each `sink` of the pipeline that succeeds: scheduled on the store."""

from airflow.sdk import DAG, task

from kafka_stages.lineage import store_asset

with DAG(dag_id="metrics_report", schedule=[store_asset()], catchup=False):

    @task
    def report(*, triggering_asset_events=None):
        """The store's asset events that started this run: each names the pipeline's run."""
        for asset, events in triggering_asset_events.items():
            print(asset.uri, [event.source_run_id for event in events])

    report()
