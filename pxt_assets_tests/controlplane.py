"""A stand-in for Pixeltable Cloud's control plane on 127.0.0.1, speaking Pixeltable 0.7.21's home-bucket
protocol (get_bucket_credentials, get_presigned_urls), with a moto bucket behind a gate that accepts only
the temporary keys it issued, and only until they expire: a client that does not refresh its credentials
is refused, as R2 would refuse it.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
import time
import urllib.parse

from pxt_assets_tests.faultproxy import FaultProxy

_CREDENTIAL = re.compile(r"Credential=([^/,\s&]+)/")


class ControlPlane:
    def __init__(self, moto, *, api_key: str = "pxt-test-key-0123456789", ttl_seconds: float = 3600) -> None:
        self.moto = moto
        self.api_key = api_key
        self.ttl_seconds = ttl_seconds
        self.physical = "pxt-home-" + format(int(time.time() * 1000) % 10**9, "x")
        moto.client().create_bucket(Bucket=self.physical)
        self.lock = threading.Lock()
        self.issued: dict[str, float] = {}  # access key -> expiry (monotonic)
        self.calls: list[dict] = []  # request bodies, in order
        self.no_space_left = False
        self.no_space_detail: str | None = None
        self.refuse_code: str | None = None  # STORE_FULL / PLAN_LIMIT / PAYMENT_REQUIRED on every request
        self.gate = FaultProxy("127.0.0.1", moto.port)
        self.gate.gate = self._check_signature
        self.rejected: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                with outer.lock:
                    outer.calls.append(body)
                if self.headers.get("X-api-key") != outer.api_key:
                    return self._answer(401, "Unauthorized : invalid API key")
                if outer.refuse_code:
                    return self._answer(402, "Payment Required : Your plan's storage is used up; upgrade at "
                                             "https://pixeltable.com/billing", code=outer.refuse_code)
                op = body.get("operation_type")
                if op == "get_bucket_credentials":
                    return self._answer(200, outer._credentials(body))
                if op == "get_presigned_urls":
                    keys = body.get("keys") or []
                    if len(keys) > 100:
                        return self._answer(400, "Bad Request : at most 100 keys")
                    return self._answer(200, {"urls": {k: outer._sign(k, body["expires_in"]) for k in keys},
                                              "expires_in": body["expires_in"]})
                return self._answer(400, f"Bad Request : unknown operation {op!r}")

            def _answer(self, status: int, payload, code: str | None = None) -> None:
                data = (json.dumps(payload) if not isinstance(payload, str) else payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if not isinstance(payload, str) else "text/plain")
                if code:
                    self.send_header("X-Pixeltable-Error-Code", code)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api"
        # polled every 50 ms (not 0.5 s), so that close() returns at once
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    # -- what the control plane does --------------------------------------------------------------------
    def _credentials(self, body: dict) -> dict:
        with self.lock:
            n = len(self.issued) + 1
            key = f"PXTAK{n:06d}"
            self.issued[key] = time.monotonic() + self.ttl_seconds
        return {"access_key_id": key, "secret_access_key": f"pxt-secret-{n}", "session_token": f"pxt-token-{n}",
                "endpoint_url": self.gate.endpoint, "storage_provider": "r2",
                "resolved_bucket_name": self.physical, "ttl_seconds": int(self.ttl_seconds) or 1,
                "prefix": body.get("prefix"), "no_space_left": self.no_space_left,
                "no_space_detail": self.no_space_detail}

    def _sign(self, key: str, expires_in: int) -> str:
        import boto3

        backend = boto3.client("s3", endpoint_url=self.moto.endpoint, region_name="us-east-1",
                               aws_access_key_id="backend", aws_secret_access_key="backend-secret")
        return backend.generate_presigned_url("get_object", Params={"Bucket": self.physical, "Key": key},
                                              ExpiresIn=expires_in)

    def _check_signature(self, method: str, path: str, headers) -> tuple[int, bytes] | None:
        m = _CREDENTIAL.search(headers.get("Authorization") or "") or _CREDENTIAL.search(
            urllib.parse.unquote(path))
        key = m.group(1) if m else None
        with self.lock:
            expiry = self.issued.get(key) if key else None
            if expiry is not None and time.monotonic() < expiry:
                return None
            self.rejected.append(f"{method} {path} with {key}")
        return 403, (b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>ExpiredToken</Code>"
                     b"<Message>The provided token has expired.</Message></Error>")

    # -- for tests --------------------------------------------------------------------------------------
    def ops(self, name: str) -> list[dict]:
        with self.lock:
            return [c for c in self.calls if c.get("operation_type") == name]

    def expired(self, key: str) -> bool:
        with self.lock:
            return time.monotonic() >= self.issued[key]

    def objects(self) -> set[str]:
        return {o["Key"] for o in self.moto.client().list_objects_v2(Bucket=self.physical).get("Contents", [])}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.gate.close()
