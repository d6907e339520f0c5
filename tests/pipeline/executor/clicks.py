"""One record shape, declared in every value class a job may decode into; shared by the
executor tests."""

from __future__ import annotations

from dataclasses import dataclass

import faust
import msgspec
import pydantic

__all__ = ["Click", "ClickModel", "ClickRecord", "ClickStruct"]


@dataclass
class Click:
    user: str
    ts: int


class ClickStruct(msgspec.Struct):
    user: str
    ts: int


class ClickModel(pydantic.BaseModel):
    user: str
    ts: int


class ClickRecord(faust.Record, serializer="json"):
    user: str
    ts: int
