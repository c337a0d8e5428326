"""Slack app latency: ack of signed ``/stanch`` commands, and command -> first AWS containment call.

    .venv/bin/python bench/slack.py                 # ack latency + in-process launcher
    .venv/bin/python bench/slack.py --deployment    # also the deployment, run by python -m flows.entrypoints.worker
    .venv/bin/python bench/slack.py --deployment --serve-baseline --skip-ack   # + flow.serve baseline

1. Ack latency: ``rounds`` x 20 concurrent signed ``/stanch run slack-ack …`` over real HTTP (Bolt
   WSGI adapter under threaded werkzeug, 127.0.0.1) against a temporary Prefect server; every
   command really starts a run (a one-step ``core.note`` runbook, so the box is not saturated by
   containment work): ``DeploymentLauncher`` with ``python -m flows.entrypoints.worker`` executing the runs in
   its own process, and ``InProcessLauncher`` executing them in the app process. Counts, read back
   from the Slack stand-in, the incident store and the Prefect API: runs announced "started",
   reported "failed to start", commands never answered, runs that recorded ``run.started`` and
   finished, flow runs (and duplicates). Baseline: a bare Bolt app in the same process whose
   listener only calls ``ack()``. Targets: ack p99 <= 100 ms; announced == started, none silent.
2. Command -> first AWS call: time from sending the command to the first IAM UpdateAccessKey
   reaching moto (a WSGI hook in front of the sandbox's fault injector). Target: <= 3 s.
   Executors: the in-process launcher; with ``--deployment`` ``DeploymentLauncher`` ->
   ``run_deployment`` -> ``python -m flows.entrypoints.worker`` (runs in threads of a warm process); with
   ``--serve-baseline`` also ``python -m flows.entrypoints.deploy`` (``flow.serve``: a subprocess per run).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
for _k, _v in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
               ("AWS_DEFAULT_REGION", "us-east-1")):
    os.environ[_k] = _v

import urllib3  # noqa: E402
from slack_bolt import App  # noqa: E402
from slack_sdk import WebClient  # noqa: E402
from werkzeug.serving import make_server  # noqa: E402

SECRET = "bench-signing-secret-0123456789abcdef"
DEMO = {"advisory": "MAL-2026-2307", "live_from": "2026-03-31T00:21:00Z", "live_until": "2026-03-31T03:15:00Z",
        "app_version": "4.2.1", "ca_secret": "stanch/sandbox/ca"}


def sign(body: str) -> dict[str, str]:
    ts = str(int(time.time()))
    sig = "v0=" + hmac.new(SECRET.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": sig,
            "Content-Type": "application/x-www-form-urlencoded"}


def command_body(text: str, response_url: str, user: str = "U0LEAD1") -> str:
    return urlencode({"team_id": "T0STANCH01", "channel_id": "C0INCIDENT", "user_id": user, "command": "/stanch",
                      "text": text, "response_url": response_url, "api_app_id": "A0STANCH01",
                      "trigger_id": f"{secrets.randbelow(10**12)}.{secrets.token_hex(8)}"})


def serve(app: App) -> tuple[str, Callable[[], None]]:
    from werkzeug.serving import WSGIRequestHandler

    from flows.entrypoints.slack_app import wsgi_app

    class Quiet(WSGIRequestHandler):
        def log(self, type: str, message: str, *args: Any) -> None:
            return

    server = make_server("127.0.0.1", 0, wsgi_app(app), threaded=True, request_handler=Quiet)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
    return f"http://127.0.0.1:{server.server_port}/slack/events", stop


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def burst(url: str, bodies: Iterable[str], http: urllib3.PoolManager) -> list[float]:
    bodies = list(bodies)
    barrier = threading.Barrier(len(bodies))
    out: list[float] = []
    lock = threading.Lock()

    def one(body: str) -> None:
        headers = sign(body)
        barrier.wait()
        t0 = time.perf_counter()
        resp = http.request("POST", url, body=body.encode(), headers=headers, timeout=10)
        dt = time.perf_counter() - t0
        assert resp.status == 200, (resp.status, resp.data[:200])
        with lock:
            out.append(dt)

    threads = [threading.Thread(target=one, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def make_runbooks(dest: Path) -> Path:
    shutil.copytree(ROOT / "runbooks", dest)
    p = dest / "compromised-dependency.yaml"
    p.write_text(p.read_text().replace('slack:\n  channel: "#incident"\n',
                                       'slack:\n  channel: "#incident"\n  allowed_users: ["U0ONCALL", '
                                       '"@security-leads"]\n', 1))
    return dest


NOTE_RUNBOOK = """\
name: slack-ack
title: One note (ack benchmark)
slack:
  channel: "#incident"
  allowed_users: [U0LEAD1]
inputs:
  message: {type: string, default: hello}
steps:
  - id: write
    action: core.note
    with: {message: "{{ inputs.message }}"}
"""


def bench_ack(rounds: int, concurrency: int, tmp: Path, modes: list[str], start_timeout: float,
              attempt_timeout: float) -> None:
    """Ack latency of concurrent signed ``/stanch run`` commands that really start runs, and the
    count of runs announced vs started, per launcher; baseline: a bare Bolt app (ack only)."""
    from prefect.settings import get_current_settings

    from flows.entrypoints.slack.commands import summarize
    from flows.entrypoints.slack.launchers import DeploymentLauncher, InProcessLauncher, RunLauncher, StartPolicy
    from flows.entrypoints.slack_app import SlackAppConfig, create_app
    from integrations.sandbox.slack_standin import SlackStandIn
    from integrations.settings import StanchSettings

    api_url = str(get_current_settings().api.url)
    policy = StartPolicy(deadline=start_timeout, attempt_timeout=attempt_timeout, attempts=10, max_backoff=8)
    http = urllib3.PoolManager(maxsize=concurrency * 2, retries=False)
    rb = tmp / "rb"
    rb.mkdir(parents=True, exist_ok=True)
    (rb / "slack-ack.yaml").write_text(NOTE_RUNBOOK)
    rows: list[tuple[str, list[float], dict[str, int]]] = []
    with SlackStandIn() as standin:
        os.environ.update({"STANCH_SLACK_BASE_URL": standin.api_url, "STANCH_SLACK_TOKEN": standin.token,
                           "STANCH_SLACK_CHANNEL": "#incident", "STANCH_SLACK_SIGNING_SECRET": SECRET})
        bare = App(client=WebClient(token=standin.token, base_url=standin.api_url), signing_secret=SECRET)
        bare.command("/stanch")(lambda ack: ack())
        plan: list[tuple[str, Callable[[], RunLauncher] | None, list[str] | None]] = [("bare Bolt (ack only)", None,
                                                                                        None)]
        if "deployment" in modes:
            plan.append(("stanch run, deployment + flows.entrypoints.worker", lambda: DeploymentLauncher(policy=policy),
                         [sys.executable, "-m", "flows.entrypoints.worker", "--poll", "0.25", "--max-concurrent", "4"]))
        if "inprocess" in modes:
            plan.append(("stanch run, in-process launcher", lambda: InProcessLauncher(policy), None))
        for label, make, cmd in plan:
            executor: subprocess.Popen[bytes] | None = None
            try:
                if cmd is not None:
                    _delete_deployment()
                    executor = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                                env={**os.environ, "PREFECT_API_URL": api_url})
                    _wait_deployment()
                home = tmp / f"home-{len(rows)}"
                os.environ["STANCH_HOME"] = str(home)
                launcher = make() if make is not None else None
                app = bare if launcher is None else create_app(
                    StanchSettings(), launcher, config=SlackAppConfig(runbooks_dir=rb, start_timeout=start_timeout))
                url, stop = serve(app)
                burst(url, [command_body("help", standin.response_url())], http)  # warm-up
                samples: list[float] = []
                urls: list[str] = []
                for r in range(rounds):
                    batch = [standin.response_url() for _ in range(concurrency)]
                    urls += batch
                    samples += burst(url, [command_body(f"run slack-ack message=r{r}-{i}", u)
                                           for i, u in enumerate(batch)], http)
                    time.sleep(0.5)
                counts: dict[str, int] = {}
                if launcher is not None:
                    counts = _count_runs(standin, urls, home / "incidents", summarize)
                stop()
                if isinstance(launcher, InProcessLauncher):
                    launcher.join(60)
                rows.append((label, samples, counts))
            finally:
                if executor is not None:
                    executor.terminate()
                    try:
                        executor.wait(15)
                    except subprocess.TimeoutExpired:
                        executor.kill()
                        executor.wait(5)
    print(f"\n== ack latency: {rounds} bursts x {concurrency} concurrent signed `/stanch run` (each really "
          f"starts a flow run; start bound {start_timeout:.0f} s, {attempt_timeout:.0f} s per API call) ==")
    base = rows[0][1]
    for label, s, counts in rows:
        p50, p99 = pct(s, 50) * 1000, pct(s, 99) * 1000
        line = (f"  {label:<40} p50 {p50:6.1f} ms  p99 {p99:6.1f} ms  max {max(s) * 1000:6.1f} ms  "
                f"(x{p50 / (pct(base, 50) * 1000):.2f} / x{p99 / (pct(base, 99) * 1000):.2f} of baseline)")
        print(line)
        if counts:
            print(f"  {'':<40} announced started {counts['announced']} / failed-to-start {counts['failed']} / "
                  f"silent {counts['silent']} — runs that started {counts['started']}, finished "
                  f"{counts['finished']}, flow runs on the API {counts['flow_runs']} "
                  f"(duplicates {counts['duplicates']})")
            print(f"  {'':<40} target ack p99 <= 100 ms: {'met' if p99 <= 100 else 'MISSED'}; announced == started: "
                  f"{'met' if counts['announced'] == counts['started'] and not counts['silent'] else 'MISSED'}")


def _count_runs(standin: Any, urls: list[str], store: Path, summarize: Callable[[Path], Any],
                timeout: float = 300.0) -> dict[str, int]:
    """Wait until every command got its channel answer and every announced run finished; count."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    from flows.engine.run_labels import incident_of, incident_tag

    deadline = time.monotonic() + timeout

    def answers() -> list[str]:
        return [r["body"]["text"] for u in urls for r in standin.responses(u)
                if r["body"].get("response_type") == "in_channel"]

    while len(answers()) < len(urls) and time.monotonic() < deadline:
        time.sleep(0.2)
    texts = answers()
    announced = [t.split("incident `", 1)[1].split("`", 1)[0] for t in texts if "failed to start" not in t]
    failed = sum("failed to start" in t for t in texts)
    started = finished = 0
    for inc in announced:
        while time.monotonic() < deadline:
            folder = store / inc
            if (folder / "timeline.jsonl").exists() and summarize(folder).outcome is not None:
                break
            time.sleep(0.2)
        s = summarize(store / inc) if (store / inc / "timeline.jsonl").exists() else None
        started += bool(s and s.started)
        finished += bool(s and s.outcome == "succeeded")
    names: list[str | None] = []  # the incident of each flow run (its incident:<id> tag)
    with get_client(sync_client=True) as client:
        for i in range(0, len(announced), 50):
            names += [incident_of(r.tags) for r in client.read_flow_runs(flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(any_=[incident_tag(a) for a in announced[i:i + 50]])), limit=200)]
    return {"announced": len(announced), "failed": failed, "silent": len(urls) - len(texts), "started": started,
            "finished": finished, "flow_runs": len(names), "duplicates": len(names) - len(set(names))}


class FirstCall:
    """WSGI hook in front of moto: when did the first IAM UpdateAccessKey arrive?"""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.at: float | None = None
        self.event = threading.Event()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        from integrations.sandbox.faults import identify

        if self.at is None:
            service, action, _ = identify(environ)
            if service == "iam" and action == "UpdateAccessKey":
                self.at = time.perf_counter()
                self.event.set()
        return self.app(environ, start_response)


def bench_first_call(runs: int, tmp: Path, deployment: bool, serve_baseline: bool = False) -> None:
    from prefect.settings import get_current_settings

    from flows.entrypoints.slack.launchers import DeploymentLauncher, InProcessLauncher, RunLauncher
    from flows.entrypoints.slack_app import SlackAppConfig, create_app
    from integrations.aws.session import clear_client_cache
    from integrations.sandbox import Sandbox
    from integrations.sandbox.state import default_slack_factory
    from integrations.settings import StanchSettings

    print("\n== /stanch run -> first AWS containment call (iam:UpdateAccessKey at moto) ==")
    api_url = str(get_current_settings().api.url)
    clear_client_cache()
    with Sandbox(tmp / "sandbox", slack_factory=default_slack_factory) as sb:
        assert sb.state is not None and sb.moto.injector is not None
        env = {**sb.state.environment(), "STANCH_SLACK_CHANNEL": "#incident", "STANCH_HOME": str(tmp / "home"),
               "STANCH_SLACK_SIGNING_SECRET": SECRET}
        os.environ.update(env)
        settings = StanchSettings()
        http = urllib3.PoolManager(retries=False)
        text = "run compromised-dependency " + " ".join(
            f"{k}={v}" for k, v in {**DEMO, "inventory": str(sb.state.inventory_path)}.items())
        # (label, launcher, executor command or None): each executor serves stanch-runbook/stanch alone
        modes: list[tuple[str, Callable[[], RunLauncher], list[str] | None]] = [
            ("in-process launcher", InProcessLauncher, None)]
        if deployment:
            modes.append(("deployment, flows.entrypoints.worker (poll 0.25 s)", DeploymentLauncher,
                          [sys.executable, "-m", "flows.entrypoints.worker", "--poll", "0.25"]))
            if serve_baseline:
                modes.append(("deployment, flow.serve (poll 1 s)", DeploymentLauncher,
                              [sys.executable, "-m", "flows.entrypoints.deploy", "--poll", "1"]))
        for label, make, cmd in modes:
            executor: subprocess.Popen[bytes] | None = None
            try:
                if cmd is not None:
                    _delete_deployment()
                    executor = subprocess.Popen(
                        cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                        env={**os.environ, "PREFECT_API_URL": api_url, "PREFECT_RUNNER_POLL_FREQUENCY": "1"})
                    _wait_deployment()
                launcher = make()
                app = create_app(settings, launcher,
                                 config=SlackAppConfig(runbooks_dir=make_runbooks(tmp / f"rb-{len(label)}"),
                                                       drill=True))
                url, stop = serve(app)
                samples = []
                for _ in range(runs):
                    sb.reseed()
                    hook = FirstCall(sb.moto.injector.app)
                    original, sb.moto.injector.app = sb.moto.injector.app, hook
                    body = command_body(text, sb.slack.url + "/hooks/T/1", user="U0ONCALL")  # type: ignore
                    t0 = time.perf_counter()
                    assert http.request("POST", url, body=body.encode(), headers=sign(body)).status == 200
                    got = hook.event.wait(60)
                    sb.moto.injector.app = original
                    if got and hook.at is not None:
                        samples.append(hook.at - t0)
                    _wait_quiet(settings.store_dir)
                stop()
                if isinstance(launcher, InProcessLauncher):
                    launcher.join(60)
                if samples:
                    print(f"  {label:<40} median {statistics.median(samples):5.2f} s  "
                          f"min {min(samples):5.2f} s  max {max(samples):5.2f} s  (n={len(samples)})  "
                          f"target <= 3 s: {'met' if max(samples) <= 3 else 'MISSED'}")
                else:
                    print(f"  {label:<40} no AWS call observed within 60 s")
            finally:
                if executor is not None:
                    executor.terminate()
                    try:
                        executor.wait(15)
                    except subprocess.TimeoutExpired:
                        executor.kill()
                        executor.wait(5)
    clear_client_cache()


def _delete_deployment() -> None:
    """So ``_wait_deployment`` waits for the next executor, not the previous one's registration."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client, contextlib.suppress(ObjectNotFound):
        client.delete_deployment(client.read_deployment_by_name("stanch-runbook/stanch").id)


def _wait_deployment(timeout: float = 90.0) -> None:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with get_client(sync_client=True) as client:
                client.read_deployment_by_name("stanch-runbook/stanch")
                return
        except Exception:
            time.sleep(0.5)
    raise RuntimeError("the deployment did not appear "
                       "(python -m flows.entrypoints.worker / flows.entrypoints.deploy failed?)")


def _wait_quiet(store: Path, timeout: float = 60.0) -> None:
    """Until every incident in the store has run.finished (so the next run starts on a quiet box)."""
    from flows.entrypoints.slack.commands import open_incidents

    deadline = time.monotonic() + timeout
    time.sleep(0.5)
    while open_incidents(store) and time.monotonic() < deadline:
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--deployment", action="store_true",
                        help="Also measure the deployment executed by python -m flows.entrypoints.worker.")
    parser.add_argument("--serve-baseline", action="store_true",
                        help="With --deployment: also the old flow.serve runner (python -m flows.entrypoints.deploy).")
    parser.add_argument("--ack-launchers", default="deployment,inprocess",
                        help="Launchers of the ack part (comma-separated: deployment, inprocess).")
    parser.add_argument("--start-timeout", type=float, default=120.0,
                        help="STANCH_SLACK_START_TIMEOUT of the ack part (a temporary SQLite server on a loaded box "
                             "stalls for tens of seconds under a burst; production default 30).")
    parser.add_argument("--attempt-timeout", type=float, default=20.0, help="Per API call while creating a run.")
    parser.add_argument("--skip-runs", action="store_true", help="Only the ack latency part.")
    parser.add_argument("--skip-ack", action="store_true", help="Only the command -> first AWS call part.")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="stanch-bench-slack-"))
    os.environ.setdefault("PREFECT_HOME", str(tmp / "prefect"))
    print(f"bench/slack.py — {os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    from prefect.settings import temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    try:
        t_server = time.perf_counter()
        with prefect_test_harness(server_startup_timeout=300), \
                temporary_settings(updates={"flows.heartbeat_frequency": None}):
            print(f"(temporary Prefect server up in {time.perf_counter() - t_server:.1f} s)")
            if not args.skip_ack:
                bench_ack(args.rounds, args.concurrency, tmp / "ack", args.ack_launchers.split(","),
                          args.start_timeout, args.attempt_timeout)
            if not args.skip_runs:
                bench_first_call(args.runs, tmp / "runs", args.deployment, args.serve_baseline)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
