"""Recorded answers (a vendor's own interface, a notebook export) replayed as a target."""
from __future__ import annotations

from collections.abc import Sequence

from ..errors import PermanentError
from ..types import EndpointConfig, Message
from .base import GenParams, Reply


class ReplayProvider:
    """Answers from a table {(case_id, sample): text}; a case it lacks is an error, never an empty answer."""

    def __init__(self, endpoint: EndpointConfig, answers: dict[tuple[str, int], str]):
        self.name = endpoint.name
        self.answers = answers

    async def complete(self, messages: Sequence[Message], params: GenParams) -> Reply:
        """The recorded answer for the case and sample."""
        try:
            return Reply(self.answers[(params.case_id, params.sample)])
        except KeyError:
            raise PermanentError(f"no recorded answer for case '{params.case_id}' sample {params.sample}",
                                 kind="missing") from None
