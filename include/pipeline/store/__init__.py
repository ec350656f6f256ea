"""What the pipeline keeps outside Kafka: the metrics store (SQLite or PostgreSQL, ``metrics_store``,
its changes computed in ``changes``), the metrics.json export (``export``), and the dedup set's
runs spilled to disk (``spill``)."""
