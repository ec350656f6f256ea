"""docker-compose.yaml agrees with the pins and settings the rest of the project uses, and its
Celery workers scale.

No Docker needed: the file is parsed and compared with requirements.txt, scripts/kafka/pom.xml
and include/pipeline/settings.py, so a version bump or a new topic that misses the compose
file fails here.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

from include.pipeline import settings
from kafka_stages.pipeline import POOL, POOL_SLOTS

ROOT = Path(__file__).resolve().parents[2]

AIRFLOW_SERVICES = (
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
)
# The long-running ones: they run or parse the DAG, so they need the extra packages.
AIRFLOW_RUNTIME_SERVICES = AIRFLOW_SERVICES[1:]
EXTRA_PACKAGES = {
    "apache-airflow-providers-apache-kafka", "confluent-kafka", "kafka-python", "msgspec", "numpy", "plotly",
    "psycopg[binary]", "apache-airflow-providers-celery", "celery[redis]", "kombu", "redis",
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"requirements.txt: not an exact pin: {line!r}"
            pins[name.strip().lower()] = version.strip()
    return pins


def _env(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "environment must be a mapping"
    return {key: str(value) for key, value in env.items()}


def _kafka_addresses(listeners: str) -> dict[str, str]:
    """'NAME://host:port,...' -> {NAME: 'host:port'}."""
    out = {}
    for item in listeners.split(","):
        name, sep, address = item.strip().partition("://")
        assert sep, f"not a listener: {item!r}"
        out[name] = address
    return out


def _topic_commands(services: dict) -> list[list[str]]:
    command = services["kafka-init"]["command"]
    script = "\n".join(command) if isinstance(command, list) else command
    return [
        shlex.split(line)
        for line in script.splitlines()
        if "kafka-topics.sh" in line and "--create" in line
    ]


def _option(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == flag]


def test_service_names(services):
    assert set(services) == {
        "kafka",
        "kafka-init",
        "postgres",
        "redis",
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "airflow-worker",
    }


def test_kafka_image_matches_pom(services):
    pom = (ROOT / "scripts" / "kafka" / "pom.xml").read_text()
    match = re.search(r"<kafka\.version>\s*([^<\s]+)\s*</kafka\.version>", pom)
    assert match, "no <kafka.version> in scripts/kafka/pom.xml"
    expected = f"apache/kafka:{match.group(1)}"
    assert services["kafka"]["image"] == expected
    assert services["kafka-init"]["image"] == expected


def test_airflow_image_matches_requirements(services, pins):
    pyproject = (ROOT / "pyproject.toml").read_text()
    python = re.search(r'requires-python\s*=\s*">=(\d+\.\d+)', pyproject)
    assert python, "no requires-python lower bound in pyproject.toml"
    expected = f"apache/airflow:{pins['apache-airflow']}-python{python.group(1)}"
    assert {name: services[name]["image"] for name in AIRFLOW_SERVICES} == dict.fromkeys(
        AIRFLOW_SERVICES, expected
    )


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_airflow_mounts(services, name):
    mounts = {}
    for volume in services[name]["volumes"]:
        source, target = volume.split(":")[:2]
        mounts[target] = source
    wanted = {f"/opt/airflow/{folder}": f"./{folder}" for folder in ("dags", "include", "plugins", "output")}
    assert {target: mounts.get(target) for target in wanted} == wanted


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_airflow_environment(services, name):
    env = _env(services[name])
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == "postgresql+psycopg2://airflow:airflow@postgres/airflow"
    # The broker is the redis service; the results go to the metadata database.
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://redis:6379/0"
    assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+" + env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
    assert env["PYTHONPATH"] == "/opt/airflow"
    assert env["PIPELINE_OUTPUT_DIR"] == "/opt/airflow/output"


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_kafka_connection_reaches_an_advertised_listener(services, name):
    env = _env(services[name])
    conn = json.loads(env["AIRFLOW_CONN_KAFKA_DEFAULT"])
    assert conn["conn_type"] == "kafka"
    bootstrap = conn["extra"]["bootstrap.servers"]

    kafka_env = _env(services["kafka"])
    advertised = _kafka_addresses(kafka_env["KAFKA_ADVERTISED_LISTENERS"])
    assert bootstrap in advertised.values()
    # Containers reach the broker by its service name, not the host's localhost.
    assert bootstrap.rpartition(":")[0] == "kafka"
    listener = next(name for name, address in advertised.items() if address == bootstrap)
    bound = _kafka_addresses(kafka_env["KAFKA_LISTENERS"])
    assert bound[listener].rpartition(":")[2] == bootstrap.rpartition(":")[2]
    # The stage code's own setting points at the same broker address.
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == bootstrap


def test_kafka_host_listener_is_published(services):
    advertised = _kafka_addresses(_env(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"])
    host = [address for address in advertised.values() if address.startswith("localhost:")]
    assert host == ["localhost:9092"]
    assert "9092:9092" in services["kafka"]["ports"]


def test_kafka_init_topics_match_settings(services):
    commands = _topic_commands(services)
    created = {}
    for argv in commands:
        (topic,) = _option(argv, "--topic")
        assert _option(argv, "--partitions") == [str(settings.DEFAULT_PARTITIONS)], topic
        assert _option(argv, "--replication-factor") == ["1"], topic
        assert "--if-not-exists" in argv, topic
        created[topic] = dict(config.split("=", 1) for config in _option(argv, "--config"))
    assert len(commands) == len(created), "a topic is created twice"
    assert created == settings.TOPIC_CONFIGS


def test_kafka_init_waits_for_a_healthy_broker(services):
    assert services["kafka-init"]["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    assert "healthcheck" in services["kafka"]


def test_extra_pip_requirements_match_requirements_txt(compose, services, pins):
    common = _env(compose["x-airflow-common"])["_PIP_ADDITIONAL_REQUIREMENTS"]
    listed = {}
    for requirement in common.split():
        name, sep, version = requirement.partition("==")
        assert sep, f"_PIP_ADDITIONAL_REQUIREMENTS: not an exact pin: {requirement!r}"
        listed[name.lower()] = version
    assert set(listed) == EXTRA_PACKAGES
    assert listed == {name: pins[name] for name in EXTRA_PACKAGES}
    for name in AIRFLOW_RUNTIME_SERVICES:
        assert _env(services[name])["_PIP_ADDITIONAL_REQUIREMENTS"] == common, name


@pytest.mark.parametrize("name", AIRFLOW_RUNTIME_SERVICES)
def test_airflow_waits_for_database_broker_init_and_topics(services, name):
    # The workers also wait for the API server: they report their tasks' states to it.
    apiserver = {"airflow-apiserver": {"condition": "service_healthy"}} if name == "airflow-worker" else {}
    assert services[name]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
        "airflow-init": {"condition": "service_completed_successfully"},
        "kafka-init": {"condition": "service_completed_successfully"},
        **apiserver,
    }
    assert "healthcheck" in services["redis"] and "healthcheck" in services["airflow-apiserver"]


def test_the_broker_is_the_redis_service_inside_the_network(services):
    redis = services["redis"]
    assert redis["image"].startswith("redis:") and redis["image"] != "redis:latest"
    assert [str(port) for port in redis["expose"]] == ["6379"]
    assert "ports" not in redis  # no host port: only the containers reach it


def test_the_worker_scales(services):
    """`docker compose up --scale airflow-worker=3`: nothing in it that only one container can have."""
    worker = services["airflow-worker"]
    assert worker["command"] == "celery worker"
    assert "container_name" not in worker and "ports" not in worker and "hostname" not in worker
    # SIGTERM to the worker alone (a warm shutdown that lets its tasks finish), not to its tasks.
    assert _env(worker)["DUMB_INIT_SETSID"] == "0"
    assert "healthcheck" in worker
    # Remote workers reach the execution API by the API server's service name and port.
    url = _env(worker)["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"]
    assert url == "http://airflow-apiserver:8080/execution/"


def test_only_the_worker_sets_dumb_init_setsid(services):
    setsid = [name for name in AIRFLOW_SERVICES if "DUMB_INIT_SETSID" in _env(services[name])]
    assert setsid == ["airflow-worker"]


def test_airflow_init_creates_the_pool_the_stages_use(services):
    script = "\n".join(services["airflow-init"]["command"])
    (line,) = [line for line in script.splitlines() if "pools set" in line]
    assert shlex.split(line)[1:6] == ["airflow", "pools", "set", POOL, str(POOL_SLOTS)]


@pytest.mark.parametrize("name", AIRFLOW_SERVICES)
def test_the_metrics_store_is_the_metrics_database_of_the_postgres_service(services, name):
    conn = json.loads(_env(services[name])["AIRFLOW_CONN_METRICS_DB"])
    postgres = _env(services["postgres"])
    assert conn == {"conn_type": "postgres", "host": "postgres", "port": 5432,
                    "login": postgres["POSTGRES_USER"], "password": postgres["POSTGRES_PASSWORD"],
                    "schema": "metrics"}


def test_airflow_init_creates_the_metrics_database_the_connection_names(services):
    script = "\n".join(services["airflow-init"]["command"])
    assert 'json.loads(os.environ["AIRFLOW_CONN_METRICS_DB"])' in script
    assert """cursor.execute('CREATE DATABASE "%s"' % conn["schema"])""" in script
    assert script.index("pools set") < script.index("CREATE DATABASE") < script.index("chown")
