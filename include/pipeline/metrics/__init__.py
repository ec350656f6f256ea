"""The pipeline's Prometheus metrics: their definitions (``catalogue``, the one place for their
names, help, labels and buckets, on a registry of the package's own), what the stages count with
once per batch (``counting``), and how a process hands them over: a bounded task pushes them to a
Pushgateway (``push``), a continuous-mode stage process serves them on /metrics (``serving``).

Below the stages and above the domain: the Kafka and store edges count here, the domain knows
nothing of it. The names are a contract with the alert rules and the local stack
(docs/operations/observability.md)."""
