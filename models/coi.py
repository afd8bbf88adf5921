"""Public chain-of-identity verification: the question and the answer."""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints, model_validator

from models.base import RequestModel, ResponseModel


class VerifyRequest(RequestModel):
    token: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None
    coi: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> VerifyRequest:
        if (self.token is None) == (self.coi is None):
            raise ValueError("give exactly one of token or coi")
        return self


class VerifyResponse(ResponseModel):
    valid: bool
    coi: str | None = None
    check_char: str | None = None
    check_char_ok: bool
    signature_ok: bool | None = None
    case_id: str | None = None
    kid: str | None = None
    issued_at: str | None = None
    reason: str | None = None
