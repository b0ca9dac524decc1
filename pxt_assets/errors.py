"""Stable error codes, in the style of Pixeltable's `ErrorCode`.

A code is what a row shows as `.errortype` and what `StoreError.kind` / `RowError.kind` carry. It is a `str`
enum, so stored values stay readable (`t.img.errortype == "not_found"`) and comparisons with plain strings
keep working. `retryable` says whether the same request may succeed later (an outage, throttling, a
timeout): the retry loop in `stores/retry.py` retries those and nothing else, so a 403 or a 404 fails at once.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.StrEnum):
    # -- the request may succeed if made again: retried within the retry budget --------------------------
    UNREACHABLE = "unreachable"  # connection refused / reset, DNS, a body cut off while streaming
    TIMEOUT = "timeout"  # connect or read timeout
    THROTTLED = "throttled"  # 429, S3 SlowDown / 503, Azure ServerBusy
    SERVER_ERROR = "server_error"  # other 5xx

    # -- permanent: failing again is certain ----------------------------------------------------------
    NOT_FOUND = "not_found"
    ACCESS_DENIED = "access_denied"
    INVALID = "invalid"  # a malformed URI, argument or setting
    UNSUPPORTED = "unsupported"  # no store handles this URI / operation
    READ_ONLY = "read_only"
    MISSING_PROVIDER = "missing_provider"  # the provider's SDK is not installed
    NO_SIGNING_CREDENTIALS = "no_signing_credentials"
    STORE_FULL = "store_full"  # the home bucket's quota or plan refuses writes (reads and deletes still work)
    LOCAL_FILE = "local_file"  # a local path where a shared deployment needs a bucket
    # a write or delete below a local destination that would leave it (a symbolic link on the way): refused
    OUTSIDE_DESTINATION = "outside_destination"
    HTTP_ERROR = "http_error"  # another 4xx from a web source
    STORE_ERROR = "store_error"  # a storage failure of no known kind

    # -- row values -------------------------------------------------------------------------------------
    DECODE_ERROR = "decode_error"  # the file is not a valid image / video / audio / document
    # the file would need more than a limit allows to decode (pixels, the PDF reader's memory or time), or it
    # crashed its reader: failing again is certain under the same limits
    RESOURCE_LIMIT = "resource_limit"
    READ_ERROR = "read_error"
    TYPE_ERROR = "type_error"  # a value of the wrong type for its column
    INVALID_VALUE = "invalid_value"  # a value its column cannot hold in the database (range, NUL, NaN, nesting)
    MISSING_VALUE = "missing_value"
    UDF_ERROR = "udf_error"  # the user's function raised
    ITERATOR_ERROR = "iterator_error"  # a view's iterator failed on its base row
    UPSTREAM_ERROR = "upstream_error"  # a column this one depends on has an error
    INTERNAL_ERROR = "internal_error"  # an unexpected exception in our code

    @property
    def retryable(self) -> bool:
        return self in _RETRYABLE

    @classmethod
    def of(cls, value: str | ErrorCode | None, default: ErrorCode | None = None) -> ErrorCode:
        """The code named `value`; an unknown name is `default` (INTERNAL_ERROR unless given)."""
        if isinstance(value, ErrorCode):
            return value
        try:
            return cls(value)
        except ValueError:
            return default or cls.INTERNAL_ERROR


_RETRYABLE = frozenset({ErrorCode.UNREACHABLE, ErrorCode.TIMEOUT, ErrorCode.THROTTLED, ErrorCode.SERVER_ERROR})

__all__ = ["ErrorCode"]
