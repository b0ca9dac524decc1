"""Settings from ``config.toml``, environment variables and explicit overrides.

Precedence, highest first: explicit keyword argument > environment variable > config file > default.

Layout of the config file (``$PIXELTABLE_CONFIG``, else ``$PIXELTABLE_HOME/config.toml``)::

    [pixeltable]
    input_media_dest = "s3://bucket/in"
    output_media_dest = "s3://bucket/out"
    file_cache_size_g = 20
    retry_budget_s = 60        # how long one storage / HTTP request keeps retrying transient failures
    s3_profile = "default"
    r2_profile = "r2"
    b2_profile = "b2"
    tigris_profile = "tigris"
    db_url = "postgresql+psycopg://user@host:5432/db"   # default: SQLite at $PIXELTABLE_HOME/pxt.db
    api_key = "..."            # Pixeltable Cloud (the home bucket); PIXELTABLE_API_KEY; never printed
    max_image_pixels = 89478485  # the largest image or video frame (width x height) decoded or accepted
    decode_budget_g = 1        # decoded images a process holds at once while computing rows, GiB
    pdf_memory_limit_g = 2     # the PDF reader's child process: address-space limit, GiB
    pdf_timeout_s = 60         # ... and the longest one request to it (open, a page's text or image) may take
    on_error = "abort"         # insert / add_computed_column's default (Pixeltable's); "ignore" keeps bad rows

    [azure]
    storage_account_name = "acct"
    storage_account_key = "..."

Destinations stay plain strings here; checking that they are usable URIs is another module's job.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import pathlib
import threading
import tomllib
import types
import urllib.parse
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pxt_assets.exceptions import ErrorCode, MessageFirst, RequestError
from pxt_assets.redaction import RedactedMessage, register_secret

__all__ = ['ConfigError', 'Settings', 'load_settings']

DEFAULT_FILE_CACHE_SIZE_G = 20.0
# Long enough to ride out a 30 s outage of a store or web source with room for the backoff's last wait.
DEFAULT_RETRY_BUDGET_S = 60.0
# Pillow's own decompression-bomb threshold (Image.MAX_IMAGE_PIXELS: 1 GiB of 24-bit pixels / 3).
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485
# Decoded images in flight across a step's row threads: 16 threads of 16-megapixel RGB images fit.
DEFAULT_DECODE_BUDGET_G = 1.0
# A PDF reader process needs ~40 MB; a page rendered at the pixel limit ~360 MB more: room for both twice.
DEFAULT_PDF_MEMORY_LIMIT_G = 2.0
DEFAULT_PDF_TIMEOUT_S = 60.0

# Keys of [pixeltable] that Pixeltable itself uses but this package does not: they are legitimate in a
# shared config.toml, so warning about them would be noise.
_FOREIGN_PIXELTABLE_KEYS = frozenset({'verbosity', 'hide_warnings', 'log_level', 'time_zone'})

SOURCE_DEFAULT = 'default'
SOURCE_ARGUMENT = 'argument'


class ConfigError(RedactedMessage, MessageFirst, RequestError, ValueError):
    """A setting has a bad value, or the config file cannot be read or parsed.

    The message names the offending key (if any) and where the value came from; ``key`` and ``source``
    carry the same information for callers that want it programmatically.
    """

    default_code = ErrorCode.INVALID_CONFIGURATION

    def __init__(self, message: str, *, key: str | None = None, source: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.source = source


@dataclass(frozen=True)
class Settings:
    """Resolved settings. Build with :func:`load_settings` rather than directly."""

    home: pathlib.Path
    config_path: pathlib.Path
    input_media_dest: str | None = None
    output_media_dest: str | None = None
    file_cache_size_g: float = DEFAULT_FILE_CACHE_SIZE_G
    # Seconds one request to a store or web source keeps retrying transient failures (5xx, throttling,
    # refused or reset connections, timeouts) before its row fails; 0 turns retries off.
    retry_budget_s: float = DEFAULT_RETRY_BUDGET_S
    s3_profile: str | None = None
    r2_profile: str | None = None
    b2_profile: str | None = None
    tigris_profile: str | None = None
    # The row store's database (PostgreSQL to share tables between machines); None: SQLite under home.
    # repr=False: a database URL may carry a password.
    db_url: str | None = field(default=None, repr=False)
    # Pixeltable Cloud: the API key that gets home-bucket credentials (repr=False: a secret), and the
    # control plane's URL (None: Pixeltable's own).
    api_key: str | None = field(default=None, repr=False)
    api_url: str | None = None
    # Untrusted media (docs/reliability.md#bad-files): images and video frames larger than max_image_pixels
    # are row errors before they are decoded; decoded images in flight share one budget per process;
    # PDFs are read in a child process with an address-space limit and a per-request time limit (0: none).
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    decode_budget_g: float = DEFAULT_DECODE_BUDGET_G
    pdf_memory_limit_g: float = DEFAULT_PDF_MEMORY_LIMIT_G
    pdf_timeout_s: float = DEFAULT_PDF_TIMEOUT_S
    # The notebook API's default on_error (t.insert, t.add_computed_column), Pixeltable's 'abort' unless set
    # to 'ignore'. The sensors and the insert job keep bad rows whatever it says (docs/settings.md).
    on_error: str = 'abort'
    # What a catalog entry may make this process run (docs/reliability.md, "The catalog runs no code"):
    # modules a UDF's recorded path may name besides the project's own (the top-level names, or dotted
    # prefixes), and whether UDFs stored pickled (a notebook's) are unpickled and run. None: on with the
    # embedded default database (one user's), off with a shared PostgreSQL one.
    udf_modules: tuple[str, ...] = ()
    allow_pickled_udfs: bool | None = None
    azure_storage_account_name: str | None = None
    # repr=False: Settings get logged and shown in tracebacks; the account key is a secret.
    azure_storage_account_key: str | None = field(default=None, repr=False)
    # Where the account's blob service answers, when not https://<account>.blob.core.windows.net
    # (Azurite, sovereign clouds, private endpoints).
    azure_storage_account_url: str | None = None
    # Provenance, not part of a setting's value: two Settings with equal values are equal whatever their
    # origin, and leaving it out of comparison keeps the frozen dataclass hashable.
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def pickled_udfs_allowed(self) -> bool:
        """`allow_pickled_udfs` as it applies: unset, on for the embedded default, off for PostgreSQL."""
        if self.allow_pickled_udfs is not None:
            return self.allow_pickled_udfs
        return not (self.db_url or '').startswith('postgresql')

    @property
    def media_dir(self) -> pathlib.Path:
        """Directory for locally stored media files."""
        return self.home / 'media'

    @property
    def file_cache_dir(self) -> pathlib.Path:
        """Directory of the file cache for downloaded remote media."""
        return self.home / 'file_cache'

    @property
    def db_path(self) -> pathlib.Path:
        """The embedded row store's SQLite file (used when `db_url` is not set)."""
        return self.home / 'pxt.db'

    @property
    def file_cache_bytes(self) -> int:
        """The file cache limit in bytes (``file_cache_size_g`` is in GiB)."""
        return int(self.file_cache_size_g * 2**30)

    @property
    def decode_budget_bytes(self) -> int:
        """The budget of decoded image bytes in flight, in bytes (``decode_budget_g`` is in GiB)."""
        return int(self.decode_budget_g * 2**30)

    @property
    def pdf_memory_limit_bytes(self) -> int:
        """The PDF reader process's address-space limit in bytes (``pdf_memory_limit_g`` is in GiB)."""
        return int(self.pdf_memory_limit_g * 2**30)


@dataclass(frozen=True)
class _Key:
    """One setting: its Settings field, where it lives in the file, and its environment variable."""

    field: str
    section: str
    file_key: str
    env_var: str
    parse: Callable[[Any, str, str], Any]  # (raw value, key name, source) -> value; raises ConfigError


def _parse_str(raw: Any, key: str, source: str) -> str | None:
    if not isinstance(raw, str):
        raise ConfigError(
            f'{key} must be a string, got {raw!r} ({type(raw).__name__}) (from {source})',
            key=key,
            source=source,
        )
    # Whitespace around a URI or profile name is never meaningful, and "" is how a user blanks out a
    # value set at a lower precedence level.
    return raw.strip() or None


def _parse_secret(raw: Any, key: str, source: str) -> str | None:
    if not isinstance(raw, str):  # not shown: it is a credential
        raise ConfigError(f'{key} must be a string, got a {type(raw).__name__} (from {source})', key=key, source=source)
    value = _parse_str(raw, key, source)
    register_secret(value)  # never printed from now on, wherever it would appear
    return value


def _as_number(raw: Any) -> float | None:
    """A finite number from a TOML number or an environment string; None if it is not one. bool is an int
    subclass, but `file_cache_size_g = true` is a mistake, not 1 GiB; inf/nan parse as floats but are no
    usable size or duration (int(inf) would blow up in file_cache_bytes)."""
    value: float | None = None
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        value = float(raw)
    elif isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            value = None
    return value if value is not None and math.isfinite(value) else None


def _parse_size_g(raw: Any, key: str, source: str) -> float:
    value = _as_number(raw)
    if value is None or value <= 0:
        raise ConfigError(
            f'{key} must be a positive number of GiB, got {raw!r} (from {source})', key=key, source=source
        )
    return value


def _parse_seconds(raw: Any, key: str, source: str) -> float:
    value = _as_number(raw)
    if value is None or value < 0:
        raise ConfigError(
            f'{key} must be a number of seconds (0 or more), got {raw!r} (from {source})', key=key, source=source
        )
    return value


def _parse_pixels(raw: Any, key: str, source: str) -> int:
    value = _as_number(raw)
    if value is None or value < 1 or value != int(value):
        raise ConfigError(
            f'{key} must be a whole number of pixels (1 or more), got {raw!r} (from {source})', key=key, source=source
        )
    return int(value)


def _parse_db_url(raw: Any, key: str, source: str) -> str | None:
    if not isinstance(raw, str):  # not shown: a database URL may hold a password
        raise ConfigError(f'{key} must be a string (a database URL), got a {type(raw).__name__} (from {source})',
                          key=key, source=source)
    value = _parse_str(raw, key, source)
    if value is None:
        return None
    scheme = value.split('://', 1)[0].lower() if '://' in value else ''
    if not (scheme == 'sqlite' or scheme.startswith('sqlite+') or scheme.startswith('postgresql')):
        # Only the scheme is shown: the rest of a database URL may hold a password.
        raise ConfigError(
            f'{key} must be a SQLAlchemy URL such as postgresql+psycopg://user@host:5432/db or '
            f'sqlite:////path/pxt.db, got a value with scheme {scheme + "://" if scheme else "(none)"!r} '
            f'(from {source})', key=key, source=source,
        )
    with contextlib.suppress(ValueError):  # the password: never printed from now on
        register_secret(urllib.parse.unquote(urllib.parse.urlsplit(value).password or ''))
    if scheme.startswith('postgresql') and '+' not in scheme:
        value = 'postgresql+psycopg' + value[len(scheme):]  # psycopg 3, installed with the project
    return value


def _parse_modules(raw: Any, key: str, source: str) -> tuple[str, ...]:
    items = raw.split(',') if isinstance(raw, str) else raw
    if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) for i in items):
        raise ConfigError(f'{key} must be a list of module names (or a comma-separated string), got {raw!r} '
                          f'(from {source})', key=key, source=source)
    names = tuple(i.strip() for i in items if i.strip())
    bad = [n for n in names if not all(part.isidentifier() for part in n.split('.'))]
    if bad:
        raise ConfigError(f'{key}: not module names: {bad!r} (from {source})', key=key, source=source)
    return names


def _parse_bool(raw: Any, key: str, source: str) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in ('1', 'true', 'yes', 'on'):
        return True
    if text in ('0', 'false', 'no', 'off'):
        return False
    raise ConfigError(f'{key} must be true or false, got {raw!r} (from {source})', key=key, source=source)


def _parse_on_error(raw: Any, key: str, source: str) -> str:
    value = str(raw).strip().lower() if isinstance(raw, str) else raw
    if value not in ('abort', 'ignore'):
        raise ConfigError(f"{key} must be 'abort' or 'ignore', got {raw!r} (from {source})", key=key, source=source)
    return value


def _pixeltable_key(name: str, parse: Callable[[Any, str, str], Any] = _parse_str) -> _Key:
    return _Key(name, 'pixeltable', name, f'PIXELTABLE_{name.upper()}', parse)


_KEYS: tuple[_Key, ...] = (
    _pixeltable_key('input_media_dest'),
    _pixeltable_key('output_media_dest'),
    _pixeltable_key('file_cache_size_g', _parse_size_g),
    _pixeltable_key('retry_budget_s', _parse_seconds),
    _pixeltable_key('max_image_pixels', _parse_pixels),
    _pixeltable_key('decode_budget_g', _parse_size_g),
    _pixeltable_key('pdf_memory_limit_g', _parse_size_g),
    _pixeltable_key('pdf_timeout_s', _parse_seconds),
    _pixeltable_key('on_error', _parse_on_error),
    _pixeltable_key('s3_profile'),
    _pixeltable_key('r2_profile'),
    _pixeltable_key('b2_profile'),
    _pixeltable_key('tigris_profile'),
    _pixeltable_key('db_url', _parse_db_url),
    _pixeltable_key('api_key', _parse_secret),
    _pixeltable_key('api_url'),
    _pixeltable_key('udf_modules', _parse_modules),
    _pixeltable_key('allow_pickled_udfs', _parse_bool),
    _Key('azure_storage_account_name', 'azure', 'storage_account_name', 'AZURE_STORAGE_ACCOUNT_NAME',
         _parse_str),
    _Key('azure_storage_account_key', 'azure', 'storage_account_key', 'AZURE_STORAGE_ACCOUNT_KEY',
         _parse_secret),
    _Key('azure_storage_account_url', 'azure', 'storage_account_url', 'AZURE_STORAGE_ACCOUNT_URL',
         _parse_str),
)

_OVERRIDABLE = frozenset({'home', 'config_path'} | {k.field for k in _KEYS})


def _env(environ: Mapping[str, str], name: str) -> str | None:
    """The variable's value, or None if it is unset or blank (so `export X=` does not mask the file)."""
    value = environ.get(name)
    if value is None or not value.strip():
        return None
    return value


def _as_path(raw: Any, key: str, source: str) -> pathlib.Path:
    if not isinstance(raw, (str, os.PathLike)) or not os.fspath(raw):
        raise ConfigError(
            f'{key} must be a non-empty path, got {raw!r} (from {source})', key=key, source=source
        )
    return pathlib.Path(raw).expanduser()


def _read_config_file(path: pathlib.Path) -> dict[str, Any]:
    """Parse the config file; a missing file means "all defaults"."""
    try:
        with path.open('rb') as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f'{path}: invalid TOML: {e}', source=str(path)) from e
    except UnicodeDecodeError as e:
        raise ConfigError(f'{path}: invalid TOML: file is not UTF-8 ({e})', source=str(path)) from e
    except OSError as e:
        # e.g. the path is a directory or unreadable: the user pointed us at it, so say so rather than
        # silently running with defaults.
        raise ConfigError(f'{path}: cannot read config file: {e}', source=str(path)) from e


def _section(doc: Mapping[str, Any], name: str, path: pathlib.Path) -> Mapping[str, Any]:
    section = doc.get(name, {})
    if not isinstance(section, dict):
        raise ConfigError(
            f'{path}: [{name}] must be a table, got {type(section).__name__} {section!r}',
            key=name,
            source=str(path),
        )
    return section


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Read settings from the config file and environment, applying explicit overrides on top.

    Args:
        environ: Environment variables to consult; defaults to ``os.environ``.
        **overrides: Explicit values, named as the :class:`Settings` fields (``home`` and ``config_path``
            included). They take precedence over everything else. ``None`` means "not given" (so callers can
            pass optional CLI arguments straight through); to force a string setting to unset, pass ``""``.

    Returns:
        The resolved :class:`Settings`; ``sources`` maps every field to where its value came from.

    Raises:
        TypeError: An override name is not a setting.
        ConfigError: A value is invalid, or the config file is unreadable or not valid TOML.
    """
    unknown = sorted(set(overrides) - _OVERRIDABLE)
    if unknown:
        names = ', '.join(map(repr, unknown))
        raise TypeError(f'load_settings() got unexpected keyword argument(s): {names}')
    if environ is None:
        environ = os.environ
    given = {name: value for name, value in overrides.items() if value is not None}

    sources: dict[str, str] = {}
    values: dict[str, Any] = {}

    # home and config_path decide which file is read, so they come from arguments and the environment only.
    if 'home' in given:
        home, sources['home'] = _as_path(given['home'], 'home', SOURCE_ARGUMENT), SOURCE_ARGUMENT
    elif (env_home := _env(environ, 'PIXELTABLE_HOME')) is not None:
        source = 'environment variable PIXELTABLE_HOME'
        home, sources['home'] = _as_path(env_home.strip(), 'home', source), source
    else:
        home, sources['home'] = pathlib.Path('~/.pixeltable').expanduser(), SOURCE_DEFAULT

    if 'config_path' in given:
        config_path = _as_path(given['config_path'], 'config_path', SOURCE_ARGUMENT)
        sources['config_path'] = SOURCE_ARGUMENT
    elif (env_config := _env(environ, 'PIXELTABLE_CONFIG')) is not None:
        source = 'environment variable PIXELTABLE_CONFIG'
        config_path, sources['config_path'] = _as_path(env_config.strip(), 'config_path', source), source
    else:
        # Follows home, so relocating home relocates the config file with it.
        config_path, sources['config_path'] = home / 'config.toml', SOURCE_DEFAULT

    doc = _read_config_file(config_path)
    sections = {name: _section(doc, name, config_path) for name in ('pixeltable', 'azure')}

    for key in _KEYS:
        if key.field in given:
            source = SOURCE_ARGUMENT
            value = key.parse(given[key.field], key.field, source)
        elif (env_value := _env(environ, key.env_var)) is not None:
            source = f'environment variable {key.env_var}'
            value = key.parse(env_value, key.field, source)
        elif key.file_key in sections[key.section]:
            source = f'{config_path} [{key.section}]'
            value = key.parse(sections[key.section][key.file_key], key.file_key, source)
        else:
            continue  # dataclass default; recorded below
        values[key.field] = value
        sources[key.field] = source

    # Only [pixeltable] is checked: [azure] may be shared with other Azure tooling.
    known = {k.file_key for k in _KEYS if k.section == 'pixeltable'} | _FOREIGN_PIXELTABLE_KEYS
    for name in sections['pixeltable']:
        if name not in known:
            warnings.warn(
                f'{config_path} [pixeltable]: unknown key {name!r} ignored', UserWarning, stacklevel=2
            )

    for f in dataclasses.fields(Settings):
        sources.setdefault(f.name, SOURCE_DEFAULT)
    del sources['sources']
    return Settings(home=home, config_path=config_path, **values, sources=types.MappingProxyType(sources))


# Only these variables can change the settings: looking them up is much cheaper than scanning os.environ.
_ENV_NAMES = ('PIXELTABLE_HOME', 'PIXELTABLE_CONFIG', *(k.env_var for k in _KEYS))
_CURRENT: tuple[tuple[Any, ...], Settings] | None = None
_CURRENT_LOCK = threading.Lock()


def _env_values() -> tuple[str | bytes | None, ...]:
    """The values of _ENV_NAMES, compared to know whether settings must be re-read (not used as values)."""
    data = getattr(os.environ, '_data', None)
    if isinstance(data, dict) and os.name == 'posix':
        # os.environ.get() raises and catches KeyError for every unset name: storage calls this per operation.
        return tuple(map(data.get, _ENV_NAMES_BYTES))  # no generator frame: half the cost
    return tuple(os.environ.get(name) for name in _ENV_NAMES)


_ENV_NAMES_BYTES = tuple(os.fsencode(name) for name in _ENV_NAMES)


@functools.lru_cache(maxsize=64)
def _config_file(home: str | None, config: str | None) -> str:
    return config or os.path.join(os.path.expanduser(home or '~/.pixeltable'), 'config.toml')


def current_settings() -> Settings:
    """The settings for the current environment and config file, re-read only when either changes.

    Storage code asks for settings on every operation; this keeps that to an environment scan and one
    stat() of the config file instead of parsing TOML each time.
    """
    global _CURRENT
    env = _env_values()
    config = _config_file(*(None if v is None else os.fsdecode(v) for v in env[:2]))
    try:
        stat = os.stat(config)
        stamp: tuple[Any, ...] = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
    except OSError:
        stamp = ()
    key = (env, config, stamp)
    current = _CURRENT  # one atomic read: row threads call this per storage operation, without a lock
    if current is not None and current[0] == key:
        return current[1]
    settings = load_settings()
    with _CURRENT_LOCK:
        _CURRENT = (key, settings)
    return settings
