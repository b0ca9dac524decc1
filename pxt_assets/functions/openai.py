"""OpenAI: seed 002's `openai.chat_completions(messages, model='gpt-4o-mini')`.

    from pxt_assets.functions import openai
    messages = [{'role': 'user', 'content': [{'type': 'text', 'text': 'Describe this image briefly.'},
                                             {'type': 'image_url', 'image_url': t.photo}]}]
    t.add_computed_column(description=openai.chat_completions(messages, model='gpt-4o-mini'))

Calls go through the official `openai` client, which reads `OPENAI_API_KEY` and `OPENAI_BASE_URL` (any
OpenAI-compatible server works). Rows are sent concurrently (an async UDF, at most 16 requests in flight per
process); 429s and 5xx are retried with exponential backoff, waiting what a `Retry-After` header asks.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import threading
from typing import Any

import PIL.Image

from pxt_assets.functions.udf import udf

#: attempts after the first for 408 / 409 / 429 / 5xx and connection errors (PXT_OPENAI_MAX_RETRIES)
DEFAULT_MAX_RETRIES = 6

_CLIENTS: dict[tuple[str | None, str | None, int], Any] = {}
_CLIENTS_LOCK = threading.Lock()


def _client() -> Any:
    """One AsyncOpenAI client per (base URL, key, retries) in the process: its connection pool is reused by
    every row (async UDFs all run on one event loop)."""
    import openai

    retries = int(os.environ.get("PXT_OPENAI_MAX_RETRIES", DEFAULT_MAX_RETRIES))
    key = (os.environ.get("OPENAI_BASE_URL"), os.environ.get("OPENAI_API_KEY"), retries)
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            client = _CLIENTS[key] = openai.AsyncOpenAI(max_retries=retries)
    return client


def image_data_url(img: PIL.Image.Image) -> str:
    """A `data:` URL of the image (JPEG for photographs, PNG where JPEG would lose data, e.g. alpha)."""
    from pxt_assets.media import storable

    buf = io.BytesIO()
    # what a model reads: JPEG for photographs, PNG where that would lose data (formats the API accepts)
    fmt, _, img = storable(img, "png" if img.mode not in ("L", "RGB", "CMYK", "YCbCr") else "jpeg")
    if fmt not in ("JPEG", "PNG"):
        fmt, img = "PNG", img.convert("RGBA" if "A" in img.mode else "RGB")
    img.save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    mime = f"image/{fmt.lower()}"
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode()}"


def encode_images(value: Any) -> Any:
    """Messages with every image replaced as the API wants it: an `image_url` part holding an image becomes
    {'url': 'data:...'}; an image anywhere else becomes its data URL."""
    if isinstance(value, PIL.Image.Image):
        return image_data_url(value)
    if isinstance(value, dict):
        out = {k: encode_images(v) for k, v in value.items()}
        if value.get("type") == "image_url" and isinstance(value.get("image_url"), PIL.Image.Image):
            out["image_url"] = {"url": out["image_url"]}
        return out
    if isinstance(value, (list, tuple)):
        return [encode_images(v) for v in value]
    return value


@udf
async def chat_completions(messages: list, *, model: str, model_kwargs: dict | None = None) -> dict:
    """Chat Completions API: `messages` as the API takes them (images from columns are sent as base64
    `data:` URLs), `model`, and any other API parameters in `model_kwargs` (e.g. {'max_tokens': 300}).
    Returns the whole response as Json: `t.description.choices[0].message.content`."""
    encoded = await asyncio.to_thread(encode_images, messages)  # off the event loop other requests share
    response = await _client().chat.completions.create(messages=encoded, model=model, **(model_kwargs or {}))
    return response.model_dump(mode="json", exclude_unset=True)


__all__ = ["chat_completions", "encode_images", "image_data_url"]
