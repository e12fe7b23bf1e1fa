"""The console's form bodies: URL-encoded fields, read without python-multipart."""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import HTTPException, Request

#: The largest form body read, in bytes.
MAX_FORM_BYTES = 1 << 20


async def read_form(request: Request) -> dict[str, str]:
    """The fields of a URL-encoded form body (the first value of each), at most 1 MiB read.

    Parsed here rather than by FastAPI's ``Form``, which needs python-multipart: the pages'
    forms are never multipart.

    Raises:
        HTTPException: 413 for a body past :data:`MAX_FORM_BYTES`.
    """
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, f"a form of more than {MAX_FORM_BYTES} bytes")
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}
