"""Redaction of credentials in everything autotune writes or logs.

One module so the results files, ``autotune dgd``, log records and error messages agree on what
counts as a credential: the value after a flag or variable whose name has a word like token, key,
secret, password or auth (``--hf-token X``, ``--api-key=X``, ``HF_TOKEN=X``), ``hf_...`` Hugging
Face tokens, ``Bearer ...`` headers and the password of ``user:pass@`` in URLs. Plain numbers are
never redacted (``--kv-bytes-per-token 131072`` is not a credential). Values given as secret
references (``{secret: NAME, key: KEY}`` in a profile) never reach autotune in the first place.
"""

from __future__ import annotations

import logging
import re
from typing import Any

REDACTED = "<redacted>"
_WORDS = {
    "token",
    "key",
    "apikey",
    "secret",
    "password",
    "passwd",
    "pass",
    "pwd",
    "auth",
    "authorization",
    "credential",
    "credentials",
}
# mapping keys that name a secret (a reference), not hold one
_REF_KEYS = {"key", "secret", "secrets", "secretkeyref", "secretref", "envfromsecret"}
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_HF = re.compile(r"\bhf_[A-Za-z0-9]{16,}\b")
_BEARER = re.compile(r"(?i)\b(bearer)(\s+)(?!<redacted>)[A-Za-z0-9._~+/=-]{8,}")
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*):([^/\s@]*)@")
# --flag=value, --flag value, NAME=value, "name": "value" (JSON), name: value (YAML) in free text
_FLAG_VALUE = re.compile(r"(?P<flag>--?[A-Za-z][\w-]*)(?P<sep>=|\s+)(?P<value>(?!-)[^\s,;'\"]+)")
_ASSIGN = re.compile(r"(?P<flag>\b[A-Za-z_][A-Za-z0-9_]*)(?P<sep>=)(?P<value>[^\s,;'\"]+)")
_QUOTED = re.compile(r"(?P<flag>['\"][A-Za-z_][\w-]*['\"])(?P<sep>\s*:\s*)(?P<value>['\"][^'\"]+['\"])")


def sensitive_name(name: str) -> bool:
    """Whether a flag, variable or field name suggests its value is a credential."""
    words = re.split(r"[^a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower())
    return any(w in _WORDS for w in words)


def _secret_value(value: str) -> bool:
    v = value.strip("'\"")
    return bool(v) and v != REDACTED and not _NUMBER.match(v)


def redact_text(text: str) -> str:
    """``text`` with every credential-looking value replaced by ``<redacted>``."""
    if not text:
        return text

    def by_name(m: re.Match[str]) -> str:
        if sensitive_name(m["flag"].strip("'\"")) and _secret_value(m["value"]):
            q = '"' if m["value"].startswith('"') else "'" if m["value"].startswith("'") else ""
            return f"{m['flag']}{m['sep']}{q}{REDACTED}{q}"
        return m[0]

    out = _USERINFO.sub(lambda m: f"{m[1]}:{REDACTED}@" if m[2] != REDACTED else m[0], text)
    out = _HF.sub(REDACTED, out)
    out = _BEARER.sub(lambda m: f"{m[1]}{m[2]}{REDACTED}", out)
    for pattern in (_FLAG_VALUE, _ASSIGN, _QUOTED):
        out = pattern.sub(by_name, out)
    return out


def redact_args(args: list[Any]) -> list[Any]:
    """An argument list with the value after each sensitive ``--flag`` (and inside each string) redacted."""
    out: list[Any] = []
    after_flag = False
    for a in args:
        if not isinstance(a, str):
            out.append(redact(a))
            after_flag = False
            continue
        if after_flag and not a.startswith("-") and _secret_value(a):
            out.append(REDACTED)
        else:
            out.append(redact_text(a))
        after_flag = a.startswith("-") and "=" not in a and sensitive_name(a)
    return out


def redact(obj: Any) -> Any:
    """A copy of ``obj`` (dicts, lists, strings) with credential-looking values redacted.

    Also ``{name: HF_TOKEN, value: ...}`` (a container env entry) and ``password: ...`` mapping keys;
    a secret reference (``{name, key}`` under ``secretKeyRef``, or ``{secret, key}``) is kept.
    """
    if isinstance(obj, str):
        return redact_text(obj)
    if isinstance(obj, (list, tuple)):
        return redact_args(list(obj))
    if isinstance(obj, dict):
        out = {}
        env_entry = isinstance(obj.get("name"), str) and "value" in obj and sensitive_name(obj["name"])
        for k, v in obj.items():
            sensitive_key = isinstance(k, str) and k.lower() not in _REF_KEYS and sensitive_name(k)
            if isinstance(v, str) and _secret_value(v) and (sensitive_key or (env_entry and k == "value")):
                out[k] = REDACTED
            else:
                out[k] = redact(v)
        return out
    return obj


def scrub(obj: Any, where: str, log: logging.Logger | None = None) -> Any:
    """``redact(obj)``, warning once (naming ``where``) when something had to be redacted."""
    clean = redact(obj)
    if clean != obj:
        (log or logging.getLogger("autotune")).warning(
            "%s: credential-looking values written as %s; use secret references "
            "({secret: NAME, key: KEY} in dynamo.extra_*_args, README: Secrets)",
            where,
            REDACTED,
        )
    return clean


class RedactingFilter(logging.Filter):
    """Log filter: the formatted message (and exception text) of every record, redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is logging's problem, not ours
            return True
        clean = redact_text(msg)
        if clean != msg:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True


def install_log_filter(logger: logging.Logger | None = None) -> None:
    """Add ``RedactingFilter`` to every handler of ``logger`` (default: the root logger), once."""
    for h in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactingFilter) for f in h.filters):
            h.addFilter(RedactingFilter())
