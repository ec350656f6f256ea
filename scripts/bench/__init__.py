"""make bench: throughput and memory of each stage against client baselines, in one run.

``python -m scripts.bench`` (--help: its options) times everything on throwaway local brokers
(scripts/kafka/broker on free ports, data in a temp dir), each warmed up first the same way
(warm_up: N orders through its produce, fetch and transaction paths, on topics of the bench's
own), over the DAG's input mix (its default invalid_ratio, from the params catalogue) unless
said otherwise:
  1. baselines with confluent-kafka (the stages' client): consume-only, and consume -> produce of
     the same bytes, over the same N orders (baselines);
  2. each stage alone (generate, process, analyze, sink) over N orders, transactions and
     read_committed on, in a fresh process so its peak RSS is its own (child, measure); again at
     N/10; all of it also for the best case, no invalid order (series);
  3. a whole kafka_pipeline run of N orders with `airflow dags test --use-executor` (the
     LocalExecutor, its task instances in parallel, and an API server for them): wall time, and
     how much of it is Airflow rather than the stages; at 1 and 2 workers, and the best case at 1
     (dag_runs);
  4. scaling: process and analyze as 1, 2 and 3 workers (a process each, on their shares of the
     partitions, started together) over the same N orders on a fresh broker each, with the raw
     consume baseline of that broker and each worker's peak RSS at N and N/10 (scaling); and the
     throughput a model predicts from one worker's CPU and the broker's a record, against them
     (model: also for a cluster, from a bench.json);
  5. sink_history: the sink applying one run's changes (1,000 window records) onto a metrics
     store that already holds 0, 100,000, 1,000,000 and 2,628,000 rows (a year; filled
     directly), on SQLite and on PostgreSQL (a throwaway server), in a fresh process each, with
     the Order metrics page's default range read at each size; and reconcile at the largest.
Parts 1 to 4 run --repeats times (3), the mixes and configurations taking turns, each on fresh
brokers; part 5 once, each of its figures over as many runs. A figure is the median of its runs
with their spread (min-max); a rate is the records a step read (generate: wrote) a second, and
the bench stops, saying which, if a step read other than it should (counts). Each step's CPU and
the broker's over it (measure) are per record read too.
Prints a table and writes output/bench.json (results: its typed parts; render: the tables).
"""
