"""Fake batch endpoints for the fake model server: OpenAI (/v1/files, /v1/batches, /v1/batches/{id},
/v1/files/{id}/content) and Anthropic (/v1/messages/batches, /{id}, /{id}/results).

Each item of a batch is answered by the server's responder, as the synchronous endpoints would answer it. Options:
``polls``: how many status reads a batch stays in progress before it ends; ``fail``: a function of (custom id,
FakeRequest) giving an HTTP status for that item (an error item), or None; ``expire``: a function of the batch's number
(1, 2, ...) saying that batch expires with nothing done; ``flood``: a function of the batch's number giving the bytes of
one junk line put first in its output (OpenAI) or results (Anthropic) file; ``openai_api=False``: an OpenAI-compatible
server without /v1/batches (404). ``calls`` records every batch API call as (method, path); ``received`` every custom id
in the batches created, in order.

An OpenAI batch walks validating -> in_progress (``polls`` reads) -> finalizing -> completed; an Anthropic one
in_progress (``polls`` reads) -> ended. A test holds a batch where it stands, so that a kill lands at a known point
rather than after a guessed delay: a batch number in ``held`` stays in progress (after its first read), one in
``held_results`` ends but its results download waits, one in ``held_create`` is created but the reply to the create call
waits (each until the number is discarded from the set); an OpenAI upload (1, 2, ...) in ``held_upload`` waits before it
is stored. ``reads(n)`` and ``waiting`` tell the test that the client has got there."""
from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any
from collections.abc import Callable

PATHS = re.compile(r"^/v1/(files|batches|messages/batches)(/|$)")


class FakeBatches:
    """The batch endpoints' state: uploaded files, batches, and the calls received."""

    def __init__(self, polls: int = 1, fail: Callable[[str, Any], int | None] | None = None,
                 expire: Callable[[int], bool] | None = None, openai_api: bool = True,
                 flood: Callable[[int], int] | None = None):
        self.polls, self.fail, self.expire, self.openai_api = polls, fail, expire or (lambda n: False), openai_api
        self.flood = flood or (lambda n: 0)
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.calls: list[tuple[str, str]] = []
        self.items = 0                          # requests received in batches
        self.received: list[str] = []
        self.held: set[int] = set()
        self.held_results: set[int] = set()
        self.held_create: set[int] = set()
        self.held_upload: set[int] = set()
        self.uploads = 0
        self.waiting: set[tuple[str, int]] = set()      # (what, batch number) a client is blocked on now
        self._file_batch: dict[str, int] = {}

    def owns(self, path: str) -> bool:
        """True for a batch API path."""
        return bool(PATHS.match(path))

    def reads(self, number: int) -> int:
        """How many times batch `number` (1, 2, ...) was read by a client (0 before it exists)."""
        return next((b["reads"] for b in self.batches.values() if b["number"] == number), 0)

    async def _hold(self, what: str, held: set[int], number: int) -> None:
        while number in held:
            self.waiting.add((what, number))
            await asyncio.sleep(0.01)
        self.waiting.discard((what, number))

    def created(self, api: str) -> int:
        """How many batches were created through an API."""
        return sum(1 for b in self.batches.values() if b["api"] == api)

    async def handle(self, server, method: str, path: str, headers: dict, raw: bytes) -> tuple[int, bytes]:
        """Status and JSON body for one batch API call."""
        self.calls.append((method, path))
        parts = path.strip("/").split("/")[1:]
        if parts[0] == "messages":
            return await self._anthropic(server, method, parts[2:], raw)
        if not self.openai_api:
            error = {"message": f"unknown path {path}", "type": "invalid_request_error"}
            return 404, json.dumps({"error": error}).encode()
        return await self._openai(server, method, parts, headers, raw)

    async def _answer(self, server, api: str, custom_id: str, body: dict) -> tuple[int, dict]:
        from fake_server import _split_anthropic, _split_openai, _success_body, _error_body, FakeRequest
        system, messages, params = (_split_anthropic if api == "anthropic" else _split_openai)(body)
        model = str(body.get("model", ""))
        key = json.dumps([api, model, system, messages], sort_keys=True, ensure_ascii=False)
        with server._lock:          # the same attempt count as the synchronous endpoints keep
            attempt = server._seen.get(key, 0)
            server._seen[key] = attempt + 1
        request = FakeRequest(api=api, path="batch", model=model, system=system, messages=messages, params=params,
                              headers={}, body=body, attempt=attempt)
        self.items += 1
        status = self.fail(custom_id, request) if self.fail else None
        if status:
            return status, _error_body(api, status, "fake batch item error")
        reply = await server._call_responder(request)
        if reply.status >= 400:
            return reply.status, _error_body(api, reply.status, reply.text or "error")
        return 200, _success_body(request, reply, f"b{self.items}")

    def _new(self, api: str, prefix: str) -> tuple[str, dict]:
        number = len(self.batches) + 1
        batch_id = f"{prefix}_{number:04d}"
        self.batches[batch_id] = {"api": api, "number": number, "reads": 0, "step": 0, "results": None,
                                  "created": int(time.time())}
        return batch_id, self.batches[batch_id]

    def _step(self, batch: dict) -> int | None:
        """The batch's next step (one per status read), or None while it is held (past its first read)."""
        batch["reads"] += 1
        if batch["number"] in self.held and batch["step"] >= 1:
            return None
        batch["step"] += 1
        return batch["step"] - 1

    async def _openai(self, server, method: str, parts: list[str], headers: dict, raw: bytes) -> tuple[int, bytes]:
        if parts == ["files"] and method == "POST":
            content = _multipart_file(headers.get("content-type", ""), raw)
            self.uploads += 1
            await self._hold("upload", self.held_upload, self.uploads)
            file_id = f"file-{len(self.files) + 1:04d}"
            self.files[file_id] = content
            return 200, json.dumps({"id": file_id, "object": "file", "bytes": len(content), "created_at": 0,
                                    "filename": "bilan-batch.jsonl", "purpose": "batch",
                                    "status": "processed"}).encode()
        if parts[0] == "files" and len(parts) == 3 and parts[2] == "content":
            if parts[1] in self._file_batch:
                await self._hold("results", self.held_results, self._file_batch[parts[1]])
            return 200, self.files[parts[1]]
        if parts == ["batches"] and method == "GET":            # newest first, all on one page
            data = [self._openai_view(i, b, b.get("status", "in_progress")) for i, b in reversed(self.batches.items())
                    if b["api"] == "openai"]
            return 200, json.dumps({"object": "list", "data": data, "has_more": False}).encode()
        if parts == ["batches"] and method == "POST":
            body = json.loads(raw)
            batch_id, batch = self._new("openai", "batch")
            batch["input"], batch["metadata"] = body["input_file_id"], body.get("metadata")
            lines = self.files[batch["input"]].decode().splitlines()
            self.received += [json.loads(line)["custom_id"] for line in lines]
            batch["counts"] = {"total": len(lines), "completed": 0, "failed": 0}
            await self._hold("create", self.held_create, batch["number"])
            return 200, json.dumps(self._openai_view(batch_id, batch, "validating")).encode()
        if parts[0] == "batches" and len(parts) == 2:
            batch = self.batches[parts[1]]
            step = self._step(batch)
            if step is None or 0 < step <= self.polls:
                return 200, json.dumps(self._openai_view(parts[1], batch, "in_progress")).encode()
            if step == 0:
                return 200, json.dumps(self._openai_view(parts[1], batch, "validating")).encode()
            if batch["results"] is None:
                await self._run_openai(server, parts[1], batch)
                if batch["status"] == "completed":           # the items are done; the output files are being written
                    return 200, json.dumps(self._openai_view(parts[1], batch, "finalizing")).encode()
            return 200, json.dumps(self._openai_view(parts[1], batch, batch["status"])).encode()
        return 404, b'{"error": {"message": "not found", "type": "invalid_request_error"}}'

    async def _run_openai(self, server, batch_id: str, batch: dict) -> None:
        out, errors = [], []
        expired = self.expire(batch["number"])
        for line in [] if expired else self.files[batch["input"]].decode().splitlines():
            item = json.loads(line)
            status, body = await self._answer(server, "openai", item["custom_id"], item["body"])
            row = {"id": f"req_{self.items}", "custom_id": item["custom_id"],
                   "response": {"status_code": status, "request_id": "r", "body": body}, "error": None}
            (out if status == 200 else errors).append(json.dumps(row))
        batch["status"] = "expired" if expired else "completed"
        batch["counts"] = {"total": len(out) + len(errors), "completed": len(out), "failed": len(errors)}
        batch["results"] = True
        for name, rows in (("output", out), ("error", errors)):
            if rows:
                file_id = f"file-{batch_id}-{name}"
                self.files[file_id] = b"x" * self.flood(batch["number"]) + ("\n" + "\n".join(rows) + "\n").encode()
                self._file_batch[file_id] = batch["number"]
                batch[name] = file_id

    def _openai_view(self, batch_id: str, batch: dict, status: str) -> dict:
        return {"id": batch_id, "object": "batch", "endpoint": "/v1/chat/completions", "input_file_id": batch["input"],
                "completion_window": "24h", "status": status, "created_at": batch["created"],
                "output_file_id": batch.get("output"), "error_file_id": batch.get("error"),
                "request_counts": batch.get("counts", {"total": 0, "completed": 0, "failed": 0}),
                "metadata": batch.get("metadata")}

    async def _anthropic(self, server, method: str, parts: list[str], raw: bytes) -> tuple[int, bytes]:
        if not parts and method == "POST":
            batch_id, batch = self._new("anthropic", "msgbatch")
            batch["requests"] = json.loads(raw)["requests"]
            self.received += [item["custom_id"] for item in batch["requests"]]
            await self._hold("create", self.held_create, batch["number"])
            return 200, json.dumps(self._anthropic_view(server, batch_id, batch, "in_progress")).encode()
        if not parts:                                             # the list, newest first
            data = [self._anthropic_view(server, i, b, "ended" if b["results"] is not None else "in_progress")
                    for i, b in reversed(self.batches.items()) if b["api"] == "anthropic"]
            return 200, json.dumps({"data": data, "has_more": False, "first_id": data[0]["id"] if data else None,
                                    "last_id": data[-1]["id"] if data else None}).encode()
        batch = self.batches[parts[0]]
        if len(parts) == 1:
            step = self._step(batch)
            if step is None or step < self.polls:
                return 200, json.dumps(self._anthropic_view(server, parts[0], batch, "in_progress")).encode()
            if batch["results"] is None:
                await self._run_anthropic(server, batch)
            return 200, json.dumps(self._anthropic_view(server, parts[0], batch, "ended")).encode()
        await self._hold("results", self.held_results, batch["number"])
        rows = batch["results"] or []
        return 200, b"x" * self.flood(batch["number"]) + ("\n" + "\n".join(json.dumps(r) for r in rows) + "\n").encode()

    async def _run_anthropic(self, server, batch: dict) -> None:
        rows, expired = [], self.expire(batch["number"])
        for item in batch["requests"]:
            if expired:
                rows.append({"custom_id": item["custom_id"], "result": {"type": "expired"}})
                continue
            status, body = await self._answer(server, "anthropic", item["custom_id"], item["params"])
            result = {"type": "succeeded", "message": body} if status == 200 else {"type": "errored", "error": body}
            rows.append({"custom_id": item["custom_id"], "result": result})
        batch["results"] = rows

    def _anthropic_view(self, server, batch_id: str, batch: dict, status: str) -> dict:
        rows = batch["results"] or []
        count = lambda kind: sum(1 for r in rows if r["result"]["type"] == kind)
        return {"id": batch_id, "type": "message_batch", "processing_status": status,
                "request_counts": {"processing": 0 if rows else len(batch["requests"]), "succeeded": count("succeeded"),
                                   "errored": count("errored"), "canceled": count("canceled"),
                                   "expired": count("expired")},
                "created_at": _iso(batch["created"]), "expires_at": _iso(batch["created"] + 86400), "ended_at": None,
                "archived_at": None, "cancel_initiated_at": None,
                "results_url": f"{server.anthropic_base_url}/v1/messages/batches/{batch_id}/results" if rows else None}


def _iso(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _multipart_file(content_type: str, raw: bytes) -> bytes:
    """The file part of a multipart/form-data body."""
    boundary = content_type.split("boundary=", 1)[1].strip('"').encode()
    for part in raw.split(b"--" + boundary):
        head, _, body = part.partition(b"\r\n\r\n")
        if b'name="file"' in head:
            return body[:-2] if body.endswith(b"\r\n") else body
    return b""
