"""The Kafka ACLs the pipeline's principal needs, least privilege, and checking them early.

The one list: the table of docs/reference/kafka-acls.md is rendered from it (``python -m
include.pipeline.kafka_io.access table``), ``make acls`` prints or applies it for a principal, and
every stage checks the ACLs it needs before it reads or writes, so a missing one fails the task at
once, naming itself, instead of a timeout half-way through. Read and Write include Describe, which
the lag sensor and the event-driven DAG's watcher need (offsets only); a transactional id's Write
cannot be checked without fencing, so it is named when the producer starts.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Iterable

import msgspec
from confluent_kafka import KafkaError, KafkaException, Producer, TopicCollection
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from include.pipeline import settings, topology
from include.pipeline.kafka_io.client import TIMEOUT, Kafka
from include.pipeline.kafka_io.errors import Misconfigured

ACL_LIST = "docs/reference/kafka-acls.md"  # the page of the table below, named in a denial
PREFIX = topology.group("")  # every group and transactional id of the pipeline starts with it


class Grant(msgspec.Struct, frozen=True, order=True):
    """One ACL: allow ``operation`` on a resource, by its name or by a name prefix."""

    resource: str  # "topic" | "group" | "transactional-id"
    name: str
    operation: str  # "Create" | "Read" | "Write"
    prefixed: bool = False

    def __str__(self) -> str:
        names = (
            f"{self.resource}s prefixed {self.name!r}" if self.prefixed else f"{self.resource} {self.name!r}"
        )
        return f"{self.operation} on {names}"


class AccessDenied(Misconfigured):
    """The principal lacks ACLs; no retry grants them."""

    def __init__(self, principal: str, missing: list[Grant]) -> None:
        self.missing = missing
        super().__init__(
            f"Kafka denies {principal} {', '.join(map(str, missing))}: grant "
            f"{'it' if len(missing) == 1 else 'them'} (the ACL list: {ACL_LIST}; "
            f"`make acls PRINCIPAL={principal if principal.startswith('User:') else 'User:<name>'}` "
            "prints it, with APPLY=1 applies it)"
        )


def _topics(operation: str, *names: str) -> tuple[Grant, ...]:
    return tuple(Grant("topic", name, operation) for name in names)


GROUPS = Grant("group", PREFIX, "Read", prefixed=True)
TRANSACTIONS = Grant("transactional-id", PREFIX, "Write", prefixed=True)


def _grants(stage: topology.Stage) -> tuple[Grant, ...]:
    """What a stage of the topology does with which resource."""
    return (
        *_topics("Read", *stage.topics_read), *_topics("Write", *stage.outputs),
        *((GROUPS,) if stage.topics_read else ()), *((TRANSACTIONS,) if stage.transactional else ()),
    )


# Who needs which ACLs: the stages, the task that creates the topics, and the Order metrics page.
GRANTS: dict[str, tuple[Grant, ...]] = {
    "create_topics": _topics("Create", *settings.TOPIC_CONFIGS),  # only while a topic is missing
    **{name: _grants(stage) for name, stage in topology.STAGES.items()},
    "metrics_page": (*_topics("Read", settings.DLQ), GROUPS),
}
_PIPELINE, _CONSUMING = topology.names(topology.PIPELINE), topology.names(topology.CONSUMING)
USERS: dict[str, tuple[str, ...]] = {
    "kafka_pipeline": ("create_topics", *_PIPELINE),
    "kafka_pipeline_on_orders": ("create_topics", *_CONSUMING),
    "kafka_pipeline_stream": ("create_topics", *_PIPELINE),
    "kafka_pipeline_replay": (topology.REPLAY.name, topology.SINK.name),
    "metrics_page": ("metrics_page",),
}


def needs(*stages: str) -> list[Grant]:
    """The ACLs of these stages, each once, in a stable order."""
    return sorted({grant for stage in stages for grant in GRANTS[stage]})


def principal(kafka: Kafka) -> str:
    """Who the client is to Kafka, for messages: ``User:`` and its SASL username, when it has one."""
    user = kafka.config.get("sasl.username")
    return f"User:{user}" if user else "this client's principal"


_OPERATIONS = {"Create": AclOperation.CREATE, "Read": AclOperation.READ, "Write": AclOperation.WRITE}
_RESOURCES = {
    "topic": ResourceType.TOPIC, "group": ResourceType.GROUP,
    "transactional-id": ResourceType.TRANSACTIONAL_ID,
}


def ready(kafka: Kafka, stages: Iterable[str] = ()) -> None:
    """Fail fast, before anything is read or written: the cluster answers and takes the
    credentials (``Kafka.check``), and the principal holds the ACLs ``stages`` need."""
    kafka.check()
    if stages:
        check(kafka, tuple(stages))


def check(kafka: Kafka, stages: tuple[str, ...]) -> None:
    """Raise ``AccessDenied`` naming every topic and group ACL of ``stages`` the principal
    lacks, from what the brokers say it may do (Create only matters to a missing topic and is
    checked by creating it). Nothing is read, written or joined."""
    grants = [grant for grant in needs(*stages) if grant.operation != "Create"]
    missing = _missing_on_topics(kafka, [g for g in grants if g.resource == "topic"])
    if any(g.resource == "group" for g in grants):
        missing += _missing_on_group(kafka, [g for g in grants if g.resource == "group"])
    if missing:
        raise AccessDenied(principal(kafka), missing)


def _missing_on_topics(kafka: Kafka, grants: list[Grant]) -> list[Grant]:
    names = sorted({grant.name for grant in grants})
    if not names:
        return []
    allowed: dict[str, set] = {}
    admin = kafka.admin()
    futures = admin.describe_topics(
        TopicCollection(names), request_timeout=TIMEOUT, include_authorized_operations=True,
    )
    for name, future in futures.items():
        try:
            allowed[name] = set(future.result().authorized_operations or ())
        except KafkaException as exc:
            code = exc.args[0].code()
            if code == KafkaError.UNKNOWN_TOPIC_OR_PART:
                continue  # the stage says so itself: "run the create_topics task first"
            if code != KafkaError.TOPIC_AUTHORIZATION_FAILED:
                raise
            allowed[name] = set()  # not even Describe
    return [g for g in grants if g.name in allowed and _OPERATIONS[g.operation] not in allowed[g.name]]


_COORDINATOR_NOT_READY = {
    KafkaError._TIMED_OUT, KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError.NOT_COORDINATOR,
}


def _missing_on_group(kafka: Kafka, grants: list[Grant]) -> list[Grant]:
    # The prefix's first group stands for all of them: an ACL on the prefix covers each alike.
    group = topology.PROCESS.group

    def describe():
        admins, ends = [], time.monotonic() + TIMEOUT
        while True:  # in short tries, each with a new client: on a fresh cluster the first can hang
            # (librdkafka 2.16) while the offsets topic is made. Each stays referenced: a collected
            # client cancels its futures.
            admins.append(admin := kafka.admin())
            futures = admin.describe_consumer_groups(
                [group], request_timeout=5, include_authorized_operations=True,
            )
            try:
                return futures[group].result()
            except KafkaException as exc:
                if exc.args[0].code() not in _COORDINATOR_NOT_READY or time.monotonic() > ends:
                    raise
                time.sleep(0.2)

    try:
        allowed = set(describe().authorized_operations or ())
    except KafkaException as exc:
        if exc.args[0].code() != KafkaError.GROUP_AUTHORIZATION_FAILED:
            raise
        allowed = set()
    return [grant for grant in grants if _OPERATIONS[grant.operation] not in allowed]


def init_transactions(kafka: Kafka, producer: Producer) -> None:
    """``producer.init_transactions``, with a missing transactional-id ACL named."""
    try:
        producer.init_transactions(TIMEOUT)
    except KafkaException as exc:
        if exc.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
            raise AccessDenied(principal(kafka), [TRANSACTIONS]) from None
        raise


def _acl(grant: Grant, principal_name: str) -> tuple:
    return (
        _RESOURCES[grant.resource], grant.name,
        ResourcePatternType.PREFIXED if grant.prefixed else ResourcePatternType.LITERAL,
        principal_name, "*", _OPERATIONS[grant.operation], AclPermissionType.ALLOW,
    )


def apply(admin_kafka: Kafka, principal_name: str, grants: list[Grant]) -> None:
    """Create the ACLs of ``grants`` for a principal, from any host (an admin's client)."""
    admin = admin_kafka.admin()  # held until the futures are done: a collected client cancels them
    acls = [AclBinding(*_acl(grant, principal_name)) for grant in grants]
    for future in admin.create_acls(acls, request_timeout=TIMEOUT).values():
        future.result()


def revoke(admin_kafka: Kafka, principal_name: str, grants: list[Grant]) -> None:
    """Delete the ACLs of ``grants`` for a principal (an admin's client)."""
    admin = admin_kafka.admin()
    filters = [AclBindingFilter(*_acl(grant, principal_name)) for grant in grants]
    for future in admin.delete_acls(filters, request_timeout=TIMEOUT).values():
        future.result()


def table() -> str:
    """The table of docs/reference/kafka-acls.md: one row per ACL, with who needs it."""
    users = {grant: [u for u, stages in USERS.items() if grant in needs(*stages)] for grant in needs(*GRANTS)}
    rows = ["| Resource | Pattern | Operation | Needed by (stages) | DAGs |", "|---|---|---|---|---|"]
    for grant, who in users.items():
        stages = [stage for stage, grants in GRANTS.items() if grant in grants and stage != "metrics_page"]
        dags = ", ".join(
            u if u == "metrics_page" else u.removeprefix("kafka_pipeline").lstrip("_") or "hourly"
            for u in who
        )
        pattern = f"prefix `{grant.name}`" if grant.prefixed else f"`{grant.name}`"
        rows.append(
            f"| {grant.resource} | {pattern} | {grant.operation} | {', '.join(stages) or '-'} | {dags} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    """The command line: print or apply a principal's ACLs, or print the docs' ACL table."""
    parser = argparse.ArgumentParser(
        prog="python -m include.pipeline.kafka_io.access", description=__doc__.splitlines()[0]
    )
    parser.add_argument("action", choices=("print", "apply", "table"))
    parser.add_argument("--principal", default="User:pipeline", help="e.g. User:pipeline (default)")
    parser.add_argument(
        "--dag", choices=sorted(USERS), help="only what this DAG (or the page) needs; default all"
    )
    parser.add_argument(
        "--admin-config", type=Path, help="apply: a JSON librdkafka config of a user allowed to alter ACLs"
    )
    args = parser.parse_args(argv)
    grants = needs(*USERS[args.dag]) if args.dag else needs(*GRANTS)
    if args.action == "table":
        print(table())
    elif args.action == "print":
        for grant in grants:
            print(f"{args.principal}: allow {grant}")
    else:
        if args.admin_config is None:
            parser.error("apply needs --admin-config FILE (make acls: ADMIN_CONFIG=FILE)")
        try:
            admin = Kafka(json.loads(args.admin_config.read_text()), origin=str(args.admin_config))
        except (OSError, ValueError) as exc:
            parser.error(f"--admin-config: {exc}")
        try:
            ready(admin)
            apply(admin, args.principal, grants)
        except (ConnectionError, ValueError, KafkaException) as exc:  # no traceback for a wrong config
            print(f"granting {args.principal} its ACLs failed: {exc}", file=sys.stderr)
            return 1
        print(f"granted {args.principal} {len(grants)} ACLs", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
