"""What the tests share, imported by test modules and conftest.py files (which keep fixtures only);
no test module imports another (tests/unit/test_test_imports.py).

- pipeline.py: ``Pipeline``, the pipeline a test drives (its broker, Airflow home and output dir;
  its DAGs and tasks in this process or through scripts/airflow; kafka-python to read what it
  wrote), ``Record``, ``pipeline_on`` (a cluster of a test's own), ``fresh_pipeline`` (the pytest
  process's shared broker emptied for a test), ``airflow_env``, ``ROOT``.
- in_process.py: Airflow inside the pytest worker (`dags test`, `tasks test`), on its metadata DB.
- stage_process.py: a stage in a process of its own without Airflow (``python -m``), to kill.
- live_airflow.py: a real Airflow (`scripts/airflow standalone` or `celery-stack`) on free ports,
  driven through the REST API (``LiveAirflow``, ``live_stack``).
- live_runs.py: runs on a live Airflow (a stream run, the bounded runs drained) and the checks
  after them (no open transaction, every order once).
- task_logs.py: what a live Airflow's task logs end with (``check_task_logs``).
- expected.py: the oracle's outcome (tests/oracle.py) and the checks that compare the pipeline's
  topics and store with it (``assert_as_the_oracle_says``, ``check_metrics``).
- faults.py: the fault tests' input, a stage frozen mid-batch and looked at from outside, and
  the input its restart must judge.
- factories.py: test data: ``order_value`` (the one order builder), ``order``, ``metric``, ``ZOO``.
- strategies.py: hypothesis strategies of record values for the batch path's property tests.
- dag_tasks.py: a DAG task's operator arguments and kind, for the DAG tests.
"""
