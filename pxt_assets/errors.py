"""Stable error codes, in the style of Pixeltable's `ErrorCode`.

A code is what a row shows as `.errortype` and what `StoreError.kind` / `RowError.kind` carry. It is a `str`
enum, so stored values stay readable (`t.img.errortype == "not_found"`) and comparisons with plain strings
keep working. `retryable` says whether the same request may succeed later (an outage, throttling, a
timeout): the retry loop in `stores/retry.py` retries those and nothing else, so a 403 or a 404 fails at once.

These are not Pixeltable's `pxt.ErrorCode` (pxt_assets.exceptions: the codes of the exceptions calls raise,
with HTTP statuses); `pxt_code` is the one an error of this kind raises as (a `StoreError` is a `pxt.Error`
carrying it).
"""

from __future__ import annotations

import enum

from pxt_assets import exceptions as pxt_exc


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

    @property
    def pxt_code(self) -> pxt_exc.ErrorCode:
        """Pixeltable's code for an error of this kind (what a `pxt.Error` raised for it carries)."""
        return _PXT_CODES.get(self, pxt_exc.ErrorCode.INTERNAL_ERROR)

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

_P = pxt_exc.ErrorCode
_PXT_CODES = {
    ErrorCode.UNREACHABLE: _P.STORE_UNAVAILABLE, ErrorCode.TIMEOUT: _P.PROVIDER_TIMEOUT,
    ErrorCode.THROTTLED: _P.RATE_LIMITED, ErrorCode.SERVER_ERROR: _P.PROVIDER_ERROR,
    ErrorCode.NOT_FOUND: _P.STORAGE_NOT_FOUND, ErrorCode.ACCESS_DENIED: _P.INSUFFICIENT_PRIVILEGES,
    ErrorCode.INVALID: _P.INVALID_ARGUMENT, ErrorCode.UNSUPPORTED: _P.UNSUPPORTED_OPERATION,
    ErrorCode.READ_ONLY: _P.UNSUPPORTED_OPERATION, ErrorCode.MISSING_PROVIDER: _P.INVALID_CONFIGURATION,
    ErrorCode.NO_SIGNING_CREDENTIALS: _P.MISSING_CREDENTIALS, ErrorCode.STORE_FULL: _P.FILE_CACHE_FULL,
    ErrorCode.LOCAL_FILE: _P.INVALID_ARGUMENT, ErrorCode.OUTSIDE_DESTINATION: _P.CONSTRAINT_VIOLATION,
    ErrorCode.HTTP_ERROR: _P.PROVIDER_BAD_REQUEST, ErrorCode.STORE_ERROR: _P.PROVIDER_ERROR,
    ErrorCode.DECODE_ERROR: _P.INVALID_DATA_FORMAT, ErrorCode.RESOURCE_LIMIT: _P.CONSTRAINT_VIOLATION,
    ErrorCode.READ_ERROR: _P.INVALID_DATA_FORMAT, ErrorCode.TYPE_ERROR: _P.TYPE_MISMATCH,
    ErrorCode.INVALID_VALUE: _P.CONSTRAINT_VIOLATION, ErrorCode.MISSING_VALUE: _P.MISSING_REQUIRED,
    ErrorCode.UDF_ERROR: _P.UNSUPPORTED_OPERATION, ErrorCode.ITERATOR_ERROR: _P.UNSUPPORTED_OPERATION,
    ErrorCode.UPSTREAM_ERROR: _P.UNSUPPORTED_OPERATION,
}

__all__ = ["ErrorCode"]
