"""Serving simulation."""
