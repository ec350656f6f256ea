"""Airflow side of the pipeline: a hook and an operator on top of the Apache Kafka provider."""
