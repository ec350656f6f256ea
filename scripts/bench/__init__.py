"""make bench: throughput and memory of each stage against client baselines, in one run.

``python -m scripts.bench`` (--help: its options) starts a throwaway local broker
(scripts/kafka/broker on free ports, data in a temp dir), then:
  1. baselines with confluent-kafka (the stages' client): consume-only, and consume -> produce of
     the same bytes, over the same N orders (baselines);
  2. each stage alone (generate, process, analyze, sink) over N orders, transactions and
     read_committed on, in a fresh process so its peak RSS is its own (child, measure); again at
     N/10 (series);
  3. a whole kafka_pipeline run of N orders with `airflow dags test --use-executor` (the
     LocalExecutor, its task instances in parallel, and an API server for them): wall time, and
     how much of it is Airflow rather than the stages (dag_runs);
  4. scaling: process and analyze as 1, 2 and 3 workers (a process each, on their shares of the
     partitions, started together) over the same N orders on a fresh broker each (its JIT warmed
     by the same volume copied through it once), with the raw consume baseline of that broker
     and each worker's peak RSS at N and N/10; and the whole DAG run at 1 and 2 workers (scaling);
  5. sink_history: the sink applying one run's changes (1,000 window records) onto a metrics
     store that already holds 0, 100,000, 1,000,000 and 2,628,000 rows (a year; filled
     directly), on SQLite and on PostgreSQL (a throwaway server), in a fresh process each, with
     the Order metrics page's default range read at each size; and reconcile at the largest.
Prints a table and writes output/bench.json (results: its typed parts; render: the tables).
"""
