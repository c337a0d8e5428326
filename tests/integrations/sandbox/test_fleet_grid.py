"""The generated ``grid:<N>x<M>:<affected>`` fleet, read back from moto: N accounts x M services
exist with the right keys, certificates, buckets and senders; the affected ones are spread over
accounts; the probes see the grid (they read the fleet, not fixed names)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from integrations.aws.session import clients_for
from integrations.probes import ProbeContext, default_probes
from integrations.sandbox.fleet import seed_fleet
from integrations.sandbox.fleet_grid import GRID_LIMITS, grid_accounts, parse_grid
from integrations.settings import StanchSettings


def test_grid_3x2_with_two_affected_is_real_in_moto(aws_endpoint: str, tmp_path: Path) -> None:
    fleet = seed_fleet(aws_endpoint, tmp_path / "fleet", "grid:3x2:2")
    assert fleet.accounts == ["400000000001", "400000000002", "400000000003"]
    assert sorted(fleet.services) == [f"svc-{a:02d}-{s:02d}" for a in (1, 2, 3) for s in (1, 2)]
    hit = sorted(n for n, s in fleet.services.items() if s.affected)
    assert hit == ["svc-01-01", "svc-02-01"]  # round robin: two accounts, not two services of one
    settings = StanchSettings(aws_endpoint_url=aws_endpoint, aws_region="us-east-1")
    for name, svc in fleet.services.items():
        c = clients_for(settings, svc.account)
        keys = c("iam").list_access_keys(UserName=svc.ci_user)["AccessKeyMetadata"]
        assert sorted(k["AccessKeyId"] for k in keys) == sorted(svc.access_key_ids)
        assert len(keys) == (2 if svc.affected else 1) and {k["Status"] for k in keys} == {"Active"}
        if svc.affected:
            cert = c("acm").describe_certificate(CertificateArn=svc.certificate_arn)["Certificate"]
            assert cert["Type"] == "IMPORTED" and svc.account in svc.certificate_arn
            assert c("s3").get_object(Bucket=svc.release_bucket, Key=svc.release_key)["Body"].read()
            assert f"security@{name}.example" in c("ses").list_identities()["Identities"]
            c("secretsmanager").describe_secret(SecretId="stanch/sandbox/ca")  # the account's CA exists
    inv = yaml.safe_load(Path(fleet.inventory_path).read_text())
    assert {s["name"] for s in inv["services"] if s.get("signing_certificate")} == set(hit)
    assert all((Path(fleet.inventory_path).parent / s["lockfiles"][0]).is_file() for s in inv["services"])

    ctx = ProbeContext(aws=aws_endpoint, inventory_path=Path(fleet.inventory_path),
                       incident={"fleet": fleet.model_dump(mode="json")})
    probes = default_probes()
    inactive = probes.run("iam.ci_keys_inactive", {}, ctx)
    assert not inactive.passed and "svc-01-01" in inactive.detail and "svc-02-01" in inactive.detail
    assert probes.run("iam.keys_untouched", {}, ctx).passed


@pytest.mark.parametrize(("variant", "problem"), [
    ("grid:0x2:1", "1 to 20 accounts"),
    (f"grid:3x{GRID_LIMITS['services_per_account'] + 1}:1", "services per account"),
    ("grid:2x2:5", "5 affected services of 4"),
    ("grid:2x2:svc-09-01", "no service svc-09-01"),
    ("grid:2by2:1", "is not grid:<accounts>x<services>:<affected>"),
])
def test_malformed_grid_is_refused_before_anything_is_created(variant: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_grid(variant)


def test_named_affected_services_and_account_ids() -> None:
    spec = parse_grid("grid:2x3:svc-02-03+svc-01-01")
    assert spec is not None and spec.affected == ["svc-02-03", "svc-01-01"]
    assert spec.variant == "grid:2x3:svc-02-03+svc-01-01"
    assert grid_accounts(12)[-1] == "400000000012"
