"""The pipeline's rules, pure: no Kafka client, no SQL, no environment, no disk.

- ``orders``, ``order_columns``, ``codec``, ``money``, ``timestamps``, ``reasons``: an order as
  the data contract has it, parsed one at a time or a batch into columns;
- ``catalogue``: the products and the window size;
- ``windows``, ``analyzer``, ``dedup``: tumbling windows, counting each order once, and the set
  of ids counted;
- ``steps``: a batch of records in, the records, dead letters and state changes out;
- ``state_codec``, ``dead_letters``, ``telemetry``, ``record``: the formats of the state
  changelog, dead letters and latency headers, and the record shape they read;
- ``generator``: realistic orders; ``assignment``: a worker's share of the partitions.
"""
