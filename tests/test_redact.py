"""The one credentials-masking rule (churnlens._redact)."""

from __future__ import annotations

import pytest

from churnlens._redact import redact_uri_credentials


@pytest.mark.parametrize(("text", "expected"), [
    ("postgresql://u:p@h/db", "postgresql://u:***@h/db"),
    ("cannot download models:/x from postgresql+psycopg2://user:pa/ss:w@db:5432/m: refused",
     "cannot download models:/x from postgresql+psycopg2://user:***@db:5432/m: refused"),
    ("'mysql://:secret@h' and https://a:b@c.example/x",
     "'mysql://:***@h' and https://a:***@c.example/x"),
    # nothing to mask: no password, no credentials, or not a URI's credentials
    ("sqlite:///mlflow.db", "sqlite:///mlflow.db"),
    ("https://token@github.com/x", "https://token@github.com/x"),
    ("http://host:8080/path then mail me@example.com", "http://host:8080/path then mail "
                                                       "me@example.com"),
    ("models:/churnlens@champion", "models:/churnlens@champion"),
])
def test_passwords_in_uris_are_masked(text: str, expected: str) -> None:
    assert redact_uri_credentials(text) == expected


def test_the_registry_messages_mask_the_tracking_uri() -> None:
    from churnlens._registry import _not_registered

    message = str(_not_registered("models:/churnlens@champion", "postgresql://u:p@h/db"))
    assert "postgresql://u:***@h/db" in message and "u:p@" not in message
