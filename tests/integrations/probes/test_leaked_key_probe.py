"""``iam.leaked_key_contained`` against moto: fails while the leaked key is Active, names it and its
account; fails when another user's key was touched or the owner's other keys were rotated without
approval; passes once the key is Inactive and nothing else changed."""

from __future__ import annotations

from pathlib import Path

from integrations.aws.session import clients_for
from integrations.probes import ProbeContext, default_probes
from integrations.sandbox.fleet import seed_fleet
from integrations.settings import StanchSettings


def test_leaked_key_probe_reads_the_real_key_states(aws_endpoint: str, tmp_path: Path) -> None:
    fleet = seed_fleet(aws_endpoint, tmp_path / "fleet", "leaked-key")
    iam = clients_for(StanchSettings(aws_endpoint_url=aws_endpoint, aws_region="us-east-1"), "333333333333")("iam")
    ctx = ProbeContext(aws=aws_endpoint, incident={"fleet": fleet.model_dump(mode="json")})
    probes, leaked = default_probes(), fleet.leaked_access_key_id
    untouched = {"expect": "inactive", "owner_other_keys": "untouched"}

    result = probes.run("iam.leaked_key_contained", untouched, ctx)
    assert not result.passed and f"leaked key {leaked} of svc-reporting in account 333333333333 is Active" \
        in result.detail

    iam.update_access_key(UserName="svc-reporting", AccessKeyId=leaked, Status="Inactive")
    assert probes.run("iam.leaked_key_contained", untouched, ctx).passed

    etl_key = fleet.users["svc-etl"].access_key_ids[0]
    iam.update_access_key(UserName="svc-etl", AccessKeyId=etl_key, Status="Inactive")  # collateral damage
    result = probes.run("iam.leaked_key_contained", untouched, ctx)
    assert not result.passed and "svc-etl in account 333333333333 (not the leaked key's user)" in result.detail
    iam.update_access_key(UserName="svc-etl", AccessKeyId=etl_key, Status="Active")

    other = fleet.users["svc-reporting"].access_key_ids[1]
    iam.delete_access_key(UserName="svc-reporting", AccessKeyId=other)  # a rotation nobody approved
    iam.create_access_key(UserName="svc-reporting")
    assert "svc-reporting's other keys changed" in probes.run("iam.leaked_key_contained", untouched, ctx).detail
    assert probes.run("iam.leaked_key_contained", {"owner_other_keys": "rotated"}, ctx).passed

    no_leak = ProbeContext(aws=aws_endpoint, incident={"fleet": {"services": {}}})
    assert "use fleet variant leaked-key" in probes.run("iam.leaked_key_contained", {}, no_leak).detail
