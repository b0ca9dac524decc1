"""Local servers on 127.0.0.1 for the scale demo (pxt_assets/scale_demo.py) and the tests: a throwaway
PostgreSQL cluster (Debian's server binaries) and moto's S3 server (the `moto[server]` package, in the
`scale-demo` and `test` extras). The tests' other emulators (GCS, Azurite) are in pxt_assets_tests/emulators.py.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import socket
import subprocess
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout_s} s")


class MotoS3:
    """moto's S3 server (moto[server]), in a thread of this process."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        _, self.port = self.server.get_host_and_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def resource(self):
        """A dagster-aws S3Resource for this server (any credentials: moto does not check them)."""
        from dagster_aws.s3 import S3Resource

        return S3Resource(endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")

    def client(self):
        """An S3 client of this server (the resource's)."""
        return self.resource().get_client()

    def stop(self) -> None:
        self.server.stop()


def postgres_bin_dir() -> pathlib.Path | None:
    """Debian's PostgreSQL server binaries (`./dev test` and `./dev scale-demo` install the `postgresql` package)."""
    found = sorted(pathlib.Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return pathlib.Path(initdb).parent if initdb else None


class Postgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1 (trust auth, its own data folder), stopped at the end.

    As root, the cluster runs as the `postgres` user the Debian package creates (PostgreSQL refuses root)."""

    def __init__(self, *, durable: bool = False) -> None:
        """`durable`: PostgreSQL's default fsync and commit settings (for benchmarks); tests turn them off."""
        import tempfile

        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise FileNotFoundError("PostgreSQL server binaries not found: ./dev test and ./dev scale-demo install "
                                    "Debian's postgresql package (apt-get install postgresql)")
        self.bin_dir = bin_dir
        # Not under pytest's tmp_path: its folders are private to root, and the server runs as `postgres`.
        workdir = self.workdir = pathlib.Path(tempfile.mkdtemp(prefix="pxt-postgres-"))
        self.data = workdir / "data"
        self.sockets = workdir / "sockets"
        self.log = workdir / "postgres.log"
        self.data.mkdir(parents=True)
        self.sockets.mkdir()
        self.as_root = os.geteuid() == 0
        if self.as_root:
            shutil.chown(workdir, "postgres")
            for p in (self.data, self.sockets):
                shutil.chown(p, "postgres")
            os.chmod(workdir, 0o755)
        self.port = free_port()
        self._run([str(bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                   "--no-sync"])
        fast = "" if durable else "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
        self._run([str(bin_dir / "pg_ctl"), "-D", str(self.data), "-w", "-l", str(self.log), "-o",
                   f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.sockets} {fast}"
                   "-c max_connections=200", "start"])
        self._n = 0

    def _run(self, cmd: list[str]) -> None:
        if self.as_root:
            cmd = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(_shell_quote(c) for c in cmd)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            log = self.log.read_text()[-3000:] if self.log.exists() else ""
            raise RuntimeError(f"{cmd!r} failed: {done.stdout[-2000:]} {done.stderr[-2000:]} {log}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "pxt") -> str:
        """A fresh, empty database; returns its SQLAlchemy URL."""
        import psycopg

        self._n += 1
        name = f"{prefix}_{os.getpid()}_{self._n}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"])
        except RuntimeError:
            pass
        shutil.rmtree(self.workdir, ignore_errors=True)


def _shell_quote(s: str) -> str:
    import shlex

    return shlex.quote(s)
