"""Credentials out of messages: the one rule for URIs with a user and a password.

A tracking store can be ``postgresql://user:password@host/db``; such a URI reaches
error messages, the API's ``/reload`` answer and the server log. Every place that
puts a URI (or an exception text that may hold one) into a message passes it through
:func:`redact_uri_credentials` first.
"""

from __future__ import annotations

import re

__all__ = ["redact_uri_credentials"]

# scheme://user:password@ -> scheme://user:***@ (the password: anything up to the first
# "@" on the same word; the user: no "/", ":" or "@").
_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^\s/:@]*):[^\s@]*@")


def redact_uri_credentials(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@host`` URI masked.

    Parameters
    ----------
    text
        A URI, or a message that may contain URIs.

    Returns
    -------
    str
        The same text, each ``scheme://user:password@`` written ``scheme://user:***@``.

    Examples
    --------
    >>> redact_uri_credentials("no model at postgresql://u:s3cret@db.local/mlflow")
    'no model at postgresql://u:***@db.local/mlflow'
    >>> redact_uri_credentials("sqlite:///mlflow.db")
    'sqlite:///mlflow.db'
    """
    return _CREDENTIALS.sub(r"\g<head>:***@", text)
