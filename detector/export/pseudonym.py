"""Salted pseudonyms for tenant and session ids in metric labels."""

from __future__ import annotations

import hashlib
import hmac

import pandas as pd


def pseudonymize(ids: pd.Series, salt: str | None, prefix: str) -> pd.Series:
    """``prefix`` + the first 16 hex digits of HMAC-SHA256(salt, id); ids unchanged without salt.

    The same salt gives the same pseudonym in every run, so dashboards and alert history stay
    joinable; without the salt the id cannot be recovered or confirmed.
    """
    if salt is None:
        return ids.astype(str)
    key = salt.encode()
    mapping = {
        value: prefix + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:16]
        for value in ids.astype(str).unique()
    }
    return ids.astype(str).map(mapping)
