"""A local stand-in for Runway's and Luma's video APIs: a real HTTP server on 127.0.0.1.

Runway: POST /v1/image_to_video and /v1/text_to_video (Bearer key and `X-Runway-Version`
checked, model, ratio, duration and image validated) answer {"id"}; GET /v1/tasks/{id} goes
PENDING, RUNNING, then SUCCEEDED with `output` URLs (or FAILED with `failure` and
`failureCode`); DELETE /v1/tasks/{id} cancels. Luma: POST /dream-machine/v1/generations answers
the generation (201), GET .../{id} moves it from queued through dreaming to completed with
`assets.video` (or failed with `failure_reason`), DELETE deletes it. Clips are real H.264 MP4s
(PyAV) served with HTTP Range support, each frame a flat colour that moves with time.

Behaviours a test sets: `outcome` ("succeed", "fail", "hang"), `rate_limited` (every create
answers 429 with Retry-After), `cut_downloads` (that many clip downloads stop half-way).
"""

from __future__ import annotations

import base64
import json
import re
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

import numpy as np

from tests.media import encode_mp4

RUNWAY_KEY = "key_runway_test"
LUMA_KEY = "luma-test-key"
RUNWAY_VERSION = "2024-11-06"
RUNWAY_IMAGE_MODELS = {"gen4_turbo", "gen3a_turbo"}
RUNWAY_TEXT_MODELS = {"gen4.5", "veo3.1_fast"}
RUNWAY_RATIOS = {"1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672"}
LUMA_MODELS = {"ray-2", "ray-flash-2"}
LUMA_RATIOS = {"1:1", "16:9", "9:16", "4:3", "3:4", "21:9", "9:21"}
CLIP_FPS = 24
_POLLS_TO_FINISH = 2  # polls a generation spends pending/queued and running/dreaming


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Generation:
    provider: str
    seconds: int
    width: int
    height: int
    polls: int = 0
    cancelled: bool = False


@dataclass
class FakeHostedVideo:
    outcome: str = "succeed"
    rate_limited: bool = False
    cut_downloads: int = 0
    requests: list[Recorded] = field(default_factory=list)
    generations: dict[str, Generation] = field(default_factory=dict)
    _clips: dict[tuple[int, int, int], bytes] = field(default_factory=dict)

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

    def reset(self) -> None:
        self.outcome, self.rate_limited, self.cut_downloads = "succeed", False, 0
        self.requests.clear()
        self.generations.clear()

    def created(self, provider: str) -> int:
        """How many generations the provider was asked for (what it would charge for)."""
        return sum(g.provider == provider for g in self.generations.values())

    def clip(self, generation: Generation) -> bytes:
        key = (generation.width, generation.height, generation.seconds)
        if key not in self._clips:
            self._clips[key] = encode_clip(*key)
        return self._clips[key]


def clip_colour(index: int) -> tuple[int, int, int]:
    """Frame `index`'s colour: red rises with time, so a decoder can tell frames apart."""
    return (min(255, 10 + 2 * index), 120, 200)


def encode_clip(width: int, height: int, seconds: int) -> bytes:
    frames = np.empty((seconds * CLIP_FPS, height, width, 3), np.uint8)
    for index, pixels in enumerate(frames):
        pixels[:] = clip_colour(index)
    return encode_mp4(frames, CLIP_FPS)


def _ratio_size(ratio: str) -> tuple[int, int]:
    """A small clip of the ratio's shape (the real APIs answer 720p; tests need not)."""
    w, h = (int(x) for x in ratio.split(":"))
    scale = 160 / max(w, h)
    return max(16, round(w * scale / 16) * 16), max(16, round(h * scale / 16) * 16)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHostedVideo
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read `fake.requests` instead."""

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        path = urlparse(self.path).path
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.fake.requests.append(Recorded(method, path, headers, body))
        if path.startswith("/files/") and method == "GET":
            return self._file(path.removeprefix("/files/").removesuffix(".mp4"), headers)
        if path.startswith("/v1/"):
            return self._runway(method, path, headers, body)
        if path.startswith("/dream-machine/v1/generations"):
            return self._luma(method, path, headers, body)
        return self._json(404, {"error": "Not found"})

    # -- Runway --------------------------------------------------------------------------

    def _runway(self, method: str, path: str, headers: dict[str, str], body: Any) -> None:
        if headers.get("authorization") != f"Bearer {RUNWAY_KEY}":
            return self._json(401, {"error": "Invalid API key"})
        if headers.get("x-runway-version") != RUNWAY_VERSION:
            return self._json(400, {"error": "Invalid or missing X-Runway-Version header"})
        if method == "POST" and path in ("/v1/image_to_video", "/v1/text_to_video"):
            return self._runway_create(path == "/v1/image_to_video", body)
        task = re.fullmatch(r"/v1/tasks/([\w-]+)", path)
        found = self.fake.generations.get(task.group(1)) if task else None
        if found is None or found.provider != "runway" or found.cancelled:
            return self._json(404, {"error": "Task not found"})
        assert task is not None
        if method == "DELETE":
            found.cancelled = True
            return self._bytes(204, b"", "application/json")
        return self._json(200, self._runway_task(task.group(1), found))

    def _runway_create(self, from_image: bool, body: Any) -> None:
        if self.fake.rate_limited:
            return self._json(429, {"error": "Rate limit exceeded"}, {"Retry-After": "0"})
        if not isinstance(body, dict):
            return self._json(400, {"error": "Invalid JSON body"})
        models = RUNWAY_IMAGE_MODELS if from_image else RUNWAY_TEXT_MODELS
        if body.get("model") not in models:
            return self._json(400, {"error": f"Invalid model: {body.get('model')!r}"})
        if body.get("ratio") not in RUNWAY_RATIOS:
            return self._json(400, {"error": f"Invalid ratio: {body.get('ratio')!r}"})
        if body.get("duration") not in (5, 10):
            return self._json(400, {"error": "duration must be 5 or 10"})
        if not from_image and not body.get("promptText"):
            return self._json(400, {"error": "promptText is required"})
        if from_image and not _valid_image(body.get("promptImage")):
            return self._json(400, {"error": "promptImage must be an HTTPS URL or a data URI"})
        if len(body.get("promptText", "")) > 1000:
            return self._json(400, {"error": "promptText is longer than 1000 characters"})
        width, height = _ratio_size(body["ratio"])
        task_id = str(uuid.uuid4())
        self.fake.generations[task_id] = Generation("runway", body["duration"], width, height)
        return self._json(200, {"id": task_id})

    def _runway_task(self, task_id: str, found: Generation) -> dict[str, Any]:
        found.polls += 1
        task: dict[str, Any] = {"id": task_id, "createdAt": "2026-12-07T10:00:00.000Z"}
        if self.fake.outcome == "hang" or found.polls <= _POLLS_TO_FINISH:
            status = "PENDING" if found.polls == 1 else "RUNNING"
            return {**task, "status": status}
        if self.fake.outcome == "fail":
            failure = "Your input image did not pass our content moderation."
            return {**task, "status": "FAILED", "failure": failure,
                    "failureCode": "SAFETY.INPUT.IMAGE"}  # fmt: skip
        return {**task, "status": "SUCCEEDED", "output": [f"{self.fake.url}/files/{task_id}.mp4"]}

    # -- Luma ----------------------------------------------------------------------------

    def _luma(self, method: str, path: str, headers: dict[str, str], body: Any) -> None:
        if headers.get("authorization") != f"Bearer {LUMA_KEY}":
            return self._json(401, {"detail": "Invalid API key"})
        if method == "POST" and path == "/dream-machine/v1/generations":
            return self._luma_create(body)
        match = re.fullmatch(r"/dream-machine/v1/generations/([\w-]+)", path)
        found = self.fake.generations.get(match.group(1)) if match else None
        if found is None or found.provider != "luma" or found.cancelled:
            return self._json(404, {"detail": "Generation not found"})
        assert match is not None
        if method == "DELETE":
            found.cancelled = True
            return self._bytes(204, b"", "application/json")
        return self._json(200, self._luma_generation(match.group(1), found))

    def _luma_create(self, body: Any) -> None:
        if self.fake.rate_limited:
            return self._json(429, {"detail": "Too many requests"}, {"Retry-After": "0"})
        if not isinstance(body, dict) or not body.get("prompt"):
            return self._json(400, {"detail": "prompt is required"})
        if body.get("model") not in LUMA_MODELS:
            return self._json(400, {"detail": f"Invalid model: {body.get('model')!r}"})
        if body.get("aspect_ratio", "16:9") not in LUMA_RATIOS:
            return self._json(400, {"detail": "Invalid aspect ratio"})
        if body.get("duration", "5s") not in ("5s", "9s"):
            return self._json(400, {"detail": "duration must be 5s or 9s"})
        if "keyframes" in body:
            for frame in body["keyframes"].values():
                if frame.get("type") == "image" and not str(frame.get("url")).startswith("http"):
                    return self._json(400, {"detail": "keyframe images must be URLs"})
        width, height = _ratio_size(body.get("aspect_ratio", "16:9"))
        generation_id = str(uuid.uuid4())
        seconds = int(body.get("duration", "5s").removesuffix("s"))
        self.fake.generations[generation_id] = Generation("luma", seconds, width, height)
        self._json(201, {"id": generation_id, "state": "queued", "failure_reason": None,
                         "assets": None, "request": body})  # fmt: skip

    def _luma_generation(self, generation_id: str, found: Generation) -> dict[str, Any]:
        found.polls += 1
        generation: dict[str, Any] = {"id": generation_id, "generation_type": "video",
                                      "failure_reason": None, "assets": None}  # fmt: skip
        if self.fake.outcome == "hang" or found.polls <= _POLLS_TO_FINISH:
            return {**generation, "state": "queued" if found.polls == 1 else "dreaming"}
        if self.fake.outcome == "fail":
            return {**generation, "state": "failed",
                    "failure_reason": "The prompt was flagged by moderation"}  # fmt: skip
        video = f"{self.fake.url}/files/{generation_id}.mp4"
        return {**generation, "state": "completed", "assets": {"video": video}}

    # -- clips ---------------------------------------------------------------------------

    def _file(self, generation_id: str, headers: dict[str, str]) -> None:
        found = self.fake.generations.get(generation_id)
        if found is None:
            return self._json(404, {"error": "Not found"})
        data = self.fake.clip(found)
        start = 0
        if (asked := re.fullmatch(r"bytes=(\d+)-", headers.get("range", ""))) is not None:
            start = int(asked.group(1))
            if start >= len(data):
                return self._bytes(416, b"", "video/mp4")
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(data) - start))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if self.fake.cut_downloads > 0:
            self.fake.cut_downloads -= 1
            self.wfile.write(data[start : start + (len(data) - start) // 2])
            self.wfile.flush()
            self.close_connection = True
            return None
        self.wfile.write(data[start:])
        return None

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


def _valid_image(image: Any) -> bool:
    """An HTTPS URL, or a data URI of an image that decodes from base64."""
    if not isinstance(image, str):
        return False
    if image.startswith("https://"):
        return True
    match = re.fullmatch(r"data:image/(png|jpeg|webp);base64,([A-Za-z0-9+/=]+)", image)
    if match is None:
        return False
    return base64.b64decode(match.group(2))[:4] in (b"\x89PNG", b"\xff\xd8\xff\xe0", b"RIFF")
