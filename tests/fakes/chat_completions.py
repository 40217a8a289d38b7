"""A local stand-in for an OpenAI-compatible chat-completions server: real HTTP on 127.0.0.1.

It checks the key, the model and the request body as the real API does (messages with roles,
`response_format` of type text, json_object or json_schema with a name and a schema) and answers
with the next scripted reply in a `chat.completion` object. `fail_next` answers with an error
status instead. Every request is recorded for the tests to read.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API_KEY = "sk-chat-test-789"
MODELS = {"gpt-4o-mini", "qwen2.5-0.5b-instruct"}
ROLES = {"system", "user", "assistant", "developer", "tool"}


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeChat:
    requests: list[Recorded] = field(default_factory=list)
    replies: deque[str] = field(default_factory=deque)
    _failures: deque[int] = field(default_factory=deque)

    def start(self) -> None:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def reply(self, *contents: str) -> None:
        """The assistant's next answers, in order."""
        self.replies.extend(contents)

    def fail_next(self, status: int, times: int = 1) -> None:
        self._failures.extend([status] * times)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeChat

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read `fake.requests` instead."""

    def do_GET(self) -> None:
        if self.path == "/v1/models" and self._authorised():
            data = [{"id": m, "object": "model", "owned_by": "fake"} for m in sorted(MODELS)]
            self._json(200, {"object": "list", "data": data})
        elif self.path != "/v1/models":
            self._json(404, {"error": {"message": "Not found", "type": "invalid_request_error"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.fake.requests.append(Recorded(self.path, headers, body))
        if self.path != "/v1/chat/completions":
            return self._error(404, f"Unknown request URL: POST {self.path}.")
        if not self._authorised():
            return None
        if self.fake._failures:
            return self._error(self.fake._failures.popleft(), "fake failure")
        if (problem := _problem(body)) is not None:
            return self._error(400, problem)
        if body["model"] not in MODELS:
            return self._error(404, f"The model `{body['model']}` does not exist.")
        if not self.fake.replies:
            return self._error(500, "the fake has no scripted reply left")
        content = self.fake.replies.popleft()
        prompt = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        completion = {
            "id": f"chatcmpl-{len(self.fake.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": len(content.split()),
                "total_tokens": prompt + len(content.split()),
            },
        }
        return self._json(200, completion)

    def _authorised(self) -> bool:
        if self.headers.get("Authorization") != f"Bearer {API_KEY}":
            self._json(
                401,
                {
                    "error": {
                        "message": "Incorrect API key provided.",
                        "type": "invalid_request_error",
                        "code": "invalid_api_key",
                    }
                },
            )
            return False
        return True

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"error": {"message": message, "type": "invalid_request_error"}})

    def _json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _problem(body: Any) -> str | None:
    """What the real API would refuse in a request body, or None."""
    if not isinstance(body, dict):
        return "We could not parse the JSON body of your request."
    for required in ("model", "messages"):
        if required not in body:
            return f"Missing required parameter: '{required}'."
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        return "Invalid 'messages': empty array."
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            return f"Invalid value for 'messages[{index}].role'."
        if not isinstance(message.get("content"), str):
            return f"Invalid type for 'messages[{index}].content'."
    kind = (body.get("response_format") or {"type": "text"}).get("type")
    if kind not in {"text", "json_object", "json_schema"}:
        return f"Invalid value for 'response_format.type': '{kind}'."
    if kind == "json_schema":
        schema = body["response_format"].get("json_schema")
        if not isinstance(schema, dict) or "name" not in schema:
            return "Missing required parameter: 'response_format.json_schema.name'."
        if not isinstance(schema.get("schema"), dict):
            return "Invalid type for 'response_format.json_schema.schema'."
    return None
