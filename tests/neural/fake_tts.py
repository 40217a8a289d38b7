"""A local stand-in for the OpenAI and ElevenLabs speech APIs: a real HTTP server on 127.0.0.1.

It checks credentials and request bodies as the real services do and answers with real 24 kHz
PCM (or WAV) audio, a tone whose length follows the text. `fail_next` makes it answer the next
requests with an error status (and Retry-After), to exercise the clients' retries.
"""

from __future__ import annotations

import io
import json
import threading
import wave
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np

OPENAI_KEY = "sk-test-123"
ELEVEN_KEY = "xi-test-456"
OPENAI_MODELS = {"tts-1", "tts-1-hd", "gpt-4o-mini-tts"}
OPENAI_VOICES = {
    "alloy",
    "ash",
    "ballad",
    "coral",
    "echo",
    "fable",
    "nova",
    "onyx",
    "sage",
    "shimmer",
    "verse",
}
ELEVEN_MODELS = {"eleven_multilingual_v2", "eleven_turbo_v2_5", "eleven_flash_v2_5"}
ELEVEN_FORMATS = {"pcm_16000": 16000, "pcm_22050": 22050, "pcm_24000": 24000, "pcm_44100": 44100}
ELEVEN_VOICES = [
    {"voice_id": "v-young-f", "name": "Tia", "labels": {"gender": "female", "age": "young"}},
    {"voice_id": "v-mid-f", "name": "Rae", "labels": {"gender": "female", "age": "middle aged"}},
    {"voice_id": "v-old-f", "name": "Ida", "labels": {"gender": "female", "age": "old"}},
    {"voice_id": "v-mid-m", "name": "Sam", "labels": {"gender": "male", "age": "middle aged"}},
    {"voice_id": "v-old-m", "name": "Abe", "labels": {"gender": "male", "age": "old"}},
]


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class FakeTTS:
    requests: list[Recorded] = field(default_factory=list)
    _failures: deque[tuple[int, str | None]] = field(default_factory=deque)

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
        return f"http://{host}:{port}"

    def fail_next(self, status: int, times: int = 1, retry_after: str | None = None) -> None:
        self._failures.extend([(status, retry_after)] * times)


def tone(seconds: float, rate: int, pitch: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * pitch * t) * 32767).astype("<i2")


class _Handler(BaseHTTPRequestHandler):
    fake: FakeTTS

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read `fake.requests` instead."""

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        url = urlparse(self.path)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.fake.requests.append(Recorded(method, url.path, parse_qs(url.query), headers, body))
        if self.fake._failures:
            status, retry_after = self.fake._failures.popleft()
            extra = {"Retry-After": retry_after} if retry_after is not None else {}
            self._json(status, {"error": {"message": f"fake failure {status}"}}, extra)
            return
        if url.path == "/v1/audio/speech" and method == "POST":
            self._openai(headers, body)
        elif url.path == "/v1/voices" and method == "GET":
            if self._eleven_auth(headers):
                self._json(200, {"voices": ELEVEN_VOICES})
        elif url.path.startswith("/v1/text-to-speech/") and method == "POST":
            self._eleven(url.path.rsplit("/", 1)[1], parse_qs(url.query), headers, body)
        else:
            self._json(404, {"detail": "Not Found"})

    def _openai(self, headers: dict[str, str], body: Any) -> None:
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return self._openai_error(401, "You didn't provide an API key.", "invalid_api_key")
        if auth.removeprefix("Bearer ") != OPENAI_KEY:
            return self._openai_error(401, "Incorrect API key provided.", "invalid_api_key")
        if not isinstance(body, dict):
            return self._openai_error(400, "We could not parse the JSON body of your request.")
        for required in ("model", "input", "voice"):
            if required not in body:
                return self._openai_error(400, f"Missing required parameter: '{required}'.")
        if body["model"] not in OPENAI_MODELS:
            return self._openai_error(404, f"The model `{body['model']}` does not exist.")
        if body["voice"] not in OPENAI_VOICES:
            return self._openai_error(400, f"Invalid value for 'voice': '{body['voice']}'.")
        if len(body["input"]) > 4096:
            return self._openai_error(400, "'input' is too long: maximum 4096 characters.")
        if "instructions" in body and body["model"].startswith("tts-1"):
            return self._openai_error(400, "instructions are not supported by tts-1 models.")
        kind = body.get("response_format", "mp3")
        if kind not in {"pcm", "wav"}:
            return self._openai_error(400, f"this fake speaks pcm and wav, not {kind!r}")
        samples = tone(0.02 * len(body["input"]) + 0.1, 24000)
        if kind == "pcm":
            return self._bytes(200, samples.tobytes(), "audio/pcm")
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(24000)
            out.writeframes(samples.tobytes())
        return self._bytes(200, buffer.getvalue(), "audio/wav")

    def _eleven_auth(self, headers: dict[str, str]) -> bool:
        if headers.get("xi-api-key") != ELEVEN_KEY:
            self._json(401, {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}})
            return False
        return True

    def _eleven(
        self, voice_id: str, query: dict[str, list[str]], headers: dict[str, str], body: Any
    ) -> None:
        if not self._eleven_auth(headers):
            return None
        if voice_id not in {v["voice_id"] for v in ELEVEN_VOICES}:
            message = f"A voice with voice_id {voice_id} was not found."
            return self._json(404, {"detail": {"status": "voice_not_found", "message": message}})
        output = query.get("output_format", ["mp3_44100_128"])[0]
        if output not in ELEVEN_FORMATS:
            return self._json(
                400, {"detail": {"status": "invalid_output_format", "message": output}}
            )
        if not isinstance(body, dict) or not body.get("text"):
            missing = {"loc": ["body", "text"], "msg": "Field required", "type": "missing"}
            return self._json(422, {"detail": [missing]})
        model = body.get("model_id", "eleven_multilingual_v2")
        if model not in ELEVEN_MODELS:
            return self._json(400, {"detail": {"status": "model_not_found", "message": model}})
        if "language_code" in body and model == "eleven_multilingual_v2":
            message = "Model 'eleven_multilingual_v2' does not support the language_code."
            return self._json(
                400, {"detail": {"status": "unsupported_language", "message": message}}
            )
        pitch = 200.0 + int(body.get("seed", 0)) % 50
        samples = tone(0.02 * len(body["text"]) + 0.1, ELEVEN_FORMATS[output], pitch)
        return self._bytes(200, samples.tobytes(), "audio/pcm")

    def _openai_error(self, status: int, message: str, code: str | None = None) -> None:
        error = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
        self._json(status, {"error": error})

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._bytes(status, json.dumps(payload).encode(), "application/json", headers)

    def _bytes(
        self, status: int, data: bytes, kind: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
