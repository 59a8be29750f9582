"""case x target -> answer. The only caller of target providers."""
from __future__ import annotations

from .errors import ProviderError
from .providers.base import Endpoint, GenParams
from .types import Answer, Case, EndpointConfig


async def generate(endpoint: Endpoint, target: EndpointConfig, case: Case, sample: int = 0) -> Answer:
    """The target's answer to the case, or the error that prevented one (never placeholder text)."""
    params = GenParams(system=target.system_prompt, temperature=target.temperature, max_tokens=target.max_tokens,
                       case_id=case.id, sample=sample)
    try:
        reply = await endpoint.complete(case.conversation, params)
    except ProviderError as exc:
        return Answer(target.name, case.id, sample, None, f"{exc.kind}: {exc}", error_kind=exc.kind)
    return Answer(target.name, case.id, sample, reply.text, None, reply.usage, reply.refusal)
