"""Continuous mode (``make stream``): generate, process, analyze and sink following their topics,
each in a process of its own under one supervisor, in the foreground.

    python -m include.pipeline.stream [--rate 30] [--commit-interval-ms 100] [--seconds S]

Every ``--status-seconds`` it prints one line: orders a second into and out of each stage, each
stage's lag and the end-to-end latency (p50, p99) of the orders whose totals became visible in
that interval. Ctrl-C (SIGINT) or SIGTERM stops it: each stage commits the batch it is on, or
aborts it, and exits; then a summary is printed. A stage process that dies is restarted, with
backoff. With ``--generate-seconds`` the generator stops after that long; then each stage, once
the ones before it have ended, is told to finish (a line on its standard input): it reads its
input to the end and exits, and the supervisor exits once all have.

The stage processes run this module with ``--worker STAGE``: they report each committed batch
as a ``telemetry.Tick`` line on standard output and stop when the supervisor has gone (they are
reparented) as when signalled (``shutdown``).

- ``__main__``: the command line;
- ``worker``: one stage in its process;
- ``processes``: the stage processes, restarted with backoff, and their reports;
- ``supervisor``: the loop that runs them, watches lag and stops them;
- ``report``: the status lines and the summary.
"""
