"""Pseudonymous patient keys: a keyed hash, so outputs never carry identifiers."""

from __future__ import annotations

import hashlib
import hmac
import os

#: Environment variable holding the study's secret key.
KEY_ENVIRONMENT_VARIABLE = "CALCITRACK_PSEUDONYM_KEY"
#: Used when no key is configured: stable across runs, but anyone can recompute it, so a study
#: that shares outputs must set its own key.
DEFAULT_KEY = "calcitrack-default-pseudonym-key"


def patient_key(patient_id: str | None, issuer: str | None = None,
                key: str | None = None) -> str | None:
    """Return a 16-hex-digit pseudonym for a patient, or None without a Patient ID.

    Parameters
    ----------
    patient_id : str or None
        Patient ID (0010,0020).
    issuer : str or None
        Issuer of Patient ID (0010,0021): the same ID from two issuers is two patients.
    key : str or None
        Secret key; defaults to ``$CALCITRACK_PSEUDONYM_KEY``, then to `DEFAULT_KEY`.

    Examples
    --------
    >>> patient_key("12345", key="k") == patient_key("12345", key="k")
    True
    >>> patient_key("12345", key="k") != patient_key("12345", "other", key="k")
    True
    """
    patient_id = (patient_id or "").strip()
    if not patient_id:
        return None
    secret = resolve_key(key)
    message = f"{patient_id}\x1f{(issuer or '').strip()}".encode("utf-8", "surrogateescape")
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:16]


def resolve_key(key: str | None = None) -> str:
    """The secret in use: `key`, else ``$CALCITRACK_PSEUDONYM_KEY``, else `DEFAULT_KEY`.

    Resolve it once where a run starts and pass it on: workers of a cluster do not share the
    environment of the machine that started the run.
    """
    return key or os.environ.get(KEY_ENVIRONMENT_VARIABLE) or DEFAULT_KEY
