"""Who may approve a gated step, and when an approval step is decided.

Owns: the pure rules — an approver must be on the step's allow-list (a Slack user id, or a
member of a listed ``@user-group``), must not be the person who started the run, counts once;
``min_approvals`` distinct approvals grant the step; any allowed deny denies it; expiry denies.
Must not touch: Prefect, boto3, Slack (group membership is passed in already expanded).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from flows.engine.spec.models import Approval


def _bare(identity: str) -> str:
    """``slack:U0LEAD1`` / ``cli:U0LEAD1`` / ``U0LEAD1`` -> ``U0LEAD1``."""
    return identity.split(":", 1)[1] if ":" in identity else identity


def allowed_approvers(approval: Approval, group_members: dict[str, list[str]]) -> set[str]:
    """Expand ``@handle`` entries with ``group_members[handle]``; user ids pass through."""
    out: set[str] = set()
    for entry in approval.approvers:
        if entry.startswith("@"):
            out.update(group_members.get(entry[1:], []))
        else:
            out.add(entry)
    return out


def refusal(approval: Approval, approver: str, initiator: str, allowed: Iterable[str],
            already: Iterable[str]) -> str | None:
    """Why ``approver`` may not decide this step, or None when they may."""
    who = _bare(approver)
    if who not in set(allowed):
        return f"{who} is not allowed to approve this step (approvers: {', '.join(approval.approvers)})"
    if who == _bare(initiator):
        return f"{who} started this run and cannot approve it (two-person rule)"
    if who in {_bare(a) for a in already}:
        return f"{who} has already approved this step"
    return None


@dataclass
class ApprovalTally:
    approval: Approval
    approvals: list[str] = field(default_factory=list)
    denied_by: str | None = None

    @property
    def granted(self) -> bool:
        return self.denied_by is None and len(self.approvals) >= self.approval.min_approvals

    @property
    def decided(self) -> bool:
        return self.granted or self.denied_by is not None

    @property
    def missing(self) -> int:
        return max(0, self.approval.min_approvals - len(self.approvals))
