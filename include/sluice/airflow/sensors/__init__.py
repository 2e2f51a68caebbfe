"""Sensors: the wait for a batch file."""
