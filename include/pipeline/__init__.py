"""Stage logic of the kafka_pipeline DAG: plain Python, no Airflow imports."""
