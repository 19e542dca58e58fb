"""Demo data: the bundled SA-1B-style sample that `make run` captions."""
