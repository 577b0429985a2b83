"""The pydantic bases of every detector's option table and carried state, and the types of
option values whose unit sets their range.

Apart from base.py so that runs.py (which base.py's `Detector` builds on) can use them.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Seconds = Annotated[float, Field(ge=0)]  # a duration or a span of time, options named *_s
Decibels = Annotated[float, Field(le=0)]  # a level relative to full scale (dBFS, LUFS): never above it
Fraction = Annotated[float, Field(ge=0, le=1)]  # a share or a ratio, 0 to 1
LumaLevels = Annotated[int, Field(ge=1, le=255)]  # a difference of 8-bit luma codes, at least one


class DetectorOptions(BaseModel):
    """Base of every detector's option table: unknown names are errors, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DetectorState(BaseModel):
    model_config = ConfigDict(extra="forbid")
