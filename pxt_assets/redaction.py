"""Secrets never printed: credentials in URLs' query strings (SigV4, GCS V4, Azure SAS, tokens, keys) and
userinfo passwords, replaced by REDACTED wherever text leaves the program (row errors, logs, Dagster metadata,
exception messages). A value a user inserted is stored as given (it is their data), never echoed."""

from __future__ import annotations

import re

REDACTED = "REDACTED"

# Query parameters that carry credentials, matched case-insensitively: AWS SigV4, GCS V4 signing, Azure SAS
# (`sig`), and any parameter whose name says token / key / signature / secret / password / credential.
_SECRET_PARAM = re.compile(
    r"(?i)(?<=[?&;])((?:x-amz-signature|x-amz-credential|x-amz-security-token|x-goog-signature|x-goog-credential|"
    r"sig|signature|[a-z0-9_.-]*(?:token|secret|password|passwd|apikey|api_key|credential|key)[a-z0-9_.-]*)=)"
    r"([^&#\s'\"<>]+)")
# user:password@ in URLs
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+:)([^@\s/]+)(@)")
# AWS secret access keys and account keys that appear bare (40 or 88 base64-ish characters after a label)
_LABELLED = re.compile(r"(?i)\b(aws_secret_access_key|secret_access_key|account_key|accountkey|api[_-]?key)"
                       r"(\s*[=:]\s*)(['\"]?)([^\s'\";,]+)")


def redact(text: object) -> str:
    """`text` with every credential replaced by REDACTED."""
    s = str(text)
    if not s:
        return s
    s = _SECRET_PARAM.sub(lambda m: m.group(1) + REDACTED, s)
    s = _USERINFO.sub(lambda m: m.group(1) + REDACTED + m.group(3), s)
    return _LABELLED.sub(lambda m: m.group(1) + m.group(2) + m.group(3) + REDACTED, s)


__all__ = ["redact", "REDACTED"]
