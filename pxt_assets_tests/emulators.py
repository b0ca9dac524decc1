"""Real storage emulators on 127.0.0.1, started by the test fixtures: moto (S3), gcp-storage-emulator (GCS),
Azurite (Azure Blob, from npm). Each counts nothing itself; tests count requests at the client or server.
moto and PostgreSQL are started by the package's pxt_assets/localservers.py (the scale demo uses them too)."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

from pxt_assets.localservers import (  # noqa: F401 - the tests' emulators, with those below
    MotoS3,
    Postgres,
    free_port,
    postgres_bin_dir,
    wait_for_port,
)

REPO = pathlib.Path(__file__).resolve().parent.parent

# Azurite's well-known development account (public, documented by Microsoft; not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


class GcsEmulator:
    """gcp-storage-emulator, in-memory, in a thread of the test process."""

    def __init__(self) -> None:
        from gcp_storage_emulator.server import create_server

        self.port = free_port()
        self.server = create_server("127.0.0.1", self.port, in_memory=True)
        self.server.start()
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def client(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(project="test", credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": self.endpoint})

    def stop(self) -> None:
        self.server.stop()


def azurite_binary() -> str | None:
    local = REPO / "node_modules" / ".bin" / "azurite-blob"
    return str(local) if local.exists() else shutil.which("azurite-blob")


class Azurite:
    """Azurite's blob service as a child process (it enforces SAS signatures and expiry)."""

    def __init__(self, workdir: pathlib.Path) -> None:
        binary = azurite_binary()
        if binary is None:
            raise FileNotFoundError("azurite-blob not installed (npm install in the repo root)")
        self.port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [binary, "--blobHost", "127.0.0.1", "--blobPort", str(self.port), "--location", str(workdir),
             "--silent", "--disableTelemetry", "--skipApiVersionCheck", "--loose"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        wait_for_port(self.port)
        self.account_url = f"http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT}"

    def client(self):
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient(account_url=self.account_url,
                                 credential={"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY})

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, 15)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)


