"""Reference data files and their loader (and, later, the demo generator)."""
