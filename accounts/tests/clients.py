"""Test clients signed in the way the web pages are: by session."""

from __future__ import annotations

from typing import Any

from django.test import Client


def logged_in(user: Any) -> Client:
    """A test client with `user`'s session (no password needed)."""
    client = Client()
    client.force_login(user)
    return client
