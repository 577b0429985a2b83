"""The pydantic bases of every detector's option table and carried state.

Apart from base.py so that runs.py (which base.py's `Detector` builds on) can use them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class DetectorOptions(BaseModel):
    """Base of every detector's option table: unknown names are errors, not ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DetectorState(BaseModel):
    model_config = ConfigDict(extra="forbid")
