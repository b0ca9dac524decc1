"""Evaluating expressions on one row.

A row's media are decoded at most once however many columns read them (the decoded image is memoised in
the row), and released when the row is done, so a step never holds a batch of decoded images.
"""

from __future__ import annotations

import collections
import operator
import threading
from typing import Any

import PIL.Image

from pxt_assets.errors import ErrorCode
from pxt_assets.functions import registry
from pxt_assets.limits import DECODE_BUDGET, Reservation, ResourceLimitError, check_pixels, decoded_bytes
from pxt_assets.media import (
    FRAME_REF_RE,
    ImageDecodeError,
    Json,
    MediaReader,
    PinnedPath,
    decode_image,
    release_pins,
)
from pxt_assets.redaction import redact
from pxt_assets.spec import (
    Arith,
    BoolOp,
    Call,
    ColumnRef,
    Compare,
    Expr,
    InlineJson,
    JsonPath,
    Literal,
    Prop,
    TableSpec,
)

_OPS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
        ">=": operator.ge}


def is_missing(value: Any) -> bool:
    """None or a float NaN: a value that is not there (NaN counts as missing, as in pandas)."""
    return value is None or (isinstance(value, float) and value != value)


class RowError(Exception):
    """A value could not be computed for a row. `kind` is its stable ErrorCode: upstream_error, not_found,
    decode_error, ..."""

    def __init__(self, message: str, kind: str | ErrorCode) -> None:
        super().__init__(redact(message))
        self.kind = ErrorCode.of(kind)


def error_code(exc: BaseException) -> ErrorCode:
    """The stable code of a row's failure."""
    kind = getattr(exc, "kind", None)
    if isinstance(kind, str):
        return ErrorCode.of(kind)
    if isinstance(exc, PIL.UnidentifiedImageError):
        return ErrorCode.DECODE_ERROR
    if isinstance(exc, MemoryError):
        return ErrorCode.RESOURCE_LIMIT
    if isinstance(exc, FileNotFoundError):
        return ErrorCode.NOT_FOUND
    if isinstance(exc, PermissionError):
        return ErrorCode.ACCESS_DENIED
    if isinstance(exc, TimeoutError):
        return ErrorCode.TIMEOUT
    if isinstance(exc, ConnectionError):
        return ErrorCode.UNREACHABLE
    if isinstance(exc, TypeError):
        return ErrorCode.TYPE_ERROR
    return ErrorCode.INTERNAL_ERROR


def error_kind(exc: BaseException) -> str:
    """A row's failure as stored in its `errortype` field: the code's plain string value."""
    return error_code(exc).value


class Row:
    """One row while it is evaluated: stored values, this step's results, errors and decoded media."""

    def __init__(self, table: TableSpec, reader: MediaReader, row_id: str, stored: dict[str, Any],
                 errors: dict[str, str] | None = None, errortypes: dict[str, str] | None = None) -> None:
        self.table = table
        self.reader = reader
        self.row_id = row_id
        self.stored = stored  # column -> stored value (a URI for media columns)
        self.errors: dict[str, str] = dict(errors or {})
        self.errortypes: dict[str, str] = dict(errortypes or {})
        self.objects: dict[str, Any] = {}  # column -> in-memory value (decoded or just computed image)
        self.made: dict[int, Any] = {}  # id(call) -> result (or exception) of a batched or async UDF call
        self.reservations: dict[str, Reservation] = {}  # column -> its decoded image's bytes in the budget

    def set_result(self, column: str, obj: Any, stored: Any) -> None:
        self.objects[column] = obj
        self.stored[column] = stored

    def release(self, column: str) -> None:
        """Drop the in-memory value of `column` (its stored value stays): no later column reads it, and a
        decoded image is megabytes. Held to the end of the row, a row's images pile up on each thread's
        malloc heap until glibc gives the pages back to the kernel, only to fault them in again for the
        next row (up to 1,800 page faults and 6 ms of kernel time per row of the seed pipeline)."""
        self.objects.pop(column, None)
        reservation = self.reservations.pop(column, None)
        if reservation is not None:
            reservation.release()

    def set_error(self, column: str, exc: BaseException) -> None:
        self.errors[column] = redact(str(exc))  # stored and shown: never a credential
        self.errortypes[column] = error_kind(exc)

    def media(self, column: str) -> PIL.Image.Image:
        """The decoded image of a media column (decoded on first use, then shared). Its size is checked
        against the pixel limit before it is decoded, and its bytes are held in the process's decode budget
        until the row releases it (see pxt_assets.limits)."""
        if column in self.objects:
            return self.objects[column]
        uri = self.stored.get(column)
        if uri is None:
            raise RowError(f"{column} has no value", "missing_value")
        reference = frame_reference_of(uri)
        try:
            if reference is not None:  # a frame not written: decoded again from its video
                width, height = frame_size(self.reader, reference[0])
                reservation = DECODE_BUDGET.reserve(decoded_bytes(width, height, 3))
                try:
                    decoded = reservation.hold_until_collected(decode_frame(self.reader, *reference))
                except BaseException:
                    reservation.release()
                    raise
            else:
                data = self.reader.read_bytes(uri)  # one read (or one download), decoded from memory
                decoded, reservation = decode_image(data, f"image {uri}")
        except (ResourceLimitError, ImageDecodeError) as e:
            raise RowError(f"{column}: {e}", error_code(e)) from None
        self.objects[column] = decoded
        self.reservations[column] = reservation
        return decoded

    def evaluate(self, expr: Expr) -> Any:
        if isinstance(expr, Literal):
            return expr.value
        if isinstance(expr, ColumnRef):
            if expr.name in self.errors:
                message = self.errors[expr.name]  # named once: an error that names its column already
                raise RowError(message if message.startswith(f"{expr.name}: ") else f"{expr.name}: {message}",
                               "upstream_error")
            col = self.table.columns[expr.name]
            if col.is_media and col.col_type.name == "Image":
                return self.media(expr.name)
            if col.is_media:  # video, audio, documents: a local file to open, as Pixeltable gives them
                # A remote file's path is a PinnedPath: pinned in the cache for as long as the function it is
                # passed to holds it (a generator: until it is closed), so no eviction removes it mid-read.
                uri = self.stored.get(expr.name)
                return None if uri is None else self.reader.localpath(uri)
            return self.objects.get(expr.name, self.stored.get(expr.name))
        if isinstance(expr, Prop):
            return self._prop(expr)
        if isinstance(expr, Call):
            if id(expr) in self.made:
                made = self.made[id(expr)]
                if isinstance(made, BaseException):
                    raise made
                return made
            args, kwargs = self.arguments(expr)
            if expr.udf is not None:
                return expr.udf.call(args, kwargs)
            return registry.get(expr.fn).fn(*args, **kwargs)
        if isinstance(expr, JsonPath):
            return expr.extract(self.evaluate(expr.of))
        if isinstance(expr, InlineJson):
            return expr.build(self.evaluate)
        if isinstance(expr, Arith):
            left, right = self.evaluate(expr.left), self.evaluate(expr.right)
            try:
                return expr.compute(left, right)
            except (TypeError, ArithmeticError) as e:
                raise RowError(f"{expr!r}: {e}", "type_error" if isinstance(e, TypeError) else "invalid_value") from None
        if isinstance(expr, (Compare, BoolOp)):
            return self.truth(expr) is True
        raise TypeError(f"cannot evaluate {expr!r}")

    def arguments(self, call: Call) -> tuple[list[Any], dict[str, Any]]:
        return [self.evaluate(a) for a in call.args], {k: self.evaluate(v) for k, v in call.kwargs.items()}

    def truth(self, expr: Expr) -> bool | None:
        """A predicate's value in SQL's three-valued logic, so a filter evaluated here keeps exactly the rows
        the database would: None (unknown) for a comparison with a missing value or a value that cannot be
        computed (an error upstream); `~unknown` is unknown; only True keeps a row."""
        if isinstance(expr, BoolOp):
            values = [self.truth(a) for a in expr.args]
            if expr.op == "not":
                return None if values[0] is None else not values[0]
            if expr.op == "and":
                return False if False in values else (None if None in values else True)
            return True if True in values else (None if None in values else False)
        try:
            if isinstance(expr, Compare):
                return self._compare(expr)
            value = self.evaluate(expr)
        except Exception:  # noqa: BLE001 - a value that cannot be computed (a missing file, ...) is unknown
            return None
        return None if value is None else bool(value)

    def scalar(self, expr: Expr) -> Any:
        """A value to compare or sort by, as the database has it: a media column is its URI (not decoded),
        and a stored column is its stored value (None for a row in error)."""
        if isinstance(expr, ColumnRef):
            return self.stored.get(expr.name)
        if isinstance(expr, Prop) and expr.prop == "fileurl" and isinstance(expr.of, ColumnRef):
            return self.stored.get(expr.of.name)
        return self.evaluate(expr)

    def _compare(self, expr: Compare) -> bool | None:
        left = self.scalar(expr.left)
        if isinstance(expr.right, Literal) and expr.right.value is None and expr.op in ("==", "!="):
            return (left is None) == (expr.op == "==")  # IS NULL / IS NOT NULL
        right = self.scalar(expr.right)
        if left is None or right is None:
            return None
        if expr.op == "in":
            if not isinstance(right, (list, tuple, dict, set)):
                raise RowError(f"{expr!r}: isin() argument must be an Iterable, not {right!r}", "type_error")
            return left in right
        try:
            return bool(_OPS[expr.op](left, right))
        except TypeError as e:
            raise RowError(f"cannot compare {expr!r}: {e}", "type_error") from None

    def _prop(self, expr: Prop) -> Any:
        if expr.prop in ("errormsg", "errortype"):
            name = next(iter(expr.of.columns()))
            return (self.errors if expr.prop == "errormsg" else self.errortypes).get(name)
        if not isinstance(expr.of, ColumnRef):
            raise RowError(f".{expr.prop} needs a stored column, not {expr.of!r}", "invalid_expression")
        name = expr.of.name
        if name in self.errors:
            return None
        uri = self.stored.get(name)
        if uri is None:
            return None
        if expr.prop == "fileurl":
            return uri
        reference = frame_reference_of(uri)
        if reference is not None:  # a frame not written: decoded into the file cache, as a PNG, pinned
            return PinnedPath(self.reader.cache.pin(
                uri, lambda tmp: decode_frame(self.reader, *reference).save(tmp, format="PNG"), suffix=".png"))
        return self.reader.localpath(uri)  # pinned in the cache while the value lives, if remote


def as_json(value: Any) -> Any:
    """A Json column's value as plain JSON data (a copy); a RowError if it is not JSON."""
    from pxt_assets.functions.udf import coerce_result

    try:
        return coerce_result(value, Json)
    except TypeError as e:
        raise RowError(f"the value is not JSON: {e}", "type_error") from None


def deferred_calls(expr: Expr) -> list[Call]:
    """The batched and async UDF calls in `expr`, inner ones first: they are made for many rows at once
    (make_calls) before each row's value is evaluated."""
    out: dict[int, Call] = {}
    for e in expr.walk():
        if isinstance(e, Call) and e.deferred:
            out.setdefault(id(e), e)  # the same call twice ([c, c]) is made once
    return list(out.values())


def make_calls(rows: list[Row], call: Call, map_rows: Any = map) -> None:
    """Make a batched or async UDF call for every row (batches of `batch_size`; async calls concurrently),
    leaving each row's result (or error) in `row.made`. Arguments are evaluated per row with `map_rows`
    (e.g. a thread pool's map); a row whose arguments fail gets that error."""
    def args_of(row: Row) -> Any:
        try:
            return row.arguments(call)
        except Exception as e:  # noqa: BLE001 - the row's error
            return e

    rows = [row for row in rows if id(call) not in row.made]  # made already (the same call selected twice)
    evaluated = list(map_rows(args_of, rows))
    udf = call.udf
    ready = []
    for row, got in zip(rows, evaluated):
        if isinstance(got, BaseException):
            row.made[id(call)] = got
        elif udf is not None and udf.skipped(*got):
            row.made[id(call)] = None
        else:
            ready.append((row, got))
    if not ready:
        return
    try:
        if udf is None:  # a built-in's batch form
            results = registry.get(call.fn).batch([got for _, got in ready])
        elif udf.batch_size is not None:
            kwargs = ready[0][1][1]  # keyword-only constants: the same for every row
            columns = [list(col) for col in zip(*(args for _, (args, _) in ready))]
            results = udf.call_batch(columns, kwargs)
        else:
            results = udf.call_async([got for _, got in ready])
    except Exception as e:  # noqa: BLE001 - whatever went wrong is these rows' error, not the batch's
        results = [e] * len(ready)
    for (row, _), result in zip(ready, results):
        row.made[id(call)] = result


def frame_reference_of(uri: str) -> tuple[str, float, int | None] | None:
    """(video URI, time, pts) of a frame stored as a reference into its video (see assets.frame_reference)."""
    m = FRAME_REF_RE.match(uri) if "#t=" in uri else None
    if m is None:
        return None
    return m.group("video"), float(m.group("t")), int(m.group("pts")) if m.group("pts") else None


class _Closed(Exception):
    """The cursor was closed (evicted) by another thread: open the video again."""


class _FrameCursor:
    """An open video for reading frames that are not written (view rows read in order): frames come from
    decoding forward; a seek (to the keyframe before) only when the next frame asked for is behind, or far
    ahead. Frames rows will ask for (want_frames) are kept when decoded early, a bounded number of them."""

    RING = 4
    KEPT = 32
    FORWARD_S = 10.0

    def __init__(self, reader: MediaReader, video_uri: str) -> None:
        import av

        # Pinned in the file cache (if remote) for the cursor's lifetime: the container reads it across rows.
        self.path = reader.localpath(video_uri, must_exist=True)
        try:
            self.container = av.open(str(self.path))
        except BaseException:
            release_pins([self.path])
            raise
        try:
            self.stream = self.container.streams.video[0]
            self.stream.thread_type = "AUTO"
            check_pixels(self.stream.codec_context.width, self.stream.codec_context.height,
                         f"a frame of video {video_uri}")  # before a frame is decoded
        except BaseException:
            self.container.close()
            release_pins([self.path])
            raise
        self.video_uri = video_uri
        self.forward = int(self.FORWARD_S / self.stream.time_base)
        self.frames: Any = None
        self.last_pts: int | None = None
        self.ring: collections.OrderedDict[int, Any] = collections.OrderedDict()
        self.wanted: set[int] = set()
        self.kept: collections.OrderedDict[int, Any] = collections.OrderedDict()
        self.closed = False
        self.lock = threading.Lock()

    def _restart(self, pts: int, from_start: bool = False) -> None:
        self.container.seek(0 if from_start else pts, stream=self.stream, backward=True, any_frame=False)
        self.frames = self.container.decode(self.stream)
        self.last_pts = None

    def _scan(self, pts: int) -> Any:
        """Decode forward up to `pts`; the frame at `pts` (or the last one before it), or None if the first
        frame decoded was already past it (a seek that landed late)."""
        best, first = None, True
        for decoded in self.frames:
            if decoded.pts is None:
                continue
            if first and decoded.pts > pts and self.last_pts is None:
                self.ring[decoded.pts] = decoded
                self.last_pts = decoded.pts
                return None
            first = False
            self.last_pts = decoded.pts
            if decoded.pts in self.wanted and decoded.pts != pts:
                self.kept[decoded.pts] = decoded  # another row's: it asks soon (rows run in order)
                while len(self.kept) > self.KEPT:
                    self.kept.popitem(last=False)  # a row that never asks (kept as unchanged), or far behind
            self.ring[decoded.pts] = decoded
            while len(self.ring) > self.RING:
                self.ring.popitem(last=False)
            if decoded.pts > pts:
                break
            best = decoded
            if decoded.pts == pts:
                break
        return best

    def get(self, pts: int) -> PIL.Image.Image:
        with self.lock:
            if self.closed:
                raise _Closed()
            frame = self.kept.pop(pts, None)
            if frame is None:
                frame = self.ring.get(pts)
            self.wanted.discard(pts)
            if frame is None:
                if self.frames is None or self.last_pts is None or pts < self.last_pts \
                        or pts - self.last_pts > self.forward:
                    self._restart(pts)
                frame = self._scan(pts)
                if frame is None and self.ring.get(pts) is None:
                    # the seek landed after the frame (some containers, e.g. MPEG-TS): decode from the start
                    self._restart(pts, from_start=True)
                    frame = self._scan(pts)
                frame = self.ring.get(pts, frame)
            if frame is None:
                raise RowError(f"no frame at pts {pts} in {self.video_uri}", "not_found")
            check_pixels(frame.width, frame.height, f"the frame at pts {pts} of video {self.video_uri}")
            return PIL.Image.fromarray(frame.to_ndarray(format="rgb24"))

    def close(self) -> None:
        self.closed = True
        self.ring.clear()
        self.kept.clear()
        self.frames = None
        try:
            self.container.close()
        finally:
            release_pins([self.path])


_CURSORS: collections.OrderedDict[str, _FrameCursor] = collections.OrderedDict()
_CURSORS_LOCK = threading.Lock()
_MAX_CURSORS = 8


def _cursor(reader: MediaReader, video_uri: str) -> _FrameCursor:
    with _CURSORS_LOCK:
        cursor = _CURSORS.get(video_uri)
        if cursor is not None:
            _CURSORS.move_to_end(video_uri)
            return cursor
    opened = _FrameCursor(reader, video_uri)  # opened (perhaps downloaded) without holding the lock
    evicted = []
    with _CURSORS_LOCK:
        cursor = _CURSORS.setdefault(video_uri, opened)
        while len(_CURSORS) > _MAX_CURSORS:
            evicted.append(_CURSORS.popitem(last=False)[1])
    if cursor is not opened:
        evicted.append(opened)  # another thread opened it meanwhile
    for old in evicted:
        with old.lock:
            old.close()
    return cursor


def want_frames(reader: MediaReader, uris: Any) -> None:
    """Tell the videos' cursors which frames rows will ask for (the frame references among `uris`), so a
    frame decoded before its row asks for it is kept rather than decoded again. A video that cannot be
    opened is left to its rows' errors."""
    by_video: dict[str, set[int]] = {}
    for uri in uris:
        ref = frame_reference_of(uri) if isinstance(uri, str) else None
        if ref is not None and ref[2] is not None:
            by_video.setdefault(ref[0], set()).add(ref[2])
    for video, pts in by_video.items():
        try:
            cursor = _cursor(reader, video)
        except Exception:  # noqa: BLE001 - each row reading it reports why
            continue
        with cursor.lock:
            cursor.wanted |= pts


def frame_size(reader: MediaReader, video_uri: str) -> tuple[int, int]:
    """(width, height) of the frames of `video_uri` as its stream declares them (nothing decoded); the video's
    cursor is opened, which refuses frames over the pixel limit."""
    ctx = _cursor(reader, video_uri).stream.codec_context
    return ctx.width, ctx.height


def decode_frame(reader: MediaReader, video_uri: str, time_s: float, pts: int | None) -> PIL.Image.Image:
    """The frame of `video_uri` at `pts` (or `time_s`), through the video's cursor (see _FrameCursor)."""
    for _ in range(3):
        cursor = _cursor(reader, video_uri)
        try:
            return cursor.get(pts if pts is not None else int(time_s / cursor.stream.time_base))
        except _Closed:
            continue  # evicted by another thread between lookup and use
    raise RowError(f"could not read a frame of {video_uri}: its reader kept being closed", "read_error")


def close_frame_cursors() -> None:
    """Close the videos opened for reading frames (at the end of a step or a query)."""
    with _CURSORS_LOCK:
        cursors = list(_CURSORS.values())
        _CURSORS.clear()
    for cursor in cursors:
        with cursor.lock:
            cursor.close()
