"""Request bodies of the API (pydantic): unknown fields are refused by name, numbers are not
guessed from strings, and every constraint names its field in the 422 answer."""
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from headend import jobs

_strict = ConfigDict(extra="forbid", str_strip_whitespace=True)
Text = Annotated[str, Field(max_length=500)]


class PaymentIn(BaseModel):
    """A payment to record (its token is in the answer)."""
    model_config = _strict
    meter_id: Annotated[str, Field(min_length=1, max_length=64, examples=["BJ00000001"])]
    amount_rupees: Annotated[StrictInt, Field(gt=0, examples=[200],
                                              description="whole rupees")]
    ref: Annotated[str, Field(min_length=1, max_length=128, examples=["UPI-20260610-000123"],
                              description="the payment's reference: one payment per ref")]


class NoteIn(BaseModel):
    """Why an operator does something (kept in the audit trail)."""
    model_config = _strict
    note: Text = ""


class ByHandIn(BaseModel):
    """Who confirmed that the consumer keyed the token in."""
    model_config = _strict
    note: Annotated[str, Field(min_length=1, max_length=500,
                               examples=["consumer confirmed on the phone, call 4411"])]


class JobIn(BaseModel):
    """A bulk job over a list of meters or a registry query (exactly one of them)."""
    model_config = _strict
    kind: Annotated[str, Field(examples=list(jobs.KINDS),
                               description="one of: " + ", ".join(jobs.KINDS))]
    meter_ids: Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]] | None,
                         Field(min_length=1, max_length=1_000_000)] = None
    where: Annotated[str | None, Field(min_length=1, max_length=1000,
                                       examples=["feeder=F7 and segment=S2"])] = None
    reason: Text = ""
    dry_run: bool = False
    at: Annotated[float | None, Field(description="dry run only: judge the calendar at this "
                                      "Unix time (default now)")] = None
    max_attempts: Annotated[StrictInt | None, Field(ge=1, le=100)] = None
    retry_base_s: Annotated[float | None, Field(gt=0, le=86400)] = None
    retry_cap_s: Annotated[float | None, Field(gt=0, le=86400)] = None
    segment_limit: Annotated[StrictInt | None, Field(ge=1, le=100000)] = None
    params: Annotated[dict | None, Field(description="what a set_* kind writes: set_tariff "
                                         "{rates}, set_holidays {holidays}, set_window {window, "
                                         "grace_s} (headend/job_params.py)",
                                         examples=[{"rates": [700, 900]}])] = None
    override_notices: Annotated[bool, Field(description="disconnect: also cut the meters "
                                            "blocked only by missing notices (audited)")] = False


class ReasonIn(BaseModel):
    """Why (kept in the audit trail)."""
    model_config = _strict
    reason: Text = ""


class KillSwitchIn(BaseModel):
    """Turn all bulk work off (on=true) or let it run again."""
    model_config = _strict
    on: bool
    reason: Text = ""
