import os
import tempfile

# Airflow reads its settings at import: give the DAG tests a throwaway home of their own.
os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="airflow-home-"))
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
