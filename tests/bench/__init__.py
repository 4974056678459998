"""Figures of the operator's hot paths, printed by ``make bench``; not a test suite."""
