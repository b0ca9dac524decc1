"""Secrets never printed: credentials in URLs' query strings (SigV4, GCS V4, Azure SAS, tokens, keys),
userinfo passwords, labelled keys (`account_key=...`, `"private_key": ...`), bearer tokens, OpenAI keys, PEM
private keys, and the values of the credentials this process holds (AWS_SECRET_ACCESS_KEY, the Azure account
key, OPENAI_API_KEY, ...), replaced by REDACTED wherever text leaves the program: row errors, logs, Dagster
metadata and events, exception messages and their chains, reprs. A value a user inserted is stored as given
(it is their data), never echoed.

One function per way text leaves:
- `redact(text)`: a message;
- `redact_metadata(mapping)`: Dagster metadata (every string inside, whatever the MetadataValue);
- `scrub(exc)` / `scrubbed()` / `scrubbing(fn)`: an exception and every exception it chains to (what Dagster
  stores in its event log when a step fails, and what a traceback prints);
- `install_log_redaction()`: every log record made in the process (its message, arguments and exception),
  whichever logger or handler (Dagster's included) gets it; `RedactingFilter` for handlers of one's own.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import re
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

REDACTED = "REDACTED"

# Query parameters that carry credentials, matched case-insensitively: AWS SigV4, GCS V4 signing, Azure SAS
# (`sig`), and any parameter whose name says token / key / signature / secret / password / credential.
_SECRET_PARAM = re.compile(
    # listing parameters that only look like credentials (S3 max-keys, page tokens) are left as they are
    r"(?i)(?<=[?&;])(?!(?:max-?keys|key-marker|continuation-token|(?:next-?)?page-?token|upload-id-marker)=)"
    r"((?:x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|x-goog-credential|"
    r"sig|[a-z0-9_.-]*(?:token|secret|password|passwd|apikey|api_key|credential|signature|key)[a-z0-9_.-]*)=)"
    r"([^&#\s'\"<>]+?)(?=[&#\s'\"<>)]|[:,.;]\s|[:,.;]?$)")  # the value, not a ": reason" after the URL
# user:password@ in URLs
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+:)([^@\s/]+)(@)")
# A credential after its label, in text, headers, JSON or a dict's repr: `account_key=...`, `"private_key": "..."`,
# `Signature=...` of an Authorization header, `AccountKey=...` of a connection string. A label may end a longer
# name (`openai_api_key=`).
_LABELLED = re.compile(
    r"(?i)(secret_access_key|session_token|security_token|account_?key|sharedaccesssignature|api[_-]?key|"
    r"private_key|client_secret|password|passwd|signature|access_token|refresh_token|id_token|sas_token)"
    r"(['\"]?\s*[=:]\s*)(['\"]?)([^\s'\";,&<>]+)")
# every label above contains one of these
_LABEL_WORDS = ("key", "token", "secret", "passw", "signature")
# Authorization: Bearer <token> (and Basic <base64>)
_BEARER = re.compile(r"(?i)\b(bearer|basic)(\s+)[A-Za-z0-9._~+/-]{8,}=*")
# OpenAI-style keys (sk-..., sk-proj-...)
_SK_KEY = re.compile(r"\bsk-[A-Za-z0-9_-]{16,}")
# PEM private keys (a service-account key's private_key), whole or cut short; JSON escapes the newlines
_PEM = re.compile(r"-----BEGIN ([A-Z ]*)PRIVATE KEY-----(?:[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----|[\s\S]*)")

# Environment variables that hold credentials: their values are redacted wherever they appear.
SECRET_ENV_VARS = (
    "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_CONNECTION_STRING", "AZURE_CLIENT_SECRET",
    "OPENAI_API_KEY", "PIXELTABLE_API_KEY", "ANTHROPIC_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY",
    "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "PGPASSWORD",
)
_SECRET_ENV_BYTES = tuple(os.fsencode(name) for name in SECRET_ENV_VARS)
#: shorter values are not redacted as literal strings: a 6-letter test key would blank out words
MIN_SECRET_LENGTH = 8

_registered: set[str] = set()
_registered_lock = threading.Lock()
_literals: tuple[tuple[Any, ...], re.Pattern[str] | None] = ((), None)


def register_secret(value: object) -> None:
    """Redact `value` wherever it appears from now on (a credential read from config.toml, a profile, a
    resource). Values shorter than MIN_SECRET_LENGTH are ignored."""
    global _literals
    if isinstance(value, str) and len(value.strip()) >= MIN_SECRET_LENGTH:
        with _registered_lock:
            if value.strip() not in _registered:
                _registered.add(value.strip())
                _literals = ((), None)  # rebuilt on next use


def _env_secrets() -> tuple[Any, ...]:
    data = getattr(os.environ, "_data", None)
    if isinstance(data, dict) and os.name == "posix":  # os.environ.get() costs an exception per unset name
        return tuple(data.get(name) for name in _SECRET_ENV_BYTES)
    return tuple(os.environ.get(name) for name in SECRET_ENV_VARS)


def _literal_pattern() -> re.Pattern[str] | None:
    """One regex for every known secret value (the credentials in the environment and those registered),
    rebuilt only when they change."""
    global _literals
    key = (_env_secrets(), len(_registered))
    cached = _literals
    if cached[0] == key:
        return cached[1]
    values = set(_registered)
    for raw in key[0]:
        if raw is not None:
            value = (os.fsdecode(raw) if isinstance(raw, bytes) else raw).strip()
            if len(value) >= MIN_SECRET_LENGTH:
                values.add(value)
    pattern = re.compile("|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))) if values else None
    _literals = (key, pattern)
    return pattern


def redact(text: object) -> str:
    """`text` with every credential replaced by REDACTED."""
    s = str(text)
    if not s:
        return s
    literal = _literal_pattern()
    if literal is not None:
        s = literal.sub(REDACTED, s)
    # Each pattern runs only on text that has what it needs: most messages and log lines have none of it, and
    # a log record costs microseconds, not the ~100 us of every pattern.
    if "PRIVATE KEY" in s:
        s = _PEM.sub(lambda m: f"-----BEGIN {m.group(1)}PRIVATE KEY-----{REDACTED}", s)
    if "=" in s:
        s = _SECRET_PARAM.sub(lambda m: m.group(1) + REDACTED, s)
    if "@" in s:
        s = _USERINFO.sub(lambda m: m.group(1) + REDACTED + m.group(3), s)
    low = s.lower()
    if ("=" in s or ":" in s) and any(k in low for k in _LABEL_WORDS):
        s = _LABELLED.sub(lambda m: m.group(1) + m.group(2) + m.group(3) + REDACTED, s)
    if "bearer" in low or "basic" in low:
        s = _BEARER.sub(lambda m: m.group(1) + m.group(2) + REDACTED, s)
    return _SK_KEY.sub("sk-" + REDACTED, s) if "sk-" in s else s


def redact_value(value: Any) -> Any:
    """`value` with every string inside it (dicts, lists, tuples) redacted; other values as they are."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {redact_value(k): redact_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_value(v) for v in value]
    if isinstance(value, tuple):
        return tuple(redact_value(v) for v in value)
    return value


# ---------------------------------------------------------------------------------------------------------
# Dagster metadata


def redact_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Dagster metadata fit to show and store: every string in every value redacted (plain strings, lists,
    dicts, and MetadataValue.text / json / url / md / path), other values (numbers, tables) as given. Every
    metadata pxt_assets emits (outputs, materializations, asset definitions) goes through here."""
    import dagster as dg

    return {key: _redact_metadata_value(value) if isinstance(value, dg.MetadataValue) else redact_value(value)
            for key, value in metadata.items()}


def _redact_metadata_value(value: Any) -> Any:
    import dagster as dg

    if isinstance(value, dg.TextMetadataValue):
        return dg.MetadataValue.text(redact(value.text))
    if isinstance(value, dg.UrlMetadataValue):
        return dg.MetadataValue.url(redact(value.url))
    if isinstance(value, dg.MarkdownMetadataValue):
        return dg.MetadataValue.md(redact(value.md_str))
    if isinstance(value, dg.PathMetadataValue):
        return dg.MetadataValue.path(redact(value.path))
    if isinstance(value, dg.JsonMetadataValue):
        return dg.MetadataValue.json(redact_value(value.data))
    return value


# ---------------------------------------------------------------------------------------------------------
# exceptions


class RedactedMessage:
    """Mixin for exceptions whose message must never carry a credential (it names an input, a destination,
    a value): the string arguments are redacted when the exception is made."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*(redact(a) if isinstance(a, str) else a for a in args), **kwargs)


class RedactedError(Exception):
    """Stands in for an exception whose message held a credential and cannot be changed in place (its text
    is computed from attributes we cannot see into); the message names the original type."""


def _scrub_in_place(exc: BaseException) -> None:
    """Redact the strings an exception's message is made of: its args, string attributes (an HTTPError's
    url, an Azure error's message and reason), an OSError's file names, its notes."""
    try:
        if any(isinstance(a, str) for a in exc.args):
            exc.args = tuple(redact(a) if isinstance(a, str) else a for a in exc.args)
    except Exception:  # noqa: BLE001 - an exception whose args cannot be set keeps them; checked below
        pass
    if isinstance(exc, OSError):
        for name in ("filename", "filename2", "strerror"):
            value = getattr(exc, name, None)
            if isinstance(value, str):
                with contextlib.suppress(Exception):
                    setattr(exc, name, redact(value))
    for name, value in list(getattr(exc, "__dict__", {}).items()):
        if isinstance(value, str) and name != "__notes__":
            red = redact(value)
            if red != value:
                with contextlib.suppress(Exception):
                    setattr(exc, name, red)
    notes = getattr(exc, "__notes__", None)
    if isinstance(notes, list):
        notes[:] = [redact(n) if isinstance(n, str) else n for n in notes]


def _text(exc: BaseException) -> str:
    try:
        return "".join(traceback.format_exception_only(type(exc), exc))
    except Exception:  # noqa: BLE001 - a __str__ that fails: traceback prints a placeholder too
        return ""


def _clean(exc: BaseException) -> BaseException:
    """`exc` redacted in place, or a RedactedError standing in for it (same traceback and chain)."""
    _scrub_in_place(exc)
    text = _text(exc)
    red = redact(text)
    if red == text or not isinstance(exc, Exception):
        return exc
    stand_in = RedactedError(red.strip())
    stand_in.__cause__, stand_in.__context__ = exc.__cause__, exc.__context__
    stand_in.__suppress_context__ = exc.__suppress_context__
    return stand_in.with_traceback(exc.__traceback__)


def scrub(exc: BaseException) -> BaseException:
    """`exc` and every exception it chains to (`__cause__`, `__context__`) with their credentials redacted:
    changed in place where their message can be, replaced in the chain by a RedactedError where it cannot.
    Returns `exc`, or its stand-in."""
    cleaned: dict[int, BaseException] = {}  # id of an exception in the chain -> itself or its stand-in

    def clean(e: BaseException) -> BaseException:
        if id(e) not in cleaned:
            cleaned[id(e)] = _clean(e)
        return cleaned[id(e)]

    top = clean(exc)
    seen: set[int] = set()
    todo = [top]
    while todo:
        link = todo.pop()
        if id(link) in seen:
            continue
        seen.add(id(link))
        for attr in ("__cause__", "__context__"):  # `raise X from e` in an except block: both are e
            nxt = getattr(link, attr)
            if nxt is not None:
                new = clean(nxt)
                if new is not nxt:
                    setattr(link, attr, new)
                todo.append(new)
    return top


@contextlib.contextmanager
def scrubbed() -> Iterator[None]:
    """Whatever escapes the block has its credentials redacted (see `scrub`), chain included: what Dagster
    stores in its event log for a failed step, and what a traceback prints. Control-flow exceptions
    (GeneratorExit, KeyboardInterrupt) pass untouched."""
    replacement: BaseException | None = None
    try:
        yield
    except Exception as e:  # noqa: BLE001 - re-raised, redacted
        cleaned = scrub(e)
        if cleaned is e:
            raise
        replacement = cleaned
    if replacement is not None:
        raise replacement  # outside the except: the unredacted original is not chained as its context


F = TypeVar("F", bound=Callable[..., Any])


def scrubbing(fn: F) -> F:
    """`fn` (a plain function or a generator function, such as an asset's body) run inside `scrubbed()`."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def gen(*args: Any, **kwargs: Any) -> Any:
            with scrubbed():
                return (yield from fn(*args, **kwargs))

        return gen  # type: ignore[return-value]

    @functools.wraps(fn)
    def plain(*args: Any, **kwargs: Any) -> Any:
        with scrubbed():
            return fn(*args, **kwargs)

    return plain  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------------------
# logs


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """The record with its message (arguments merged), exception and stack redacted, in place."""
    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a bad format string: logging reports it; its args are redacted
        record.msg = redact(record.msg)
        record.args = redact_value(record.args) if isinstance(record.args, (tuple, dict)) else record.args
    else:
        red = redact(message)
        if red != message:
            record.msg, record.args = red, ()
    if record.exc_info and record.exc_info[1] is not None:
        exc = scrub(record.exc_info[1])
        if exc is not record.exc_info[1]:
            record.exc_info = (type(exc), exc, record.exc_info[2])
        record.exc_text = None
    elif record.exc_text:
        record.exc_text = redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redact(record.stack_info)
    return record


class RedactingFilter(logging.Filter):
    """A logging filter that redacts every record it sees (for handlers of one's own; records made in a
    process that imported pxt_assets are redacted already, see install_log_redaction)."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def install_log_redaction() -> None:
    """Redact every log record made in this process, at creation: whichever logger makes it (ours, Dagster's
    `context.log`, botocore's, urllib3's) and whichever handler gets it (the console, Dagster's event log,
    a notebook's). Chains to the record factory in place; installed once, when pxt_assets is imported.
    Also puts a RedactingFilter on the `pxt_assets` logger."""
    current = logging.getLogRecordFactory()
    if getattr(current, "_pxt_redacting", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return redact_record(current(*args, **kwargs))

    factory._pxt_redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
    pkg = logging.getLogger("pxt_assets")
    if not any(isinstance(f, RedactingFilter) for f in pkg.filters):
        pkg.addFilter(RedactingFilter())


__all__ = ["redact", "redact_value", "redact_metadata", "register_secret", "scrub", "scrubbed", "scrubbing",
           "RedactedMessage", "RedactedError", "RedactingFilter", "install_log_redaction", "REDACTED"]
