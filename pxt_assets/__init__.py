"""pxt_assets: Pixeltable-style media storage (destinations, file cache, fileurls) as Dagster assets.

    import pxt_assets as pxt
    media = pxt.MediaTable("blob_storage_demo/media", {"source_image": pxt.Image})
    media.add_computed_column(rotated=media.source_image.rotate(90), destination="/data/rotated")
    defs = pxt.definitions(media)
"""

from pxt_assets import console, functions
from pxt_assets.api import (
    InsertResult,
    MediaTable,
    UpdateStatus,
    MediaView,
    Query,
    ResultSet,
    create_dir,
    create_table,
    create_view,
    definitions,
    drop_dir,
    drop_table,
    get_table,
    list_tables,
)
from pxt_assets.functions.udf import UDF, Batch, udf
from pxt_assets.config import ConfigError, Settings, load_settings
from pxt_assets.exceptions import (
    AlreadyExistsError,
    AuthorizationError,
    ConcurrencyError,
    Error,
    ErrorCode,
    ExternalServiceError,
    NotFoundError,
    PixeltableWarning,
    RequestError,
    ServiceUnavailableError,
)
from pxt_assets.io_managers.destinations import DestinationError
from pxt_assets.media import Audio, Bool, ColumnType, Document, Float, Image, Int, Json, Required, String, Video
from pxt_assets.redaction import install_log_redaction
from pxt_assets.spec import ColumnTypeError, SpecError
from pxt_assets.components import MediaTableComponent

install_log_redaction()  # no log record made in this process carries a credential (pxt_assets.redaction)
console.quiet_dagster_warnings()  # Dagster's warnings about its own beta internals (PXT_VERBOSE=1 shows them)

__all__ = [
    "functions", "MediaTable", "MediaTableComponent", "MediaView", "create_view", "Query", "ResultSet", "InsertResult", "definitions",
    "create_dir", "drop_dir", "create_table", "get_table", "list_tables", "drop_table",
    "udf", "UDF", "Batch", "ColumnTypeError",
    "Settings", "load_settings", "ConfigError", "SpecError", "DestinationError",
    "Error", "ErrorCode", "RequestError", "NotFoundError", "AlreadyExistsError", "AuthorizationError",
    "ExternalServiceError", "ServiceUnavailableError", "ConcurrencyError", "PixeltableWarning",
    "ColumnType", "Required", "UpdateStatus", "Image", "Video", "Audio", "Document", "String", "Int", "Float", "Bool", "Json",
]
