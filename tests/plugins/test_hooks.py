import json

import pytest

from kafka_stages.hooks import MetricsDbHook, PipelineKafkaHook


def test_no_metrics_db_connection_means_the_embedded_sqlite_store(monkeypatch, tmp_path):
    monkeypatch.delenv("AIRFLOW_CONN_METRICS_DB", raising=False)
    monkeypatch.setenv("PIPELINE_OUTPUT_DIR", str(tmp_path))
    store = MetricsDbHook().get_store()
    assert (store.name, store.origin) == (
        f"sqlite:///{tmp_path}/metrics.db", "no 'metrics_db' connection: the default"
    )


def test_a_postgres_connection_becomes_a_psycopg_url_with_its_extra_as_query(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_METRICS_DB", json.dumps({
        "conn_type": "postgres", "host": "db.example", "port": 5433, "login": "pipeline",
        "password": "s3cret", "schema": "metrics", "extra": {"sslmode": "require"},
    }))
    store = MetricsDbHook().get_store()
    assert store.url.render_as_string(hide_password=False) == (
        "postgresql+psycopg://pipeline:s3cret@db.example:5433/metrics?sslmode=require"
    )
    assert (store.name, store.origin) == ("postgresql+psycopg://pipeline:***@db.example:5433/metrics",
                                          "connection 'metrics_db'")


def test_a_sqlite_connection_names_its_file(monkeypatch, tmp_path):
    monkeypatch.setenv(
        "AIRFLOW_CONN_OTHER_STORE", json.dumps({"conn_type": "sqlite", "host": f"{tmp_path}/m.db"})
    )
    assert MetricsDbHook("other_store").get_store().name == f"sqlite:///{tmp_path}/m.db"


def test_a_connection_of_another_type_is_refused_with_the_types_it_takes(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_METRICS_DB", json.dumps({"conn_type": "mysql", "host": "db"}))
    with pytest.raises(ValueError, match="connection 'metrics_db' has type 'mysql': the metrics store "
                                         "takes a 'postgres' or 'sqlite' connection"):
        MetricsDbHook().get_store()


def test_a_kafka_connection_is_its_extra_as_the_librdkafka_config(monkeypatch):
    extra = {"bootstrap.servers": "broker:9093", "security.protocol": "SASL_SSL", "sasl.username": "pipeline"}
    monkeypatch.setenv("AIRFLOW_CONN_KAFKA_DEFAULT", json.dumps({"conn_type": "kafka", "extra": extra}))
    kafka = PipelineKafkaHook().get_kafka()
    assert (kafka.config, kafka.origin) == (extra, "the kafka_default connection")


def test_a_kafka_connection_without_brokers_says_what_to_add(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_OTHER", json.dumps({"conn_type": "kafka", "extra": {"client.id": "x"}}))
    with pytest.raises(ValueError, match="^the other connection has no bootstrap.servers in its extra: add"):
        PipelineKafkaHook("other").get_kafka()


def test_a_callback_path_is_imported_only_when_the_allowlist_lists_it(monkeypatch):
    extra = {"bootstrap.servers": "broker:9093", "oauth_cb": "json.dumps"}
    monkeypatch.setenv("AIRFLOW_CONN_KAFKA_DEFAULT", json.dumps({"conn_type": "kafka", "extra": extra}))
    monkeypatch.setenv("AIRFLOW__APACHE_KAFKA__CALLBACK_ALLOWLIST", "os.getcwd")
    with pytest.raises(
        ValueError, match=r"asks for oauth_cb='json.dumps', which \[apache_kafka\] callback_allowlist"
    ):
        PipelineKafkaHook().get_kafka()
    monkeypatch.setenv("AIRFLOW__APACHE_KAFKA__CALLBACK_ALLOWLIST", "os.getcwd, json.dumps")
    assert PipelineKafkaHook().get_kafka().config["oauth_cb"] is json.dumps
