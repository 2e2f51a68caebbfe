"""Notifiers: the alert emails and their text."""
