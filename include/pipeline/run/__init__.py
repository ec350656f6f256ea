"""A run of the pipeline as a whole: its parameters checked (``params``), the stages' typed results
(``results``, the tasks' XComs), reconcile and the run's manifest (``reconcile``), and the
summary a run prints (``summary``)."""
