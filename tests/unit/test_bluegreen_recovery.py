"""Blue-green's failure paths on fake hosts (tests/support/fakehost_bg.py): what a killed run
left is settled by the next run, a switch that fails on host k of n is switched back on every
host it wrote, and every option is refused before anything connects."""

from __future__ import annotations

import json
from contextlib import contextmanager

import pytest
import yaml

from cerniq_ops import bluegreen, hosts, procedure, settings
from cerniq_ops.bluegreen import Pending, Recovery, plan_recovery, routing, same_request
from cerniq_ops.errors import BadInput, StepFailed
from cerniq_ops.procedure import Context
from cerniq_ops.rollout import Container
from tests.support.fakehost_bg import FakeHost, FakeState

pytestmark = pytest.mark.unit
APP1, APP2 = "app1.cerniq.app", "app2.cerniq.app"
DYNAMIC = "/opt/cerniq/traefik/dynamic/active.yml"
PENDING = "/opt/cerniq/bluegreen.pending"


@pytest.fixture
def prod():
    return settings.load("production", target="real")


# -- pure: options -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pause": "-1"}, "invalid --pause '-1': a number of seconds >= 0"),
        ({"pause": "abc"}, "invalid --pause 'abc'"),
        ({"pause": "nan"}, "invalid --pause 'nan'"),
        ({"delay": "-5"}, "invalid --delay '-5'"),
        ({"analysis_seconds": "-0.5"}, "invalid --analysis-seconds '-0.5'"),
        ({"to": "purple"}, "invalid --to 'purple': choose blue or green"),
        ({"steps": "50,10"}, "invalid --steps '50,10'"),
        ({"steps": "10,10,100"}, "invalid --steps '10,10,100'"),
        ({"steps": "0,50"}, "invalid --steps '0,50'"),
        ({"steps": "10,101"}, "invalid --steps '10,101'"),
        ({"steps": "ten"}, "invalid --steps 'ten'"),
    ],
)
def test_every_option_is_refused_with_one_line_naming_it(prod, options, message):
    with pytest.raises(BadInput) as refused:
        bluegreen.validate_options(options, prod)
    assert str(refused.value).startswith(message)


def test_valid_options_are_parsed_and_bad_settings_are_refused_too(prod, monkeypatch):
    parsed = bluegreen.validate_options(
        {"steps": "10,50", "pause": "0", "delay": "600", "analysis_seconds": "2", "to": "green"},
        prod,
    )
    assert parsed == {"steps": [10, 50, 100], "pause": 0.0, "delay": 600.0, "analysis_seconds": 2.0}
    monkeypatch.setenv("CERNIQ_OVERRIDE_BLUEGREEN_CANARY_PAUSE", "-1")
    with pytest.raises(BadInput, match="setting bluegreen_canary_pause -1.0"):
        bluegreen.validate_options({}, settings.load("production", target="real"))


def test_check_inputs_is_an_offline_step_first_in_every_procedure():
    for steps in (
        bluegreen.DEPLOY,
        bluegreen.SWITCH,
        bluegreen.CANARY,
        bluegreen.CANARY_IDLE,
        bluegreen.STOP_IDLE,
    ):
        assert steps[0] is bluegreen.check_inputs and bluegreen.check_inputs.offline
        assert steps[1].offline  # validate / confirm_change: still before any connection
        assert steps[2] is bluegreen.recover  # the first step on the hosts


# -- pure: what a re-run does with a killed run's record -------------------------------------
SWITCH_RECORD = Pending("bluegreen.switch", "blue", "green", "v1.1.0", "v1.0.0")


def test_a_switch_that_reached_every_host_is_resumed_by_the_same_command():
    routed = {APP1: "cerniq-green-first", APP2: "cerniq-green-first"}
    assert plan_recovery(SWITCH_RECORD, routed, same=True) == Recovery("resume", "green")
    assert plan_recovery(SWITCH_RECORD, routed, same=False) == Recovery("keep", "green")


def test_a_partial_switch_or_a_canary_split_is_put_back_to_the_color_routed_before():
    half = {APP1: "cerniq-green-first", APP2: "cerniq-blue-first"}
    assert plan_recovery(SWITCH_RECORD, half, same=True) == Recovery("put_back", "blue", (APP1,))
    split = {APP1: "cerniq-canary", APP2: "cerniq-canary"}
    assert plan_recovery(SWITCH_RECORD, split, same=True) == Recovery(
        "put_back", "blue", (APP1, APP2)
    )
    first = Pending("bluegreen.deploy", None, "blue", "v1.0.0", None, initial=True)
    assert plan_recovery(first, {APP1: "cerniq-blue-first", APP2: None}, same=True) == Recovery(
        "put_back", None, (APP1,)
    )


def test_same_request_is_the_same_procedure_towards_the_same_target():
    assert same_request(SWITCH_RECORD, "bluegreen.switch", None, None)
    assert same_request(SWITCH_RECORD, "bluegreen.switch", None, "green")
    assert not same_request(SWITCH_RECORD, "bluegreen.switch", None, "blue")
    assert not same_request(SWITCH_RECORD, "bluegreen.deploy", "v1.1.0", None)
    deploy = Pending("bluegreen.deploy", "blue", "green", "v1.1.0", "v1.0.0")
    assert same_request(deploy, "bluegreen.deploy", "v1.1.0", None)
    assert not same_request(deploy, "bluegreen.deploy", "v1.2.0", None)


def test_the_run_record_round_trips_and_a_garbled_one_is_ignored():
    text = bluegreen.pending_text(SWITCH_RECORD)
    assert json.loads(text)["from_color"] == "blue"
    assert bluegreen.parse_pending(text) == SWITCH_RECORD
    for garbled in (None, "", "{", '{"to": "purple"}', json.dumps({**json.loads(text), "to": "x"})):
        assert bluegreen.parse_pending(garbled) is None


def test_without_a_run_record_markers_follow_a_unanimous_traefik_only_when_valid():
    green = {APP1: "cerniq-green-first", APP2: "cerniq-green-first"}
    assert bluegreen.markers_to_repair({APP1: "blue", APP2: "green"}, green) == "green"
    assert bluegreen.markers_to_repair({APP1: "blue", APP2: None}, green) == "green"
    assert bluegreen.markers_to_repair({APP1: "green", APP2: "green"}, green) is None
    assert bluegreen.markers_to_repair({APP1: None, APP2: None}, green) is None  # no marker yet
    assert bluegreen.markers_to_repair({APP1: "purple", APP2: "green"}, green) is None
    mixed = {APP1: "cerniq-green-first", APP2: "cerniq-blue-first"}
    assert bluegreen.markers_to_repair({APP1: "blue", APP2: "blue"}, mixed) is None
    canary = {APP1: "cerniq-canary", APP2: "cerniq-canary"}
    assert bluegreen.markers_to_repair({APP1: "blue", APP2: "blue"}, canary) is None


def test_temporary_names_and_their_removal_are_exact(prod):
    assert bluegreen.temp_paths(prod)[0] == "/opt/cerniq/.active-env.tmp-cerniq"
    assert bluegreen.temp_paths(prod)[-1] == "/opt/cerniq/traefik/dynamic/.active.yml.tmp-cerniq"
    assert bluegreen.remove_existing(["/a b", "/c"]) == (
        'for p in \'/a b\' /c; do if [ -e "$p" ]; then rm -f "$p" && echo "$p"; fi; done; true'
    )


def _c(cid, service, version, state="running"):
    return Container(cid, f"registry.cerniq.app/cerniq/{service}:{version}", service, state, "Up")


def test_a_color_is_one_running_container_per_service_on_the_version(prod):
    good = [_c("a1", "api", "v2"), _c("w1", "web", "v2"), _c("k1", "workers", "v2")]
    assert bluegreen.color_problems(good, prod, "green", "v2") == []
    exited = [_c("a0", "api", "v1", "exited"), *good]
    assert bluegreen.stale_containers(exited) == [exited[0]]
    assert bluegreen.color_problems(exited, prod, "green", "v2") == [
        "green api: a0 v1 exited, a1 v2 running (want 1 x v2)"
    ]
    assert bluegreen.surplus_containers(exited, prod, "v2") == [exited[0]]
    assert bluegreen.surplus_containers([_c("a0", "api", "v1")], prod, "v2") == []
    wrong = [_c("a1", "api", "v2"), _c("w1", "web", "v1")]
    assert bluegreen.color_problems(wrong, prod, "green", "v2") == [
        "green web: w1 v1 running (want 1 x v2)",
        "green workers: no container (want 1 x v2)",
    ]


# -- fake hosts: Traefik answering from the file it watches --------------------------------------
def traefik(stale: str | None = None, broken: bool = False):
    """A responder for Traefik's API on a fake host: it routes what the host's active.yml says
    (or STALE routing forever, as a Traefik that never takes the change; BROKEN: bad JSON)."""

    def answer(cmd: str, host: FakeHost) -> tuple[bool, str]:
        if "/metrics" in cmd:
            return True, "<html>oops" if broken == "metrics" else ""
        if broken:
            return True, "<html>oops\n200"
        config = yaml.safe_load(host.files.get(DYNAMIC, "") or "{}") or {}
        http = config.get("http", {})
        if "/routers/cerniq-app@file" in cmd:
            service = stale or (http.get("routers", {}).get("cerniq-app") or {}).get("service")
            return True, (json.dumps({"service": service}) if service else "") + (
                "\n200" if service else "\n404"
            )
        if "/services/" in cmd:
            name = cmd.split("/services/")[1].split("@")[0]
            doc = http.get("services", {}).get(name)
            body = {**(doc or {}), "serverStatus": {"http://x:80": "UP"}}
            return True, json.dumps(body) + "\n200"
        return True, "{}\n200"

    return answer


@pytest.fixture
def run_on_fakes(prod, monkeypatch):
    """(ctx, fake hosts by name) with hosts.session yielding the fake state."""
    state = FakeState([h.name for h in prod.hosts])

    @contextmanager
    def session(_settings, _hosts=None, user=None):
        yield state

    monkeypatch.setattr(hosts, "session", session)
    monkeypatch.setattr(routing, "CONFIRM_SECONDS", 0.3)  # read by confirm_routing
    monkeypatch.setattr(  # the host's entrypoint answers from what its Traefik routes
        routing,
        "_answers_from",
        lambda url, color: (
            bluegreen.routed_service(state.inventory.get_host(APP1 if APP1 in url else APP2))
            == bluegreen.routed_name(color)
        ),
    )
    fakes = state.inventory.hosts
    for name in (APP1, APP2):
        fakes[name].answer(r"curl .*127\.0\.0\.1:64080", traefik())
        fakes[name].files[DYNAMIC] = bluegreen.render(bluegreen.dynamic_config("blue"))
        fakes[name].files["/opt/cerniq/active-env"] = "blue\n"
    ctx = Context(prod, "bluegreen.switch", version="v1.1.0", progress=lambda _: None)
    ctx.state = state  # type: ignore[assignment]
    ctx.facts.update(active="blue", idle="green", previous_version="v1.0.0")
    return ctx, fakes


def routes(fake: FakeHost) -> str:
    return yaml.safe_load(fake.files[DYNAMIC])["http"]["routers"]["cerniq-app"]["service"]


def test_host_2_of_2_not_confirming_switches_host_1_back_and_names_both(run_on_fakes):
    ctx, fakes = run_on_fakes
    fakes[APP2].answer(r"curl .*127\.0\.0\.1:64080", traefik(stale="cerniq-blue-first"))
    with pytest.raises(StepFailed, match=f"Traefik on {APP2} to route cerniq-green-first"):
        bluegreen.switch_traffic(ctx)
    assert routes(fakes[APP1]) == "cerniq-green-first"  # host 1 was switched
    assert set(ctx.facts["written"]) == {APP1, APP2}
    assert fakes[APP1].files[PENDING]  # the run record went first
    detail = bluegreen.switch_back(ctx)
    assert detail == f"switched back: cerniq-app routes cerniq-blue-first again on {APP1}, {APP2}"
    assert routes(fakes[APP1]) == routes(fakes[APP2]) == "cerniq-blue-first"
    assert PENDING not in fakes[APP1].files and PENDING not in fakes[APP2].files
    assert bluegreen.where_traffic_goes(ctx) == (
        f"traffic: {APP1} routes cerniq-blue-first, {APP2} routes cerniq-blue-first"
    )


def test_a_host_lost_during_the_switch_back_is_named_with_what_it_routes(run_on_fakes):
    ctx, fakes = run_on_fakes
    fakes[APP2].answer(r"curl .*127\.0\.0\.1:64080", traefik(broken=True))
    with pytest.raises(StepFailed, match="answered 200 with a body that is not JSON"):
        bluegreen.switch_traffic(ctx)
    fakes[APP2].fail(r"^put ", "ssh: connection dropped")
    with pytest.raises(StepFailed) as partial:
        bluegreen.switch_back(ctx)
    assert str(partial.value) == (
        f"switched back {APP1} (cerniq-app routes cerniq-blue-first again); "
        f"could NOT switch back {APP2} (writing active.yml failed: StepFailed: {APP2}: could not "
        f"upload {DYNAMIC}): it routes unknown (StepFailed: {APP2}: Traefik API "
        "http/routers/cerniq-app@file answered 200 with a body that is not JSON: '<html>oops')"
    )
    assert routes(fakes[APP1]) == "cerniq-blue-first"
    assert routes(fakes[APP2]) == "cerniq-green-first"
    assert fakes[APP1].files[PENDING]  # kept: the next run settles what is left
    assert bluegreen.where_traffic_goes(ctx).startswith(str(partial.value) + "; traffic: ")


def test_metrics_that_are_not_an_exposition_stop_the_switch_before_any_write(run_on_fakes):
    ctx, fakes = run_on_fakes
    fakes[APP2].answer(r"curl .*127\.0\.0\.1:64080", traefik(broken="metrics"))
    with pytest.raises(StepFailed) as caught:
        bluegreen.switch_traffic(ctx)
    assert str(caught.value).startswith(
        f"{APP2}: Traefik's /metrics is not a Prometheus exposition: "
    )
    assert routes(fakes[APP1]) == routes(fakes[APP2]) == "cerniq-blue-first"
    assert PENDING not in fakes[APP1].files
    assert (
        bluegreen.switch_back(ctx) == "nothing to switch back: traffic never left cerniq-blue-first"
    )


def test_a_failure_before_any_write_switches_nothing_back(run_on_fakes):
    ctx, fakes = run_on_fakes
    assert (
        bluegreen.switch_back(ctx) == "nothing to switch back: traffic never left cerniq-blue-first"
    )
    fakes[APP1].fail(r"^put .*bluegreen.pending", "disk full")
    with pytest.raises(StepFailed, match="could not upload /opt/cerniq/bluegreen.pending"):
        bluegreen.switch_traffic(ctx)
    assert bluegreen.switch_back(ctx) == (
        f"{APP1}, {APP2} never switched (routes cerniq-blue-first)"
    )
    assert routes(fakes[APP1]) == routes(fakes[APP2]) == "cerniq-blue-first"


def test_the_runner_switches_back_and_its_error_line_says_what_each_host_routes(run_on_fakes):
    ctx, fakes = run_on_fakes
    fakes[APP2].answer(r"curl .*127\.0\.0\.1:64080", traefik(stale="cerniq-blue-first"))
    ctx.facts.clear()

    @procedure.step(audited=False)
    def read(c):
        c.facts.update(active="blue", idle="green", previous_version="v1.0.0")

    with pytest.raises(StepFailed) as failed:
        procedure.run(
            (read, bluegreen.switch_traffic, bluegreen.update_marker),
            ctx,
            on_failure=bluegreen.HOOKS,
            describe_state=bluegreen.where_traffic_goes,
        )
    assert str(failed.value).startswith(
        "bluegreen.switch to production failed at step 'switch_traffic': timed out after 0s "
        f"waiting for Traefik on {APP2} to route cerniq-green-first; traffic: {APP1} routes "
        f"cerniq-blue-first, {APP2} routes cerniq-blue-first"
    )
    assert fakes[APP1].files["/opt/cerniq/active-env"] == "blue\n"  # markers never moved


# -- fake hosts: a re-run settling what a killed run left ----------------------------------------
def test_a_killed_half_switch_is_put_back_with_its_markers_and_temp_files(run_on_fakes):
    ctx, fakes = run_on_fakes
    ctx.facts.clear()
    fakes[APP1].files[DYNAMIC] = bluegreen.render(bluegreen.dynamic_config("green"))
    fakes[APP1].files["/opt/cerniq/active-env"] = "green\n"  # as if switch_back was cut short
    for fake in (fakes[APP1], fakes[APP2]):
        fake.files[PENDING] = bluegreen.pending_text(SWITCH_RECORD)
    fakes[APP2].answer(r"^for p in ", "/opt/cerniq/traefik/dynamic/.active.yml.tmp-cerniq\n")
    detail = bluegreen.recover(ctx)
    assert (
        detail
        == "settled an unfinished bluegreen.switch (blue -> green): cerniq-blue-first everywhere"
    )
    assert routes(fakes[APP1]) == routes(fakes[APP2]) == "cerniq-blue-first"
    assert fakes[APP1].files["/opt/cerniq/active-env"] == "blue\n"
    assert fakes[APP1].files["/opt/cerniq/current-version"] == "v1.0.0\n"
    assert all(PENDING not in f.files for f in fakes.values())
    assert ctx.repairs == [
        f"{APP2}: removed /opt/cerniq/traefik/dynamic/.active.yml.tmp-cerniq, a write cut short",
        "an unfinished bluegreen.switch (blue -> green) left "
        f"{APP1} routes cerniq-green-first, {APP2} routes cerniq-blue-first: put back to "
        "cerniq-blue-first on every host",
        "markers left by an unfinished bluegreen.switch (blue -> green) "
        f"({APP1} active-env=green current-version=None; {APP2} active-env=blue "
        "current-version=None) set to blue on v1.0.0",
    ]
    assert "written" not in ctx.facts and not ctx.facts.get("switch_started")


def test_a_killed_switch_that_reached_every_host_is_resumed_then_closed(run_on_fakes):
    ctx, fakes = run_on_fakes
    ctx.facts.clear()
    ctx.version = None
    for fake in (fakes[APP1], fakes[APP2]):
        fake.files[DYNAMIC] = bluegreen.render(bluegreen.dynamic_config("green"))
        fake.files[PENDING] = bluegreen.pending_text(SWITCH_RECORD)
    assert bluegreen.recover(ctx) == "resuming bluegreen.switch: green (v1.1.0) is routed"
    assert (ctx.version, ctx.facts["active"], ctx.facts["idle"]) == ("v1.1.0", "blue", "green")
    assert bluegreen.read_active(ctx) == "resuming: blue -> green"
    for skipped in (bluegreen.check_idle_ready, bluegreen.prepare_traefik, bluegreen.smoke_idle):
        assert skipped(ctx).startswith("skipped: resuming")
    assert bluegreen.switch_traffic(ctx) == "2 host(s) already route cerniq-green-first (confirmed)"
    bluegreen.update_marker(ctx)
    assert fakes[APP2].files["/opt/cerniq/active-env"] == "green\n"
    assert fakes[APP2].files["/opt/cerniq/previous-version"] == "v1.0.0\n"
    assert bluegreen.close_run(ctx) == "run record removed on 2 host(s)"
    assert all(PENDING not in f.files for f in fakes.values())


def test_a_killed_canary_is_put_back_to_0_percent_at_once(run_on_fakes):
    ctx, fakes = run_on_fakes
    ctx.facts.clear()
    ctx.procedure = "bluegreen.canary"
    record = Pending("bluegreen.canary", "blue", "green", "v1.1.0", "v1.0.0")
    for fake in (fakes[APP1], fakes[APP2]):
        fake.files[DYNAMIC] = bluegreen.render(bluegreen.dynamic_config("blue", 10))
        fake.files[PENDING] = bluegreen.pending_text(record)
    bluegreen.recover(ctx)
    assert routes(fakes[APP1]) == routes(fakes[APP2]) == "cerniq-blue-first"
    assert "weighted" not in fakes[APP1].files[DYNAMIC]
    assert "cerniq-canary (cerniq-blue 90%, cerniq-green 10%)" in ctx.repairs[0]


def test_deploy_idle_removes_exited_containers_instead_of_reviving_them(run_on_fakes, monkeypatch):
    ctx, fakes = run_on_fakes
    ctx.procedure = "bluegreen.deploy"
    monkeypatch.setenv("CERNIQ_PRODUCTION_DB_PASSWORD", "pw")
    monkeypatch.setattr(hosts, "apply", lambda *a, **k: [])
    image = "registry.cerniq.app/cerniq/{}:{}"
    after = "\n".join(
        f"{s}1 {image.format(s, 'v1.1.0')} {s} running Up" for s in ("api", "web", "workers")
    )
    for fake in fakes.values():
        before = f"dead1 {image.format('api', 'v1.0.0')} api exited Exited (137)\n{after}"
        listings = iter([before, after])
        fake.answer(r"docker ps -a", lambda cmd, h, it=listings: (True, next(it)))
    assert bluegreen.deploy_idle(ctx) == "green runs v1.1.0 on 2 host(s)"
    for name, fake in fakes.items():
        if name in (APP1, APP2):
            rm = fake.ran(r"^docker rm -f dead1$")
            up = fake.ran(r"cerniq-green .* up -d")
            assert rm and up and fake.commands.index(rm[0]) < fake.commands.index(up[0])
    assert ctx.repairs[0] == f"{APP1}: removed api dead1 (v1.0.0, exited) of green"
