"""A local planning model on Ray Serve, behind the OpenAI chat-completions protocol.

`POST /v1/chat/completions` (and `GET /v1/models`) on a causal language model loaded with
transformers from a model folder, so that the LLM planner (pipeline/planning/llm.py) reaches a
model on the cluster exactly as it reaches OpenAI, vLLM or Ollama: point STUDIO_LLM_BASE_URL at
`<serve>/<route prefix>/v1`. Transformers has no constrained decoding, so `response_format` is
passed to the model as an instruction only; the planner validates, repairs once and falls back.
For schema-constrained output at scale, run vLLM's own OpenAI server instead. The decorator asks
for a quarter CPU; a Serve config gives it `num_gpus` where a GPU is wanted. No postponed
annotations here: Serve's class-based routes need the body model itself, not its name, to read
the request body.
"""

import hashlib
import hmac
import threading
import time
import uuid
from typing import Any, Literal

from fastapi import FastAPI, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from ray import serve
from ray.serve import Application

from cluster.settings import Settings

api = FastAPI(title="studio planning model")


class ChatMessage(BaseModel):
    role: Literal["system", "user", "assistant", "developer"]
    content: str


class ChatRequest(BaseModel):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1, le=8192)
    temperature: float | None = Field(default=None, ge=0, le=2)
    response_format: dict[str, Any] | None = None


class ChatGenerator:
    """A causal LM and its tokenizer from a model folder, answering chat completions one at a time
    with greedy decoding."""

    def __init__(self, model_dir: str, name: str, max_new_tokens: int = 1024) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = name
        self.max_new_tokens = max_new_tokens
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer: Any = AutoTokenizer.from_pretrained(model_dir)
        model: Any = AutoModelForCausalLM.from_pretrained(model_dir)
        self.model: Any = model.to(self.device).eval()
        self.lock = threading.Lock()

    def complete(self, request: ChatRequest) -> dict[str, Any]:
        """A `chat.completion` object for the request."""
        import torch

        messages = [m.model_dump() for m in request.messages]
        if request.response_format and request.response_format.get("type") != "text":
            messages[-1]["content"] += "\n\nAnswer with JSON only."
        prompt = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        ).to(self.device)
        limit = min(request.max_tokens or self.max_new_tokens, self.max_new_tokens)
        with self.lock, torch.inference_mode():
            output = self.model.generate(
                **prompt,
                max_new_tokens=limit,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
            )
        prompt_tokens = prompt["input_ids"].shape[1]
        new = output[0, prompt_tokens:]
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "length" if len(new) >= limit else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(new),
                "total_tokens": prompt_tokens + len(new),
            },
        }


def authorized(authorization: str | None, key_digest: bytes | None) -> bool:
    """Whether an Authorization header holds the bearer key of this digest; none without one."""
    scheme, _, token = (authorization or "").partition(" ")
    if key_digest is None or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(hashlib.sha256(token.encode()).digest(), key_digest)


@serve.deployment(ray_actor_options={"num_cpus": 0.25})
@serve.ingress(api)
class ChatModel:
    """The generator as a Serve deployment speaking the OpenAI routes. It answers only callers
    holding STUDIO_LLM_API_KEY as their bearer token (the planner sends it): the replica keeps
    the key's SHA-256, never the key, and without one it answers nobody."""

    def __init__(
        self, model_dir: str, name: str, key_digest: bytes | None, max_new_tokens: int = 1024
    ) -> None:
        self.generator = ChatGenerator(model_dir, name, max_new_tokens)
        self.key_digest = key_digest

    def _check(self, authorization: str | None) -> JSONResponse | None:
        if authorized(authorization, self.key_digest):
            return None
        error = {"message": "Incorrect API key provided", "type": "invalid_request_error",
                 "code": "invalid_api_key"}  # fmt: skip
        return JSONResponse({"error": error}, status_code=401)

    @api.get("/v1/models", response_model=None)
    def models(self, authorization: str | None = Header(default=None)) -> Any:
        if (refused := self._check(authorization)) is not None:
            return refused
        return {"object": "list", "data": [{"id": self.generator.name, "object": "model"}]}

    @api.post("/v1/chat/completions", response_model=None)
    def complete(
        self, request: ChatRequest, authorization: str | None = Header(default=None)
    ) -> Any:
        if (refused := self._check(authorization)) is not None:
            return refused
        return self.generator.complete(request)


class LlmArgs(BaseModel):
    """`import_path: deployments.llm:app_builder`. `folder` is the model's folder under
    STUDIO_MODELS_DIR (a Hugging Face causal LM with a chat template), `name` the model name the
    planner asks for (STUDIO_LLM_MODEL); `settings` and `deployments` as for the engines."""

    folder: str = Field(default="planner", pattern=r"^[A-Za-z0-9._-]+$")
    name: str = "studio-planner"
    max_new_tokens: int = Field(default=1024, ge=1, le=8192)
    settings: dict[str, Any] = Field(default_factory=dict)
    deployments: dict[str, dict[str, Any]] = Field(default_factory=dict)


def app_builder(raw: dict[str, Any]) -> Application:
    """The planning model's application (args: `LlmArgs`). Without STUDIO_LLM_API_KEY it
    deploys but answers nobody, so that a model served beside the API is never open to anyone
    who reaches the proxy, and a config listing it still deploys where no key is set."""
    args = LlmArgs.model_validate(raw)
    settings = Settings(**args.settings)
    key = settings.llm_api_key
    digest = hashlib.sha256(key.get_secret_value().encode()).digest() if key else None
    model_dir = str((settings.resolved_models_dir / args.folder).resolve())
    options = args.deployments.get("ChatModel", {})
    deployment = ChatModel.options(**options)  # type: ignore[attr-defined]
    return deployment.bind(model_dir, args.name, digest, args.max_new_tokens)  # type: ignore[no-any-return]
