"""The ``m1-eval`` command (demo, doctor, tiny model)."""
