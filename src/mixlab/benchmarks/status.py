"""What became of a benchmark row: a `status` column of Status values and a free-text
`reason` beside it, in mixing.csv and loss.csv (docs/design.md §7).

The measuring code says why a row has no numbers as one text, "<kind>: <reason>" (e.g.
"not measured: no CUDA device"), and files written before the `reason` column hold only
that text. `with_reason` turns either form into the two columns, so that readers compare
enum values and never match text by prefix.
"""

from __future__ import annotations

from enum import StrEnum

import pandas as pd


class Status(StrEnum):
    OK = "ok"
    NO_CUDA = "no_cuda"  # needs a CUDA device the run did not have
    NOT_MEASURED = "not_measured"  # skipped for another reason (too slow, not importable)
    UNSUPPORTED = "unsupported"  # the implementation cannot do this case
    ERROR = "error"  # it raised

    @property
    def label(self) -> str:
        """The kind as the text form writes it."""
        return LABELS[self]


LABELS = {
    Status.OK: "ok",
    Status.NO_CUDA: "not measured",
    Status.NOT_MEASURED: "not measured",
    Status.UNSUPPORTED: "unsupported",
    Status.ERROR: "error",
}
_KINDS = {"not measured": Status.NOT_MEASURED, "unsupported": Status.UNSUPPORTED}
_KINDS["error"] = Status.ERROR


def parse(text: str) -> tuple[Status, str]:
    """(status, reason) of a status text "ok" or "<kind>: <reason>"; ValueError if neither."""
    if text == Status.OK:
        return Status.OK, ""
    kind, sep, reason = str(text).partition(": ")
    if not sep or kind not in _KINDS:
        raise ValueError(f"status: {text!r} is neither 'ok' nor '<kind>: <reason>'")
    status = _KINDS[kind]
    # The one place the text is read: both spellings ever written for a missing GPU.
    if status == Status.NOT_MEASURED and reason in ("no CUDA", "no CUDA device"):
        status = Status.NO_CUDA
    return status, reason


def text(status: Status, reason: str) -> str:
    """The text form back: "ok", or "<kind>: <reason>"."""
    return "ok" if status == Status.OK else f"{status.label}: {reason}"


def with_reason(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with `status` as Status values and a `reason` column right after it, from
    either the text form or the two columns; ValueError naming a status it cannot read."""
    if "reason" in frame.columns:
        rows = zip(frame["status"], frame["reason"], strict=True)
        pairs = [(_member(s), "" if pd.isna(r) else str(r)) for s, r in rows]
    else:
        pairs = [parse(s) for s in frame["status"]]
    out = frame.drop(columns="reason", errors="ignore")
    out["status"] = pd.Series([s for s, _ in pairs], index=frame.index, dtype=object)
    out.insert(out.columns.get_loc("status") + 1, "reason", [r for _, r in pairs])
    return out


def _member(value) -> Status:
    if value not in Status._value2member_map_:
        raise ValueError(f"status: {value!r} is not one of {', '.join(Status)}")
    return Status(value)
