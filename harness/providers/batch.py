"""Batch adapters through the official SDKs: OpenAI Batch (a JSONL file, batches.create, the output and error files)
and Anthropic Message Batches (messages.batches.create, retrieve, results). Request bodies and replies go through the
synchronous adapters' request_body and reply_of, so a batch request is the request the synchronous path sends."""
from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Final

from ..errors import PermanentError, ProviderError, TransientError
from ..types import EndpointConfig, Message
from .base import GenParams, Reply
from .capped import ReplyTooLarge, capped_lines, sdk_error

OPENAI_ENDPOINT: Final = "/v1/chat/completions"     # Final: its type is the literal that batches.create takes
TAG = "bilan_submission"        # OpenAI batch metadata: the token of the submission record written before the call
SKEW = dt.timedelta(minutes=10)  # how far the provider's clock may be from ours when a batch is looked for


def _since(record: dict) -> dt.datetime:
    """The earliest creation time a batch submitted after this record can have (with clock skew)."""
    return dt.datetime.fromisoformat(record["time"]) - SKEW


@dataclass
class BatchState:
    """Where a submitted batch stands: the provider's status word, request counts, and whether it has ended."""

    status: str
    counts: dict[str, int] = field(default_factory=dict)
    ended: bool = False


def _retryable(status: int | None, kind: str) -> ProviderError:
    if kind in ("expired", "canceled", "cancelled") or status is None or status == 429 or status >= 500:
        return TransientError(f"batch item {kind}" + (f" ({status})" if status else ""), kind=kind)
    return PermanentError(f"batch item refused ({status}): {kind}", kind="bad_request" if status == 400 else "refused",
                          status=status)


class OpenAIBatches:
    """OpenAI Batch (and OpenAI-compatible servers that have /v1/batches)."""

    max_requests, max_bytes = 50_000, 200 * 1024 * 1024

    def __init__(self, cfg: EndpointConfig, key: str | None):
        import openai
        self.sdk, self.cfg = openai, cfg
        self.client = openai.AsyncOpenAI(api_key=key or "not-needed", base_url=cfg.base_url, max_retries=0,
                                         timeout=max(cfg.timeout, 300.0))

    def line(self, custom_id: str, messages: Sequence[Message], params: GenParams) -> bytes:
        """One request of the batch input file (also what `vllm run-batch` reads)."""
        from .openai import request_body
        return (json.dumps({"custom_id": custom_id, "method": "POST", "url": OPENAI_ENDPOINT,
                            "body": request_body(self.cfg.model, messages, params)},
                           ensure_ascii=False) + "\n").encode()

    async def check(self) -> None:
        """A PermanentError if the server has no batch API (many OpenAI-compatible servers): nothing is sent."""
        try:
            await self.client.batches.list(limit=1)
        except Exception as exc:
            error = sdk_error(exc, self.sdk)
            where = self.cfg.base_url or "api.openai.com"
            raise PermanentError(f"{self.cfg.name}: the server at {where} has no usable "
                                 f"batch API (/v1/batches: {error}); expected batch: false for this endpoint",
                                 kind="no_batch_api") from None

    async def submit(self, lines: Sequence[bytes], token: str) -> str:
        """Upload the input file and create the batch, tagged with the submission's token; its id."""
        try:
            uploaded = await self.client.files.create(file=("bilan-batch.jsonl", b"".join(lines)), purpose="batch")
            batch = await self.client.batches.create(input_file_id=uploaded.id, endpoint=OPENAI_ENDPOINT,
                                                     completion_window="24h", metadata={TAG: token})
        except Exception as exc:
            raise sdk_error(exc, self.sdk) from None
        return batch.id

    async def find(self, record: dict, known: Collection[str]) -> str | None:
        """The batch a submission record (written before the call) led to, if it was created: the one whose
        metadata carries its token."""
        since = _since(record).timestamp()
        try:
            async for batch in self.client.batches.list(limit=100):
                if (batch.metadata or {}).get(TAG) == record["token"]:
                    return batch.id
                if batch.created_at < since:
                    return None
        except Exception as exc:
            raise sdk_error(exc, self.sdk) from None
        return None

    async def state(self, batch_id: str) -> BatchState:
        """The batch's status and counts."""
        try:
            batch = await self.client.batches.retrieve(batch_id)
        except Exception as exc:
            raise sdk_error(exc, self.sdk) from None
        counts = batch.request_counts
        return BatchState(batch.status, {"total": counts.total, "completed": counts.completed, "failed": counts.failed}
                          if counts else {}, batch.status in ("completed", "failed", "expired", "cancelled"))

    async def results(self, batch_id: str, custom_ids: Sequence[str]) -> dict[str, Reply | ProviderError]:
        """Every finished request's reply or error, by custom id (requests not in either file are left out). The
        files are streamed: an item over max_reply_bytes is an error of kind too_large, never parsed."""
        from .openai import reply_of

        def item(raw: bytes) -> tuple[str, Reply | ProviderError]:
            entry = json.loads(raw)
            response, error = entry.get("response") or {}, entry.get("error")
            status = response.get("status_code")
            if status == 200 and not error:
                return entry["custom_id"], reply_of(response["body"], 0.0)
            return entry["custom_id"], _retryable(status, str((error or {}).get("code") or "error"))

        try:
            batch = await self.client.batches.retrieve(batch_id)
            out: dict[str, Reply | ProviderError] = {}
            for file_id in (batch.error_file_id, batch.output_file_id):
                if file_id:
                    async with self.client.files.with_streaming_response.content(file_id) as response:
                        await _read(response.iter_bytes(), self.cfg, custom_ids, item, out)
        except ProviderError:
            raise
        except Exception as exc:
            raise sdk_error(exc, self.sdk) from None
        return out


class AnthropicBatches:
    """Anthropic Message Batches."""

    max_requests, max_bytes = 100_000, 256 * 1024 * 1024

    def __init__(self, cfg: EndpointConfig, key: str | None):
        import anthropic
        self.sdk, self.cfg = anthropic, cfg
        self.client = anthropic.AsyncAnthropic(api_key=key or "not-needed", base_url=cfg.base_url, max_retries=0,
                                               timeout=max(cfg.timeout, 300.0))

    def line(self, custom_id: str, messages: Sequence[Message], params: GenParams) -> bytes:
        """One request of the batch, as JSON."""
        from .anthropic import request_body
        body = request_body(self.cfg.model, messages, params)
        return (json.dumps({"custom_id": custom_id, "params": body},
                           ensure_ascii=False) + "\n").encode()

    async def check(self) -> None:
        """Nothing to check: every Anthropic endpoint has Message Batches."""

    async def submit(self, lines: Sequence[bytes], token: str) -> str:
        """Create the batch; its id (Message Batches take no metadata: `find` goes by time and size)."""
        try:
            batch = await self.client.messages.batches.create(requests=[json.loads(line) for line in lines])
        except Exception as exc:
            raise sdk_error(exc, self.sdk) from None
        return batch.id

    async def find(self, record: dict, known: Collection[str]) -> str | None:
        """The batch a submission record (written before the call) led to, if it was created: the earliest one
        created since the record, of its size, that the run does not know yet. Its results are read by custom id,
        so a batch taken by mistake gives no reply to any request, and those are sent again."""
        since, found = _since(record), None
        try:
            async for batch in self.client.messages.batches.list(limit=100):
                if batch.created_at < since:
                    break
                counts = batch.request_counts
                size = counts.processing + counts.succeeded + counts.errored + counts.canceled + counts.expired
                if batch.id not in known and size == len(record["custom_ids"]):
                    found = batch.id            # the list is newest first: the last match is the earliest
        except Exception as exc:
            raise sdk_error(exc, self.sdk) from None
        return found

    async def state(self, batch_id: str) -> BatchState:
        """The batch's status and counts."""
        try:
            batch = await self.client.messages.batches.retrieve(batch_id)
        except Exception as exc:
            raise sdk_error(exc, self.sdk) from None
        counts = batch.request_counts
        return BatchState(batch.processing_status, {k: getattr(counts, k) for k in
                                                    ("processing", "succeeded", "errored", "canceled", "expired")},
                          batch.processing_status == "ended")

    async def results(self, batch_id: str, custom_ids: Sequence[str]) -> dict[str, Reply | ProviderError]:
        """Every request's reply or error, by custom id; streamed, an item over max_reply_bytes is an error of
        kind too_large, never parsed."""
        from anthropic.types.messages import MessageBatchIndividualResponse
        from .anthropic import reply_of

        def item(raw: bytes) -> tuple[str, Reply | ProviderError]:
            entry = MessageBatchIndividualResponse.model_validate_json(raw)
            result = entry.result
            if result.type == "succeeded":
                return entry.custom_id, reply_of(result.message.model_dump(mode="json"), 0.0)
            if result.type == "errored":
                kind = getattr(getattr(result.error, "error", None), "type", "api_error")
                return entry.custom_id, _retryable(500 if kind in ("api_error", "overloaded_error") else 400, kind)
            return entry.custom_id, _retryable(None, result.type)

        out: dict[str, Reply | ProviderError] = {}
        try:
            async with self.client.messages.batches.with_streaming_response.results(batch_id) as response:
                await _read(response.iter_bytes(), self.cfg, custom_ids, item, out)
        except ProviderError:
            raise
        except Exception as exc:
            raise sdk_error(exc, self.sdk) from None
        return out


_CUSTOM_ID = re.compile(rb'"custom_id"\s*:\s*"([^"]{1,64})"')
LINE_OVERHEAD = 4096         # what a batch file's line holds besides the reply body


async def _read(chunks, cfg: EndpointConfig, custom_ids: Sequence[str], item, out: dict) -> None:
    """Put a streamed batch file's items into `out` by custom id. A line over max_reply_bytes is a too_large error
    for its custom id (read from the line's start); past what the batch's replies may hold in all, reading stops
    and the requests not yet seen are too_large errors."""
    limit = cfg.max_reply_bytes + LINE_OVERHEAD
    too_large = lambda: PermanentError(str(ReplyTooLarge(cfg.max_reply_bytes)), kind="too_large")
    try:
        async for line, over in capped_lines(chunks, limit, limit * max(1, len(custom_ids)) + (1 << 20)):
            if over:
                if found := _CUSTOM_ID.search(line):
                    out[found.group(1).decode("utf-8", "replace")] = too_large()
            elif line.strip():
                cid, result = item(line)
                out[cid] = result
    except ReplyTooLarge:
        for cid in custom_ids:
            out.setdefault(cid, too_large())

