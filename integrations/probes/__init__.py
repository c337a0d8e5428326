"""Probes: a closed registry of READ-ONLY checks of the world a drill ran against (issue 10).

One module per family (``iam``, ``acm``, ``s3``, ``ses``, ``secretsmanager``, ``slack``,
``aws_calls``: what the sandbox counted); each
exports ``PROBES``. ``default_probes()`` is the registry scenarios may name; docs/drills.md's
table is tested against it.
Must not touch: ``flows``, ``prefect``; no probe changes anything it reads.
"""

from __future__ import annotations

from integrations.probes import acm, aws_calls, iam, s3, secretsmanager, ses, slack
from integrations.probes.base import Probe, ProbeContext, ProbeParams, ProbeRegistry, ProbeResult

__all__ = ["Probe", "ProbeContext", "ProbeParams", "ProbeRegistry", "ProbeResult", "default_probes"]


def default_probes() -> ProbeRegistry:
    return ProbeRegistry([*iam.PROBES, *acm.PROBES, *s3.PROBES, *ses.PROBES, *secretsmanager.PROBES, *slack.PROBES,
                          *aws_calls.PROBES])
