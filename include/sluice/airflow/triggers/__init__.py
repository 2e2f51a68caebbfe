"""Triggers the sensors defer to (run in the triggerer)."""
