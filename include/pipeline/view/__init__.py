"""What the Order metrics page shows (``dashboard``): the store's windows, each stage's lag and the
dead letters by reason, read without writing anything."""
