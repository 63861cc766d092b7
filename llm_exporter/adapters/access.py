"""HTTP access lines shared by several servers: uvicorn's (vLLM, SGLang, LiteLLM), the path bound,
and what an access line on an inference path says about one finished request.

A request path comes from the client, so it is never a label as is: known API paths are kept,
anything else becomes `_OTHER` (scanners and ids in paths would otherwise blow up the series).
Parsing goes from the right end of the line (status, then the quoted request line), so nothing
inside the request line is matched by a pattern.
"""

from __future__ import annotations

from typing import Any

from llm_exporter.labels import OTHER

#: API paths of the servers we read (exact match, query string removed).
KNOWN_PATHS = frozenset({
    "/", "/health", "/healthz", "/ready", "/readyz", "/live", "/ping", "/metrics", "/version", "/info",
    "/favicon.ico", "/docs", "/openapi.json", "/props", "/slots", "/models",
    "/v1/models", "/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses",
    "/v1/messages", "/v1/audio/speech", "/v1/audio/transcriptions", "/v1/audio/translations",
    "/v1/rerank", "/v2/rerank", "/rerank", "/v1/score", "/score", "/pooling", "/classify",
    "/tokenize", "/detokenize", "/invocations", "/load", "/unload",
    "/chat/completions", "/completions", "/embeddings", "/embedding", "/infill", "/completion",
    "/generate", "/generate_stream", "/get_model_info", "/get_server_info", "/flush_cache",
    "/api/chat", "/api/generate", "/api/embed", "/api/embeddings", "/api/tags", "/api/show",
    "/api/pull", "/api/push", "/api/create", "/api/copy", "/api/delete", "/api/ps", "/api/version",
    "/api/blobs", "/v1/reranking", "/reranking", "/health_generate", "/running", "/upstream", "/logs",
    "/ui", "/v1/audio/voices", "/v1/images/generations", "/v1/messages/count_tokens",
})
METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"})


def bound_path(path: str) -> str:
    """The path as a label value: a known API path, or `_OTHER`."""
    p = path.split("?", 1)[0]
    if len(p) > 1:
        p = p.rstrip("/")
    return p if p in KNOWN_PATHS else OTHER


def http_record(provider: str, method: str, path: str, code: str,
                duration_s: float | None = None) -> dict[str, Any]:
    rec: dict[str, Any] = {"kind": "http", "provider": provider,
                           "method": method if method in METHODS else OTHER,
                           "path": bound_path(path), "code": code}
    if duration_s is not None:
        rec["duration_s"] = duration_s
    return rec


def parse_uvicorn(text: str, provider: str) -> dict[str, Any] | None:
    """`INFO:     127.0.0.1:34658 - "POST /v1/chat/completions HTTP/1.1" 200 OK` (the level
    prefix already checked by the caller) as an HttpRecord, or None when it is not one."""
    head, sep, tail = text.rpartition('" ')
    if not sep:
        return None
    code = tail.split(" ", 1)[0]
    if len(code) != 3 or not code.isdigit():
        return None
    i = head.rfind(' - "')
    if i < 0:
        return None
    parts = head[i + 4:].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return None
    return http_record(provider, parts[0], parts[1], code)


#: inference paths (POST) and the operation each serves; an access line on one is a finished request
INFERENCE_PATHS: dict[str, str] = {
    "/v1/chat/completions": "chat", "/chat/completions": "chat", "/v1/responses": "chat",
    "/v1/messages": "chat", "/api/chat": "chat",
    "/v1/completions": "text_completion", "/completions": "text_completion", "/completion": "text_completion",
    "/generate": "text_completion", "/generate_stream": "text_completion", "/infill": "text_completion",
    "/api/generate": "text_completion",
    "/v1/embeddings": "embeddings", "/embeddings": "embeddings", "/embedding": "embeddings",
    "/api/embed": "embeddings", "/api/embeddings": "embeddings", "/pooling": "embeddings",
    "/v1/rerank": "rerank", "/v2/rerank": "rerank", "/rerank": "rerank", "/v1/reranking": "rerank",
    "/reranking": "rerank", "/v1/score": "rerank", "/score": "rerank", "/classify": "embeddings",
    "/v1/audio/speech": "speech", "/v1/audio/transcriptions": "transcription",
    "/v1/audio/translations": "transcription",
}


def inference_operation(method: str, path: str) -> str | None:
    """The operation an access line serves when it is a finished inference request, else None."""
    if method != "POST":
        return None
    p = path.split("?", 1)[0]
    if len(p) > 1:
        p = p.rstrip("/")
    return INFERENCE_PATHS.get(p)


def access_request(provider: str, operation: str, code: str, duration_s: float | None = None,
                   model: str = "") -> dict[str, Any]:
    """One finished request from an access line: success below 400, else an error classed by the
    status (499 is the client going away: `aborted`)."""
    from llm_exporter import errors

    rec: dict[str, Any] = {"kind": "request", "provider": provider, "operation": operation, "model": model,
                           "outcome": "success", "error_type": ""}
    status = int(code)
    if status >= 400:
        et = errors.from_http_status(status)
        if et == "client_disconnect":
            rec["outcome"] = "aborted"
        else:
            rec["outcome"], rec["error_type"] = "error", et
    if duration_s is not None:
        rec["duration_s"] = duration_s
    return rec
