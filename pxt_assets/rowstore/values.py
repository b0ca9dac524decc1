"""Whether a value fits its column in the database: checked before anything is staged, so a value the
database would refuse is that row's error and never the batch's.

What each database refuses (measured here): PostgreSQL refuses NUL in text and in JSON, NaN and Infinity in
JSON, and a bool where a BIGINT goes; both refuse integers outside 64 bits and text that is not UTF-8 (a lone
surrogate); the JSON encoder recurses once per level of nesting. One rule set for both databases, so a table's
rows can move from the embedded SQLite to PostgreSQL unchanged.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from pxt_assets.rowstore.schema import FILE_LIST

INT_MIN, INT_MAX = -(2**63), 2**63 - 1
#: deepest nesting of lists and objects a Json value may have
MAX_JSON_DEPTH = 100
_SHOWN = 60  # characters of a bad value shown in its message


class ValueProblem(ValueError):
    """A value its column cannot hold; the message says why (the caller names the column and the row)."""


def _text_problem(s: str, what: str) -> str | None:
    if "\x00" in s:
        return f"{what} contains a NUL character (\\x00), which the database cannot store"
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return f"{what} is not valid Unicode (a lone surrogate), which the database cannot store"
    return None


def _json_problem(value: Any) -> str | None:
    """Walks the value without recursion, so no nesting depth can exhaust the stack."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list, tuple)):
            if depth > MAX_JSON_DEPTH:
                return f"Json nested deeper than {MAX_JSON_DEPTH} levels"
            if isinstance(item, dict):
                for key, sub in item.items():
                    if isinstance(key, str):
                        if (p := _text_problem(key, "a Json object key")) is not None:
                            return p
                    elif not (key is None or isinstance(key, (bool, int, float))):  # json writes these as text
                        return f"Json object key {key!r:.{_SHOWN}} is not a string"
                    stack.append((sub, depth + 1))
            else:
                stack.extend((sub, depth + 1) for sub in item)
        elif isinstance(item, str):
            if (p := _text_problem(item, "a Json string")) is not None:
                return p
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, numbers.Integral):
            if not INT_MIN <= int(item) <= INT_MAX:
                return f"Json integer {int(item)} is outside 64 bits"
        elif isinstance(item, numbers.Real):
            if not math.isfinite(float(item)):
                return f"Json number {float(item)!r} (NaN and Infinity are not JSON)"
        else:
            return f"{type(item).__name__} is not a Json value"
    return None


def problem(type_name: str, value: Any) -> str | None:
    """Why `value` cannot be stored in a column of type `type_name` ('Int', 'Json', 'Image', ...), or None.
    Media columns hold URIs (text); the internal file-list type holds Json."""
    if value is None:
        return None
    if type_name == "Int":
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            return f"expected pxt.Int, got {type(value).__name__} {value!r:.{_SHOWN}}"
        if not INT_MIN <= int(value) <= INT_MAX:
            return f"integer {value} is outside the 64-bit range of pxt.Int"
        return None
    if type_name == "Float":
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return f"expected pxt.Float, got {type(value).__name__} {value!r:.{_SHOWN}}"
        try:
            float(value)
        except OverflowError:
            return f"number {str(value)[:_SHOWN]}... is too large for pxt.Float"
        return None
    if type_name == "Bool":
        return None if isinstance(value, bool) else f"expected pxt.Bool, got {type(value).__name__} {value!r:.{_SHOWN}}"
    if type_name in ("Json", FILE_LIST):
        return _json_problem(value)
    # String and the media types (a URI)
    if not isinstance(value, str):
        return f"expected text, got {type(value).__name__} {value!r:.{_SHOWN}}"
    return _text_problem(value, "the text")


def check(type_name: str, value: Any) -> None:
    """Raise ValueProblem unless `value` fits a column of `type_name`."""
    if (p := problem(type_name, value)) is not None:
        raise ValueProblem(p)


#: the key of a manifest row under which values the database cannot hold are replaced by why (column names
#: never start with '_', so it is never a column)
ERRORS_KEY = "_errors"


def manifest_row(row: dict[str, Any], index: int) -> dict[str, Any]:
    """An inserted row as its batch's manifest records it: a value no database can hold as text (NUL, a lone
    surrogate, nesting deeper than MAX_JSON_DEPTH, a number JSON cannot write) is replaced by None and its
    reason kept under ERRORS_KEY, so that row's value becomes a row error and the batch is still recorded. Type
    checks against the column come later (with the column's type, when the value is stored)."""
    errors: dict[str, str] = {}
    for column, value in row.items():
        if isinstance(value, (str, dict, list, tuple, float)):
            p = _json_problem(value) if not isinstance(value, str) else _text_problem(value, "the text")
            if p is not None:
                errors[column] = f"column {column!r}, row {index}: {p}"
    if not errors:
        return row
    return {**{c: (None if c in errors else v) for c, v in row.items()}, ERRORS_KEY: errors}


def fitted(column: str, type_name: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A column's records with every value its column cannot hold in the database made that row's error
    (`invalid_value`, naming the column and the row); the other records as they are."""
    out = records
    for i, rec in enumerate(records):
        p = problem(type_name, rec.get("value"))
        if p is None:
            continue
        if out is records:
            out = list(records)
        out[i] = {**rec, "value": None, "error": f"column {column!r}, row {rec.get('row_id')}: {p}",
                  "errortype": "invalid_value"}
    return out
