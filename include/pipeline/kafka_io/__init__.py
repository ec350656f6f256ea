"""Kafka at the stages' edges, by role (as the Airflow Kafka provider splits its hooks):

- ``client``: ``Kafka``, the clients of one cluster from one librdkafka config, and failing fast;
- ``errors``: Kafka not answering (an ``Outage``, waited through) or refusing (``Misconfigured``);
- ``admin``: the topics, and their offsets;
- ``reading``: a stage's input, bounded or following (``BoundedRead``, ``Follow``);
- ``writing``: producing, and a batch's transaction (``Transactions``, the unit of work);
- ``lag_probe``, ``lag``: the offsets that consumer lag is made of, and the lag itself;
- ``access``: what the principal may do (ACLs), checked before a stage starts.

A stage reads what its consumer group has not committed yet, either bounded (up to the end of the
topic as it was when the stage started, then it returns: the Airflow tasks) or following the topic
(continuous mode, until told to stop or to finish).
"""
