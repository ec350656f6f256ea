# Quick start: `make run`, then `make test`. See README.md.
SHELL := bash
PYTHON ?= python3.11
VENV ?= .venv
DATE ?= $(shell date -u +%Y-%m-%dT%H:00:00+00:00)
CONF ?= {}

.PHONY: install lock kafka-up kafka-down redis-up redis-down observability-up observability-down airflow-celery run produce stream acls lint test test-unit test-integration test-faults test-airflow \
  test-stream test-clusters bench bench-latency bench-scheduler docs clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.lock
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is needed (Python 3.11)"; exit 1; }
	@echo "installing Python packages into $(VENV) (pinned in requirements.lock)"
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements.lock
	@touch $@

lock:
	rm -rf /tmp/kafka-pipeline-lock && $(PYTHON) -m venv /tmp/kafka-pipeline-lock
	/tmp/kafka-pipeline-lock/bin/pip install -q -r requirements.txt
	(echo "# Generated: pip freeze of a venv made from requirements.txt (Python 3.11). Regenerate with 'make lock'."; \
	  /tmp/kafka-pipeline-lock/bin/pip freeze) > requirements.lock

kafka-up: install  # a secured cluster grants its ACLs with the project's Python
	scripts/kafka/broker up

kafka-down:
	scripts/kafka/broker down

# The Celery executor's broker (PIPELINE_EXECUTOR=celery): a redis-server on 127.0.0.1:6379
# (REDIS_PORT), no persistence, its pid file and log in .redis/<port>/.
redis-up:
	@$(PYTHON) scripts/redis/local.py up

redis-down:
	@$(PYTHON) scripts/redis/local.py down

# Prometheus (127.0.0.1:9090), the Pushgateway (:9091) and Alertmanager (:9093), Debian's, with the
# alert rules of scripts/prometheus/rules.yml: scraping make stream's WORKERS (1) processes' ports from
# PIPELINE_METRICS_PORT (9464) and the Pushgateway; alerts to PIPELINE_ALERT_WEBHOOK_URL when set.
# Files in .observability/ (docs/operations/observability.md).
observability-up:
	@$(PYTHON) scripts/prometheus/local.py up --workers $(or $(WORKERS),1)

observability-down:
	@$(PYTHON) scripts/prometheus/local.py down

# Airflow with the CeleryExecutor in the foreground (Ctrl-C stops it all): the API server,
# scheduler, dag-processor, triggerer and WORKERS Celery workers, 2 by default (scripts/airflow
# celery-stack). For `make stream`, WORKERS is the processes of process and analyze (1).
WORKERS ?=
airflow-celery: install kafka-up redis-up
	scripts/airflow celery-stack $(or $(WORKERS),2)

# One whole kafka_pipeline run (airflow dags test) for the hour before DATE; the Airflow log
# goes to output/last-run.log, the summary to the terminal.
run: install kafka-up
	@mkdir -p output
	@echo "running kafka_pipeline for $(DATE) (log: output/last-run.log)"
	@scripts/airflow dags test kafka_pipeline "$(DATE)" --conf '$(CONF)' > output/last-run.log 2>&1 \
	  || { tail -n 40 output/last-run.log; echo "the run failed: see output/last-run.log"; exit 1; }
	@grep -q "state=success" output/last-run.log \
	  || { tail -n 40 output/last-run.log; echo "the run did not succeed: see output/last-run.log"; exit 1; }
	@PYTHONPATH=. $(VENV)/bin/python -m include.pipeline.run.reconcile

# Orders from outside Airflow (e.g. to start kafka_pipeline_on_orders): `make produce ORDERS=10000`.
ORDERS ?= 10000
produce: install kafka-up
	$(VENV)/bin/python scripts/produce.py --orders $(ORDERS)

# Continuous mode in the foreground: the four stages as processes, a status line every few seconds,
# Ctrl-C to stop. RATE orders a second (0: no generator); WORKERS processes of process and analyze,
# each on its share of the partitions; ARGS for more (`make stream ARGS=--help`).
RATE ?= 30
ARGS ?=
stream: install kafka-up
	$(VENV)/bin/python -m include.pipeline.stream --rate $(RATE) --workers $(or $(WORKERS),1) $(ARGS)

# The test files run on TEST_WORKERS processes (pytest-xdist), in the order tests/conftest.py
# gives them (the longest first; xdist would otherwise start the files with the most tests first).
TEST_WORKERS ?= 3
# The Kafka ACLs a principal needs to run the DAGs (DAG=... for one of them): printed, or granted
# with APPLY=1 ADMIN_CONFIG=<a librdkafka JSON config of a user allowed to alter ACLs>.
PRINCIPAL ?= User:pipeline
acls: install
	@PYTHONPATH=. $(VENV)/bin/python -m include.pipeline.kafka_io.access $(if $(APPLY),apply $(if $(ADMIN_CONFIG),--admin-config "$(ADMIN_CONFIG)"),print) \
	  --principal "$(PRINCIPAL)" $(if $(DAG),--dag $(DAG))

# Style, import order and docstrings (ruff, configured in pyproject.toml); CI runs it first.
lint: install
	$(VENV)/bin/ruff check .
	PYTHONPATH=.:plugins $(VENV)/bin/lint-imports

test: install
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=40

test-unit: install
	$(VENV)/bin/pytest tests/unit tests/scripts tests/dags tests/plugins tests/deploy

test-integration: install
	$(VENV)/bin/pytest tests/integration

# The DAGs and the Order metrics page through a real scheduler, triggerer and API server (and a
# real browser), the lag trigger alone, and a run on two Celery workers.
test-airflow: install
	$(VENV)/bin/pytest tests/integration/test_scheduler.py tests/integration/test_metrics_page.py \
	  tests/integration/test_lag_trigger.py tests/integration/test_celery.py

test-stream: install
	$(VENV)/bin/pytest tests/integration/test_stream.py

test-clusters: install
	$(VENV)/bin/pytest tests/integration/test_secured_cluster.py tests/integration/test_replicated_cluster.py

test-faults: install
	$(VENV)/bin/pytest tests/integration/test_faults_crash.py tests/integration/test_faults_rerun.py \
	  tests/integration/test_scale_out.py

# The documentation site (mkdocs.yml: docs/ and README.md's marked sections) into site/. --strict:
# a broken link or anchor, a missing page or snippet, or a page not in the nav fails it; CI runs it.
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

# Throughput and memory of each stage against client baselines (its own warmed, throwaway
# brokers), each figure the median of 3 runs. N=1000000 by default: `make bench N=200000` for a
# quicker look.
N ?= 1000000
bench: install
	$(VENV)/bin/python -m scripts.bench --n $(N)

# End-to-end latency of continuous mode at 50, 5,000 and 50,000 orders a second (its own warmed,
# throwaway broker), of every order produced after the warm-up (the stages drain at the end),
# 50,000 with 1 and 2 workers (WORKERS=N: with 1 and N): output/latency.json.
bench-latency: install
	$(VENV)/bin/python scripts/bench_latency.py $(if $(WORKERS),--workers 1 $(WORKERS))

# Whole kafka_pipeline runs as a user waits for them: scripts/airflow standalone on a throwaway
# broker, runs triggered through the REST API one after another (0 and 1,000,000 orders at 2
# workers, 3 each), start to end and POST to success, and per task where the time went.
bench-scheduler: install
	$(VENV)/bin/python -m scripts.bench.scheduler_runs --orders 0 1000000 --workers 2 --repeat 3

clean:
	rm -rf output .airflow site
