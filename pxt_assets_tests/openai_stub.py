"""A local OpenAI-compatible server for the tests: `POST /v1/chat/completions` on 127.0.0.1, recording what it
was sent. It can answer the first requests with 429 / 503 (and a Retry-After header) to exercise retries, and
refuse every key but one with a 401 that quotes the key it was sent (as OpenAI's "Incorrect API key provided")."""

from __future__ import annotations

import http.server
import json
import threading
import time
from typing import Any


class OpenAIStub:
    def __init__(self, *, failures: list[tuple[int, str | None]] | None = None, accepted_key: str | None = None) -> None:
        self.requests: list[dict[str, Any]] = []  # {"at": monotonic time, "body": ..., "auth": ..., "status": ...}
        self.failures = list(failures or [])  # (status, Retry-After) for the first requests, in order
        self.lock = threading.Lock()
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub.lock:
                    failure = stub.failures.pop(0) if stub.failures else None
                    stub.requests.append({"at": time.monotonic(), "path": self.path, "body": body,
                                          "auth": self.headers.get("Authorization"),
                                          "status": failure[0] if failure else 200})
                    n = sum(1 for r in stub.requests if r["status"] == 200)
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                key = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                if accepted_key is not None and key != accepted_key:
                    return self._send(401, {"error": {"message": f"Incorrect API key provided: {key}. You can find "
                                                                 "your API key at https://platform.openai.com/account/api-keys.",
                                                      "type": "invalid_request_error", "code": "invalid_api_key"}})
                if failure is not None:
                    status, retry_after = failure
                    headers = {"Retry-After": retry_after} if retry_after else {}
                    return self._send(status, {"error": {"message": "slow down", "type": "rate_limit"}}, headers)
                return self._send(200, stub.completion(body, n))

            def _send(self, status: int, payload: dict, headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    @staticmethod
    def describe(body: dict) -> str:
        """The stub's answer: which model, and how many images (data URLs) and texts it was sent."""
        parts = [p for m in body["messages"] for p in (m["content"] if isinstance(m["content"], list) else [])]
        images = sum(1 for p in parts if p.get("type") == "image_url")
        texts = [p["text"] for p in parts if p.get("type") == "text"]
        return f"{body['model']} saw {images} image(s); asked: {' '.join(texts)}"

    def completion(self, body: dict, n: int) -> dict:
        return {
            "id": f"chatcmpl-{n}", "object": "chat.completion", "created": 1_700_000_000, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": self.describe(body)}}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
