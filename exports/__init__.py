"""Exports of bars and features to files."""
