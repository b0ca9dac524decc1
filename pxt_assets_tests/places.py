"""A fresh, empty place on one storage provider, and direct access to it behind the store's back: a local
folder, a bucket on moto (S3), on gcp-storage-emulator (GCS), a container on Azurite (Azure), or a folder of
the home bucket (a stand-in control plane over moto). The store contract, the cloud pipeline tests and the
lifecycle and watch tests all use it, so one test body covers every provider."""

from __future__ import annotations

import pathlib
import re
import urllib.parse
import uuid

from pxt_assets import stores
from pxt_assets.stores.local import file_url, path_of
from pxt_assets_tests.conftest import unique_bucket
from pxt_assets_tests.emulators import AZURITE_ACCOUNT

PROVIDERS = ["local", "s3", "gcs", "azure", "pxt"]
#: the fixture that starts each provider's server (and points its environment variables at it)
SERVER_FIXTURE = {"s3": "s3_env", "gcs": "gcs_env", "azure": "azure_env", "pxt": "home_cloud"}
HOME = "pxt://acme:main/buckets/home"

# What urllib3 logs for each request: 'http://127.0.0.1:PORT "GET /path?query HTTP/1.1" 200 None'.
_REQUEST = re.compile(r'"GET (\S+) HTTP/')


class Place:
    """`server`: the emulator (S3, GCS, Azure) or the control plane (pxt); `root`: the folder (local)."""

    def __init__(self, name: str, server=None, root: pathlib.Path | None = None) -> None:
        self.name, self.server = name, server
        self.bucket = unique_bucket("place")  # the bucket or container (on the home bucket: the physical one)
        self.key_prefix = ""  # what stands before a name in the bucket's keys
        if name == "local":
            assert root is not None
            root.mkdir(parents=True)
            self.root = root
            self.prefix = file_url(root) + "/"
        elif name == "s3":
            server.client().create_bucket(Bucket=self.bucket)
            self.prefix = f"s3://{self.bucket}/"
        elif name == "gcs":
            server.client().create_bucket(self.bucket)
            self.prefix = f"gs://{self.bucket}/"
        elif name == "azure":
            server.client().create_container(self.bucket)
            self.prefix = f"wasbs://{self.bucket}@{AZURITE_ACCOUNT}.blob.core.windows.net/"
        elif name == "pxt":
            self.bucket, self.key_prefix = server.physical, uuid.uuid4().hex[:8] + "/"
            self.prefix = f"{HOME}/{self.key_prefix}"
        else:
            raise ValueError(f"no such provider: {name}")
        self.store = stores.store_for(self.prefix)

    def uri(self, name: str) -> str:
        return self.prefix + name

    def put(self, name: str, data: bytes) -> str:
        """Store `data` as `name` through the store; its URI."""
        uri = self.uri(name)
        self.store.write_bytes(data, uri)
        return uri

    def objects(self, under: str = "") -> list[str]:
        return sorted(self.store.list(self.prefix + under))

    def shown(self, uri: str) -> str:
        """How a message names the file at `uri` (local files by their path)."""
        return str(path_of(uri)) if self.name == "local" else uri

    # -- behind the store's back --------------------------------------------------------------------------

    def _key(self, uri: str) -> str:
        return self.key_prefix + uri.removeprefix(self.prefix)

    def content_type(self, uri: str) -> str:
        """The Content-Type the provider stored `uri` under, read with its own client."""
        key = self._key(uri)
        if self.name in ("s3", "pxt"):
            s3 = self.server.moto.client() if self.name == "pxt" else self.server.client()
            return s3.head_object(Bucket=self.bucket, Key=key)["ContentType"]
        if self.name == "gcs":
            return self.server.client().bucket(self.bucket).get_blob(key).content_type
        if self.name == "azure":
            props = self.server.client().get_blob_client(self.bucket, key).get_blob_properties()
            return props.content_settings.content_type
        raise ValueError("local files have no content type")

    def put_noise(self, folder: str) -> None:
        """Things under `folder` that are not objects: folder markers, hidden and temporary files."""
        if self.name == "local":
            base = self.root / folder
            (base / ".hidden.jpg").write_bytes(b"h")
            (base / ".tmp-abc123.jpg").write_bytes(b"half a file")
            (base / ".git").mkdir()
            (base / ".git" / "config").write_bytes(b"c")
            (base / "emptydir").mkdir()
        elif self.name in ("s3", "pxt"):
            s3 = self.server.moto.client() if self.name == "pxt" else self.server.client()
            s3.put_object(Bucket=self.bucket, Key=f"{self.key_prefix}{folder}/marker/", Body=b"")
        elif self.name == "gcs":
            self.server.client().bucket(self.bucket).blob(f"{folder}/marker/").upload_from_string(b"")
        else:  # an ADLS Gen2 directory, as the Blob API shows it
            self.server.client().get_blob_client(self.bucket, f"{folder}/marker").upload_blob(
                b"", metadata={"hdi_isfolder": "true"})

    def list_requests(self, caplog) -> list[dict[str, list[str]]]:
        """The query parameters of every listing request made to this bucket, in order, as urllib3 logged
        them (caplog at DEBUG for urllib3.connectionpool)."""
        found = []
        for record in caplog.records:
            m = _REQUEST.search(record.getMessage()) if record.name == "urllib3.connectionpool" else None
            if not m:
                continue
            parts = urllib.parse.urlsplit(m.group(1))
            query = urllib.parse.parse_qs(parts.query)
            if ((self.name in ("s3", "pxt") and parts.path == f"/{self.bucket}" and query.get("list-type") == ["2"])
                    or (self.name == "gcs" and parts.path.endswith(f"/b/{self.bucket}/o"))
                    or (self.name == "azure" and parts.path == f"/{AZURITE_ACCOUNT}/{self.bucket}"
                        and query.get("comp") == ["list"])):
                found.append(query)
        return found

    @property
    def page_param(self) -> str:
        """The query parameter carrying a listing's page size."""
        return {"s3": "max-keys", "pxt": "max-keys", "gcs": "maxResults", "azure": "maxresults"}[self.name]


def place_for(name: str, request, tmp_path: pathlib.Path) -> Place:
    """A Place on `name`, its server started by its fixture. GCS gets a service-account key of its own, to
    sign URLs with."""
    if name == "local":
        return Place("local", root=tmp_path / "root")
    server = request.getfixturevalue(SERVER_FIXTURE[name])  # Azure skips only where Azurite (npm) is missing
    if name == "gcs":
        request.getfixturevalue("gcs_signing_key")
    return Place(name, server)

