"""The kafka_pipeline's code: plain Python, no Airflow imports. Packages by role, each importing
only those below it (``make lint`` checks it, pyproject.toml's ``[tool.importlinter]``):

- ``stream``, ``view``: continuous mode; the data of the Order metrics page;
- ``stages``: a module per stage, the Kafka edge around the per-batch steps;
- ``kafka_io``, ``store``, ``run``: Kafka clients, reads and transactions; the metrics store;
  a run's results, reconcile and manifests;
- ``topology``, ``settings``: the stages' topics and groups; topic names and runtime settings;
- ``domain``: the orders, their windows and the steps that turn a batch into outputs, pure
  (no Kafka client, no SQL, no environment, no disk).
"""
