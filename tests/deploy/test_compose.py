"""docker-compose.yaml agrees with the pins and settings the rest of the project uses, and its
Celery workers scale.

No Docker needed: the file is parsed and compared with requirements.txt, scripts/kafka/pom.xml,
include/pipeline/settings.py and scripts/prometheus/ (its configs, and Debian's versions of the
stack where they are installed), so a version bump or a new topic that misses the compose file
fails here.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from include.pipeline import settings
from kafka_stages.pipeline import POOL, POOL_SLOTS
from scripts.prometheus import configs
from scripts.prometheus import local as observability

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
        "prometheus",
        "pushgateway",
        "alertmanager",
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


# The stack's images: the versions of Debian 12's packages, which make observability-up and the
# tests run, so the rules and configs are tested against the versions compose runs.
STACK_IMAGES = {
    "prometheus": ("prom/prometheus:v2.42.0", observability.PROMETHEUS),
    "pushgateway": ("prom/pushgateway:v1.5.1", observability.PUSHGATEWAY),
    "alertmanager": ("prom/alertmanager:v0.25.0", observability.ALERTMANAGER),
}
COMPOSE_CONFIGS = ROOT / "scripts" / "prometheus" / "compose"


def _mounts(service: dict) -> dict[str, str]:
    """target -> source of a service's bind mounts and volumes."""
    return {volume.split(":")[1]: volume.split(":")[0] for volume in service.get("volumes", [])}


@pytest.mark.parametrize("name", STACK_IMAGES)
def test_the_stack_images_are_debians_versions(services, name):
    image, component = STACK_IMAGES[name]
    assert services[name]["image"] == image
    binary = shutil.which(component.binary)
    if binary:  # where Debian's package is installed (CI: .ci/run installs it)
        version = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
        found = re.search(r"version (\d+\.\d+\.\d+)", version.stdout + version.stderr)
        assert found and image.endswith(f":v{found.group(1)}")


def test_the_stack_configs_are_what_local_py_writes():
    written = {path.name: path.read_text() for path in COMPOSE_CONFIGS.glob("*.yml")}
    assert written == {
        name: configs.COMPOSE_HEADER + json.dumps(config, indent=2) + "\n"
        for name, config in configs.compose_configs().items()
    }, "run `python3 scripts/prometheus/local.py compose`"


def test_prometheus_mounts_its_config_and_the_rules_and_reaches_the_stream_on_the_host(services):
    prometheus = services["prometheus"]
    assert _mounts(prometheus) == {
        "/etc/prometheus/prometheus.yml": "./scripts/prometheus/compose/prometheus.yml",
        "/etc/prometheus/rules.yml": "./scripts/prometheus/rules.yml",
        "/prometheus": "prometheus-data",
    }
    assert prometheus["extra_hosts"] == ["host.docker.internal:host-gateway"]
    config = yaml.safe_load((COMPOSE_CONFIGS / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    groups = jobs["kafka_pipeline_stream"]["static_configs"]
    stream = [target for group in groups for target in group["targets"]]
    assert stream == [f"host.docker.internal:{9464 + i}" for i in range(4)]
    assert jobs["pushgateway"]["honor_labels"] is True


def test_the_tasks_push_to_the_pushgateway_prometheus_scrapes(services):
    config = yaml.safe_load((COMPOSE_CONFIGS / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    (target,) = jobs["pushgateway"]["static_configs"][0]["targets"]
    assert target == "pushgateway:9091" and "9091:9091" in services["pushgateway"]["ports"]
    for name in AIRFLOW_SERVICES:
        assert _env(services[name])["PIPELINE_PUSHGATEWAY_URL"] == f"http://{target}", name
    (alertmanager,) = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert alertmanager == "alertmanager:9093" and "9093:9093" in services["alertmanager"]["ports"]


def test_alertmanager_posts_to_the_webhook_url_of_the_environment(services):
    alertmanager = services["alertmanager"]
    assert _env(alertmanager)["PIPELINE_ALERT_WEBHOOK_URL"] == "${PIPELINE_ALERT_WEBHOOK_URL:-}"
    assert _mounts(alertmanager) == {"/etc/pipeline": "./scripts/prometheus/compose"}
    script = alertmanager["command"][0]
    placeholder = configs.WEBHOOK_PLACEHOLDER
    assert f'sed "s|{placeholder}|$${{PIPELINE_ALERT_WEBHOOK_URL}}|" /etc/pipeline/alertmanager-webhook.yml' \
        in script
    assert "cp /etc/pipeline/alertmanager.yml /alertmanager/alertmanager.yml" in script
    webhook = yaml.safe_load((COMPOSE_CONFIGS / "alertmanager-webhook.yml").read_text())
    assert webhook["receivers"][0]["webhook_configs"][0]["url"] == placeholder


@pytest.mark.skipif(
    shutil.which("promtool") is None or shutil.which("amtool") is None,
    reason="promtool or amtool not found: `apt-get install prometheus prometheus-alertmanager`",
)
def test_promtool_and_amtool_accept_the_stack_configs(tmp_path):
    """promtool reads the rule files too: the config here names the repository's rules.yml."""
    config = (COMPOSE_CONFIGS / "prometheus.yml").read_text()
    rules = str(ROOT / "scripts" / "prometheus" / "rules.yml")
    (tmp_path / "prometheus.yml").write_text(config.replace("/etc/prometheus/rules.yml", rules))
    checks = [["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
              ["amtool", "check-config", *map(str, sorted(COMPOSE_CONFIGS.glob("alertmanager*.yml")))]]
    for check in checks:
        result = subprocess.run(check, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
