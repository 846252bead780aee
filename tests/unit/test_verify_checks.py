"""The decisions behind `invoke verify` and `invoke doctor`, by equality (no hosts)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import paramiko
import pytest

from cerniq_ops import audit_checks as ac
from cerniq_ops import doctor, verification
from cerniq_ops.backup.cluster import Database
from cerniq_ops.backup.manifest import BackupInfo
from cerniq_ops.rollout import Container
from cerniq_ops.settings import HostSpec, load

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
REG = "reg:5000/cerniq"


def at(delta: timedelta) -> str:
    return (NOW - delta).strftime(ac.TIME_FORMAT)


# -- markers and files -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "content", "required", "expected"),
    [
        ("/opt/cerniq/current-version", "v1.4.2\n", True, None),
        ("/opt/cerniq/current-version", "v1.5.0-rc.1", True, None),
        ("/opt/cerniq/current-version", None, True, "/opt/cerniq/current-version is missing"),
        ("/opt/cerniq/previous-version", None, False, None),
        (
            "/opt/cerniq/current-version",
            "v1.2.3; rm -rf /\n",
            True,
            "/opt/cerniq/current-version says 'v1.2.3; rm -rf /', not a version like v1.4.2",
        ),
        (
            "/opt/cerniq/current-version",
            "v1.0.0\nv1.1.0\n",
            True,
            "/opt/cerniq/current-version has 2 lines, expected one",
        ),
        ("/opt/cerniq/active-env", "green\n", True, None),
        (
            "/opt/cerniq/active-env",
            "purple",
            True,
            "/opt/cerniq/active-env says 'purple', expected one of: blue, green",
        ),
    ],
)
def test_marker_problem(path, content, required, expected):
    assert ac.marker_problem(path, content, required=required) == expected


def test_expected_app_files_rolling_and_bluegreen():
    rolling = [(e.path, e.mode, e.required) for e in ac.expected_app_files("/opt/cerniq/", None)]
    assert rolling == [
        ("/opt/cerniq/docker-compose.traefik.yml", None, True),
        ("/opt/cerniq/docker-compose.yml", None, True),
        ("/opt/cerniq/.env", 0o600, True),
        ("/opt/cerniq/traefik/dynamic", None, True),
        ("/opt/cerniq/.env.blue", 0o600, False),
        ("/opt/cerniq/.env.green", 0o600, False),
    ]
    blue = [(e.path, e.mode, e.required) for e in ac.expected_app_files("/opt/cerniq", "blue")]
    assert blue == [
        ("/opt/cerniq/docker-compose.traefik.yml", None, True),
        ("/opt/cerniq/docker-compose.blue.yml", None, True),
        ("/opt/cerniq/.env.blue", 0o600, True),
        ("/opt/cerniq/traefik/dynamic", None, True),
        ("/opt/cerniq/traefik/dynamic/active.yml", None, True),
        ("/opt/cerniq/.env", 0o600, False),
        ("/opt/cerniq/.env.green", 0o600, False),
    ]


def test_file_problems_name_each_wrong_path():
    expected = ac.expected_app_files("/opt/cerniq", None)
    actual = {
        "/opt/cerniq/docker-compose.yml": ac.FileState("file", 0o644),
        "/opt/cerniq/docker-compose.traefik.yml": ac.FileState("file", 0o666),
        "/opt/cerniq/.env": ac.FileState("file", 0o644),
        "/opt/cerniq/traefik/dynamic": ac.FileState("file", 0o644),
        "/opt/cerniq/.env.green": ac.FileState("file", 0o640),
    }
    assert ac.file_problems(expected, actual) == [
        "/opt/cerniq/docker-compose.traefik.yml is writable by everyone (mode 666)",
        "/opt/cerniq/.env has mode 644, expected 600",
        "/opt/cerniq/traefik/dynamic is a file, expected a directory",
        "/opt/cerniq/.env.green has mode 640, expected 600",
    ]
    assert ac.file_problems(expected, {}) == [
        f"{e.path} is missing" for e in expected if e.required
    ]


def test_file_problems_none_when_all_is_right():
    expected = ac.expected_app_files("/opt/cerniq", "green")
    actual = {e.path: ac.FileState(e.kind, e.mode or 0o644) for e in expected if e.required}
    assert ac.file_problems(expected, actual) == []


# -- containers ------------------------------------------------------------------------------
def c(cid, service, version, state="running", status="Up 3 minutes (healthy)"):
    return Container(cid * 12, f"{REG}/{service}:{version}", service, state, status)


IMAGES = {s: f"{REG}/{s}:v1.1.0" for s in ("api", "web", "workers")}
ONE_EACH = {"api": 1, "web": 1, "workers": 1}


def test_containers_all_healthy_on_current_version():
    running = [c("a", "api", "v1.1.0"), c("b", "web", "v1.1.0"), c("d", "workers", "v1.1.0")]
    assert ac.container_problems(running, IMAGES, ONE_EACH, "cerniq") == []


def test_containers_stopped_wrong_version_unhealthy_and_missing_are_named():
    running = [
        c("a", "api", "v1.1.0", "exited", "Exited (0) 5 seconds ago"),
        c("b", "web", "v1.0.0"),
        c("d", "workers", "v1.1.0", status="Up 2 seconds (health: starting)"),
    ]
    assert ac.container_problems(
        running, {**IMAGES, "cron": f"{REG}/cron:v1.1.0"}, ONE_EACH, "cerniq"
    ) == [
        "api container aaaaaaaaaaaa is exited (Exited (0) 5 seconds ago)",
        "api: 0 healthy replica(s) on v1.1.0, expected 1",
        "web container bbbbbbbbbbbb runs web:v1.0.0, current-version says v1.1.0",
        "web: 0 healthy replica(s) on v1.1.0, expected 1",
        "workers container dddddddddddd is running but not healthy"
        " (Up 2 seconds (health: starting))",
        "workers: 0 healthy replica(s) on v1.1.0, expected 1",
        "cron: no container in compose project cerniq",
    ]


def test_containers_replica_count():
    running = [c("a", "api", "v1.1.0"), c("b", "web", "v1.1.0"), c("d", "workers", "v1.1.0")]
    problems = ac.container_problems(running, IMAGES, {**ONE_EACH, "api": 2}, "cerniq")
    assert problems == ["api: 1 healthy replica(s) on v1.1.0, expected 2"]


def test_health_settling_only_when_health_alone_is_wanting():
    starting = [
        c("a", "api", "v1.1.0", status="Up 1 second (health: starting)"),
        c("b", "web", "v1.1.0"),
        c("d", "workers", "v1.1.0"),
    ]
    assert ac.health_settling(starting, IMAGES, ONE_EACH)
    stopped = [c("a", "api", "v1.1.0", "exited", "Exited (0)"), *starting[1:]]
    assert not ac.health_settling(stopped, IMAGES, ONE_EACH)
    wrong = [c("a", "api", "v1.0.0"), *starting[1:]]
    assert not ac.health_settling(wrong, IMAGES, ONE_EACH)
    assert not ac.health_settling(starting[1:], IMAGES, ONE_EACH)


def test_edge_problems():
    assert ac.edge_problems([c("t", "traefik", "v3", status="Up 1 hour")], "cerniq-edge") == []
    assert ac.edge_problems([], "cerniq-edge") == [
        "traefik: no container in compose project cerniq-edge"
    ]
    stopped = [c("t", "traefik", "v3", "exited", "Exited (1) 1 minute ago")]
    assert ac.edge_problems(stopped, "cerniq-edge") == [
        "traefik container tttttttttttt is exited (Exited (1) 1 minute ago)"
    ]


# -- Traefik and the active color -------------------------------------------------------------
def dynamic(service):
    return {"http": {"routers": {"cerniq-app": {"rule": "PathPrefix(`/`)", "service": service}}}}


PATH = "/opt/cerniq/traefik/dynamic/active.yml"


def test_active_color_agreeing():
    api = {"service": "cerniq-blue", "status": "enabled"}
    assert ac.active_color_problems("blue", PATH, dynamic("cerniq-blue"), api) == []
    api_with_provider = {"service": "cerniq-blue@file", "status": "enabled"}
    assert (
        ac.active_color_problems("blue", PATH, dynamic("cerniq-blue@file"), api_with_provider) == []
    )


def test_active_color_through_a_failover_service():
    config = dynamic("cerniq-blue-first")
    config["http"]["services"] = {
        "cerniq-blue-first": {"failover": {"service": "cerniq-blue", "fallback": "cerniq-green"}}
    }
    api = {"service": "cerniq-blue-first", "status": "enabled"}
    api_service = {"failover": {"service": "cerniq-blue", "fallback": "cerniq-green"}}
    assert ac.active_color_problems("blue", PATH, config, api, api_service) == []
    assert ac.active_color_problems("green", PATH, config, api, api_service) == [
        f"{PATH} routes cerniq-app to cerniq-blue, but active-env says green"
        " (expected cerniq-green)",
        "Traefik's API routes cerniq-app@file to cerniq-blue, but active-env says green",
    ]
    assert ac.primary_service("cerniq-green@file", None) == "cerniq-green"


def test_active_color_config_pointing_at_the_idle_color():
    api = {"service": "cerniq-green", "status": "enabled"}
    assert ac.active_color_problems("blue", PATH, dynamic("cerniq-green"), api) == [
        f"{PATH} routes cerniq-app to cerniq-green, but active-env says blue"
        " (expected cerniq-blue)",
        "Traefik's API routes cerniq-app@file to cerniq-green, but active-env says blue",
    ]


def test_active_color_missing_pieces():
    assert ac.active_color_problems("green", PATH, None, None) == [
        f"{PATH} is missing or not valid YAML",
        "Traefik's API has no router cerniq-app@file",
    ]
    assert ac.active_color_problems("green", PATH, {"http": {}}, None)[0] == (
        f"{PATH} has no router cerniq-app"
    )
    assert ac.active_color_problems(None, PATH, None, None) == [
        "active color unknown (active-env says None)"
    ]


def test_traefik_problems():
    routers = [
        {"name": "api@docker", "provider": "docker", "status": "enabled"},
        {"name": "bad@file", "provider": "file", "status": "disabled", "error": ["no service"]},
        {"name": "api@internal", "provider": "internal", "status": "enabled"},
    ]
    services = [
        {"name": "api@docker", "provider": "docker", "serverStatus": {"http://10.0.0.2:80": "UP"}},
        {
            "name": "web@docker",
            "provider": "docker",
            "serverStatus": {"http://10.0.0.3:80": "DOWN"},
        },
    ]
    assert ac.traefik_problems(routers, services) == [
        "router bad@file is disabled: no service",
        "service web@docker has server(s) DOWN: http://10.0.0.3:80",
    ]
    assert ac.traefik_problems(routers[:1], services, idle={"web"}) == []
    assert ac.traefik_problems(routers[2:], []) == [
        "Traefik has no router from the docker or file provider: nothing is routed"
    ]
    drained = {"name": "cerniq-edge-drain@file", "provider": "file", "status": "enabled"}
    assert ac.traefik_problems([*routers[:1], drained], services[:1]) == [
        "router cerniq-edge-drain@file: /health answers 503, so the balancer keeps this host "
        "out; traefik/dynamic/edge-drain.yml was left by an interrupted Traefik recreate, and "
        "the next deploy (or `invoke setup`) removes it"
    ]


# -- disk and lock ---------------------------------------------------------------------------
def test_disk_parse_and_threshold():
    out = (
        "/opt/cerniq /dev/vda 100 25 75 25% /\n"
        "/var/lib/docker /dev/vda 100 25 75 25% /\n"
        "/backup /dev/vdb 100 91 9 91% /backup\n"
    )
    disks = ac.parse_df(out)
    assert disks == [ac.Disk("/opt/cerniq", "/", 25), ac.Disk("/backup", "/backup", 91)]
    assert ac.disk_problems(disks, 80) == [
        "/backup (holding /backup) is 91% full (warning above 80%)"
    ]
    assert ac.disk_problems(disks, 95) == []


def lock_text(age: timedelta, refreshed: timedelta | None = None) -> str:
    record = {
        "holder": "ana@ci",
        "procedure": "deploy",
        "version": "v1.4.2",
        "message": "",
        "since": at(age),
        "token": "t",
    }
    if refreshed is not None:
        record["refreshed"] = at(refreshed)
    return json.dumps(record)


def test_lock_problem():
    path = "/opt/cerniq/deploy.lock"
    assert ac.lock_problem(path, None, NOW, 60) is None
    assert ac.lock_problem(path, lock_text(timedelta(minutes=5)), NOW, 60) is None
    assert ac.lock_problem(path, lock_text(timedelta(hours=3)), NOW, 60) == (
        f"{path} is stale: held by ana@ci for deploy v1.4.2 since {at(timedelta(hours=3))} "
        "(last sign of life 3.0 h ago, limit 60 min); if no run is active, `invoke lock.release`"
    )
    assert ac.lock_problem(path, "garbage", NOW, 60) == f"{path} is unreadable: 'garbage'"


def test_a_lock_refreshed_by_a_working_run_is_not_stale_however_old():
    path = "/opt/cerniq/deploy.lock"
    working = lock_text(timedelta(hours=5), refreshed=timedelta(minutes=1))
    assert ac.lock_problem(path, working, NOW, 60) is None
    dead = lock_text(timedelta(hours=5), refreshed=timedelta(hours=2))
    assert "last sign of life 2.0 h ago" in ac.lock_problem(path, dead, NOW, 60)


def test_a_fresh_lock_whose_holder_on_this_machine_is_gone_is_a_run_that_died():
    path = "/opt/cerniq/deploy.lock"
    fresh = json.loads(lock_text(timedelta(minutes=1), refreshed=timedelta(seconds=2)))
    killed = json.dumps({**fresh, "pid": 4242, "step": "route_to_page"})
    assert ac.lock_problem(path, killed, NOW, 60, holder_alive=True) is None
    assert ac.lock_problem(path, killed, NOW, 60, holder_alive=None) is None  # another machine
    assert ac.lock_problem(path, killed, NOW, 60, holder_alive=False) == (
        f"{path} is held by a run that died: deploy v1.4.2 (pid 4242 on this machine, at step "
        "route_to_page, gone); `invoke lock.release`, then re-run the same command"
    )


# -- backups ---------------------------------------------------------------------------------
def backup(age: timedelta, verified: bool | None, env="production", bid=None, size=10):
    bid = bid or f"{(NOW - age).strftime('%Y%m%dT%H%M%SZ')}-{env}-manual"
    manifest = {"id": bid, "env": env, "finished": at(age), "size": 10, "sha256": "abc"}
    verification_ = None if verified is None else {"ok": verified, "sha256": "abc"}
    return BackupInfo(manifest, verification_, size)


WHERE = "/backup on prod-db"


def test_backup_fresh_and_verified():
    b = backup(timedelta(hours=2), True)
    assert ac.backup_problems([b], "production", WHERE, NOW, 26) == (
        [],
        f"newest {b.id} (2.0 h old, verified)",
    )


def test_backup_none_of_this_env():
    other = backup(timedelta(hours=1), True, env="staging")
    assert ac.backup_problems([other], "production", WHERE, NOW, 26) == (
        [f"no backup: production has none in {WHERE}; run `invoke backup.create --env production`"],
        "none",
    )


def test_backup_verified_but_too_old():
    b = backup(timedelta(days=3), True)
    problems, _ = ac.backup_problems([b], "production", WHERE, NOW, 26)
    assert problems == [
        f"too old: the newest verified backup of production, {b.id}, is 3.0 days old "
        f"(finished {at(timedelta(days=3))}; limit 26 h) in {WHERE}; run "
        "`invoke backup.create --env production` and `invoke backup.verify --env production`"
    ]


def test_backup_unverified_newest_is_fine_with_a_recent_verified_one():
    newest, older = backup(timedelta(minutes=5), None), backup(timedelta(hours=20), True)
    problems, summary = ac.backup_problems([newest, older], "production", WHERE, NOW, 26)
    assert problems == []
    assert summary == f"newest {newest.id} (5 min old, not verified); newest verified {older.id}"


def test_backup_no_backup_unverified_and_too_old_are_three_messages():
    newest, older = backup(timedelta(minutes=5), None), backup(timedelta(hours=30), True)
    too_old = ac.backup_problems([newest, older], "production", WHERE, NOW, 26)[0]
    assert [p.split(":")[0] for p in too_old] == ["too old"]
    assert ac.backup_problems([newest], "production", WHERE, NOW, 26)[0] == [
        f"unverified: no verified backup of production in {WHERE} (newest {newest.id}: "
        "not verified); run `invoke backup.verify --env production`"
    ]
    none = ac.backup_problems([], "production", WHERE, NOW, 26)[0]
    assert [p.split(":")[0] for p in none] == ["no backup"]


def test_backup_failed_verification_or_lost_dump():
    failed = backup(timedelta(hours=1), False)
    lost = backup(timedelta(hours=1), True, size=None)
    truncated = backup(timedelta(hours=1), True, size=4)
    assert ac.backup_problems([failed], "production", WHERE, NOW, 26)[0][0] == (
        f"newest backup {failed.id}: verify failed in {WHERE}"
    )
    for broken, state in ((lost, "dump missing"), (truncated, "size differs")):
        # its verification no longer counts: the file it proved is gone or cut short
        assert ac.backup_problems([broken], "production", WHERE, NOW, 26)[0] == [
            f"newest backup {broken.id}: {state} in {WHERE}",
            f"unverified: no verified backup of production in {WHERE} (newest {broken.id}: "
            f"{state}); run `invoke backup.verify --env production`",
        ]


def test_backup_leftovers_of_a_dead_run_are_flagged():
    b = backup(timedelta(hours=2), True)
    orphan = "20261128T000000Z-production-pre-deploy.dump"
    assert ac.backup_problems([b], "production", WHERE, NOW, 26, [orphan])[0] == [
        f"leftover {orphan} in {WHERE} (a backup run died before its manifest); "
        "`invoke backup.prune --env production` removes it"
    ]


# -- audit log -------------------------------------------------------------------------------
LOG = "/opt/cerniq/audit.log"


def record(age: timedelta, **extra) -> bytes:
    base = {
        "at": at(age),
        "who": "ana@ci",
        "env": "production",
        "procedure": "deploy",
        "version": "v1.0.0",
        "step": "rolling_update",
        "result": "ok",
        "detail": "",
    }
    return json.dumps({**base, **extra}).encode()


def log(*lines: bytes) -> bytes:
    return b"".join(line + b"\n" for line in lines)


def test_audit_log_valid():
    content = log(record(timedelta(minutes=3)), record(timedelta(minutes=2)))
    assert ac.audit_problems(LOG, content, None, env="production") == []


def test_audit_log_bad_lines_and_time_going_back():
    content = log(
        record(timedelta(minutes=1)),
        b"not json",
        json.dumps({"at": at(timedelta(0))}).encode(),
        record(timedelta(hours=1)),
        record(timedelta(0), env="staging"),
    )
    assert ac.audit_problems(LOG, content, None, env="production") == [
        f"{LOG} line 2 is not a JSON record: b'not json'",
        f"{LOG} line 3 lacks who, env, procedure, version, step, result",
        f"{LOG} line 4 goes back in time: {at(timedelta(hours=1))}"
        f" after {at(timedelta(minutes=1))}",
        f"{LOG} line 5 is of environment 'staging'",
    ]


def test_audit_log_small_clock_differences_are_tolerated():
    content = log(record(timedelta(seconds=3)), record(timedelta(seconds=5)))
    assert ac.audit_problems(LOG, content, None) == []


def test_audit_log_partial_last_line_is_ignored():
    content = log(record(timedelta(minutes=1))) + b'{"at": "2026-'
    assert ac.audit_lines(content) == [record(timedelta(minutes=1))]
    assert ac.audit_problems(LOG, content, None) == []


def test_audit_log_appended_since_baseline_passes():
    first = [record(timedelta(minutes=5)), record(timedelta(minutes=4))]
    baseline = ac.audit_baseline(first, "2026-11-28T11:56:00Z")
    assert baseline == {
        "lines": 2,
        "sha256": ac.prefix_digest(first),
        "verified_at": "2026-11-28T11:56:00Z",
    }
    assert ac.audit_problems(LOG, log(*first, record(timedelta(minutes=1))), baseline) == []


def test_audit_log_rewritten_or_truncated_since_baseline():
    first = [record(timedelta(minutes=5)), record(timedelta(minutes=4))]
    baseline = ac.audit_baseline(first, "2026-11-28T11:56:00Z")
    edited = log(record(timedelta(minutes=5), result="failed"), first[1], record(timedelta(0)))
    assert ac.audit_problems(LOG, edited, baseline) == [
        f"{LOG} was rewritten: its first 2 line(s) changed since verified at 2026-11-28T11:56:00Z"
    ]
    assert ac.audit_problems(LOG, log(first[0]), baseline) == [
        f"{LOG} was truncated: 1 line(s), 2 when verified at 2026-11-28T11:56:00Z"
    ]


def test_describe_age():
    assert [ac.describe_age(s) for s in (45, 600, 3 * 3600, 3 * 86400)] == [
        "45 s",
        "10 min",
        "3.0 h",
        "3.0 days",
    ]


# -- the verify runner -----------------------------------------------------------------------
def test_pytest_argv():
    argv = verification.pytest_argv("production", "/tmp/r.jsonl", "prod-app1", "out.xml", True)
    assert argv[1:4] == ["-m", "pytest", str(verification.VERIFY_DIR)]
    text = " ".join(argv)
    for part in (
        "--cerniq-env production",
        "--cerniq-results /tmp/r.jsonl",
        "--cerniq-host prod-app1",
        "--junit-xml out.xml",
        "--cerniq-read-only",
        "-p no:cacheprovider",
    ):
        assert part in text
    assert "--cerniq-host" not in verification.pytest_argv("staging", "r")


def result_line(host, check, status, detail=""):
    return json.dumps({"host": host, "check": check, "status": status, "detail": detail})


def test_results_sorted_by_host_then_check_and_printed():
    text = "\n".join(
        [
            result_line("prod-db", "backup", "fail", "no backup of production in /backup"),
            result_line("prod-app1", "disk", "pass", "/ 25%"),
            result_line("prod-app1", "files", "pass", "/opt/cerniq: ..."),
            result_line("prod-app1", "active_color", "skip", "no blue-green"),
        ]
    )
    checks = verification.parse_results(text, ["prod-app1", "prod-db"])
    assert [(r.host, r.check) for r in checks] == [
        ("prod-app1", "files"),
        ("prod-app1", "active_color"),
        ("prod-app1", "disk"),
        ("prod-db", "backup"),
    ]
    assert verification.format_lines(checks) == [
        "PASS  prod-app1  files         /opt/cerniq: ...",
        "SKIP  prod-app1  active_color  no blue-green",
        "PASS  prod-app1  disk          / 25%",
        "FAIL  prod-db    backup        no backup of production in /backup",
    ]
    result = verification.Result("production", checks)
    assert not result.ok
    assert result.summary() == (
        "verify production: FAILED: 2 passed, 1 failed, 1 skipped (4 checks on 2 hosts); "
        "wrong: backup@prod-db"
    )
    assert result.to_dict()["counts"] == {"fail": 1, "error": 0, "skip": 1, "pass": 2}


def test_no_checks_is_not_ok():
    assert not verification.Result("staging", []).ok


# -- doctor ----------------------------------------------------------------------------------
def test_python_and_package_findings():
    assert doctor.python_finding((3, 11, 7)).status == "ok"
    old = doctor.python_finding((3, 9, 2))
    assert (old.status, old.detail) == ("FAIL", "Python 3.9.2; 3.11+ required")
    assert doctor.package_finding("pyinfra", "3.10.0", (3, 2), (4,), "x").status == "ok"
    assert doctor.package_finding("pyinfra", "4.0.1", (3, 2), (4,), "x").detail == (
        "4.0.1 installed, needs >=3.2,<4"
    )
    missing = doctor.package_finding("invoke", None, (2, 2), None, "runs the tasks")
    assert (missing.status, missing.detail, missing.fix) == (
        "FAIL",
        "not installed (runs the tasks; needs >=2.2)",
        doctor.INSTALL_HINT,
    )
    assert doctor.version_tuple("10.2.2") == (10, 2, 2)
    assert doctor.version_tuple("3.0.0rc1") == (3, 0, 0)


T = {"address": "10.0.0.5", "port": 22, "user": "deploy", "key": None, "known_hosts": "/k"}


def test_ssh_failures_are_told_apart():
    key = paramiko.Ed25519Key.generate() if hasattr(paramiko.Ed25519Key, "generate") else None
    cases = {
        "refused": ConnectionRefusedError(111, "Connection refused"),
        "timeout": TimeoutError("timed out"),
        "auth": paramiko.AuthenticationException("Authentication failed."),
        "unknown": paramiko.SSHException("Server '10.0.0.5' not found in known_hosts"),
        "unreachable": OSError(113, "No route to host"),
    }
    got = {name: doctor.ssh_failure("app1", T, exc) for name, exc in cases.items()}
    assert all(f.status == "FAIL" and f.check == "ssh" and f.fix for f in got.values())
    assert got["refused"].detail == "connection refused by 10.0.0.5:22 (sshd not running?)"
    assert got["timeout"].detail.startswith("no answer from 10.0.0.5:22 within 5s")
    assert got["auth"].detail == (
        "authentication failed for deploy@10.0.0.5:22 (key agent/default keys)"
    )
    assert got["unknown"].detail == "host key of 10.0.0.5 unknown (not in /k)"
    assert got["unreachable"].detail == "10.0.0.5:22 unreachable: No route to host"
    if key is None:
        key = paramiko.RSAKey.generate(1024)
    mismatch = doctor.ssh_failure("app1", T, paramiko.BadHostKeyException("10.0.0.5", key, key))
    assert mismatch.detail.startswith("HOST KEY MISMATCH for 10.0.0.5")
    assert "ssh-keygen -R 10.0.0.5 -f /k" in mismatch.fix


def test_registry_and_command_findings():
    assert doctor.registry_finding("local", "reg:5000", "401").status == "ok"
    down = doctor.registry_finding("app1", "reg:5000", None, "Connection refused")
    assert (down.status, down.detail) == ("FAIL", "reg:5000 unreachable: Connection refused")
    assert doctor.registry_finding("app1", "reg:5000", "500").detail == "reg:5000 answered HTTP 500"
    bad = doctor.command_finding(
        "docker", "app1", False, "Cannot connect to the Docker daemon\nx", "fix"
    )
    assert (bad.status, bad.detail, bad.fix) == (
        "FAIL",
        "Cannot connect to the Docker daemon",
        "fix",
    )


def test_secret_findings_never_show_values(monkeypatch):
    s = load("production", target="real")
    monkeypatch.setenv(s.db_password_env, "s3cret-value")
    monkeypatch.delenv(s.github_token_env, raising=False)
    ok = doctor.secret_finding(s, "db_password_env", True, "needed")
    warn = doctor.secret_finding(s, "github_token_env", False, "deploys need --skip-ci-check")
    assert (ok.status, ok.detail) == ("ok", f"{s.db_password_env} set (db password)")
    assert warn.status == "WARN" and warn.detail.startswith("GITHUB_TOKEN missing")
    assert "s3cret-value" not in doctor.render([ok, warn])
    assert doctor.summary([ok, warn]) == "doctor: ok: 1 ok, 0 failed, 1 warning(s), 0 skipped"


def test_ssh_target_and_verify_ssh_config_come_from_host_data():
    from verify.conftest import ssh_config_text

    s = load("production", target="real")
    spec = HostSpec(
        "app1",
        ("app_servers",),
        {"ssh_hostname": "10.0.0.5", "ssh_key": "/k/id", "ssh_known_hosts_file": "/k/known"},
    )
    assert doctor.ssh_target(s, spec) == {
        "address": "10.0.0.5",
        "port": 22,
        "user": "deploy",
        "key": "/k/id",
        "known_hosts": "/k/known",
    }
    text = ssh_config_text(type(s)(**{**s.__dict__, "hosts": (spec,)}), "/tmp/cm")
    assert text.splitlines()[:7] == [
        "Host app1",
        "  HostName 10.0.0.5",
        "  User deploy",
        "  Port 22",
        "  IdentityFile /k/id",
        "  IdentitiesOnly yes",
        "  UserKnownHostsFile /k/known",
    ]
    assert "  StrictHostKeyChecking yes" in text and "  ControlPath /tmp/cm/cm-%C" in text


def test_a_run_that_died_and_was_not_rerun_fails_verify():
    run = {
        "procedure": "deploy",
        "version": "v1.3.0",
        "step": "rolling_update",
        "holder": "ana@ci-7",
        "pid": 4242,
        "since": at(timedelta(minutes=9)),
        "refreshed": at(timedelta(minutes=8)),
        "token": "t",
    }
    died = json.dumps({"run": run, "outcome": "running"})
    path = "/opt/cerniq/last-run.json"
    assert ac.unfinished_run_problems(path, died, None, {}, NOW, 60) == [
        f"a run of deploy v1.3.0 died at step rolling_update (ana@ci-7, pid 4242, last sign of "
        f"life {at(timedelta(minutes=8))}); re-run the same command: it converges from what "
        "was left"
    ]
    working_lock = lock_text(timedelta(minutes=9), refreshed=timedelta(seconds=5))
    assert ac.unfinished_run_problems(path, died, working_lock, {}, NOW, 60) == []
    assert len(ac.unfinished_run_problems(path, died, working_lock, {}, NOW, 60, False)) == 1
    dead_lock = lock_text(timedelta(hours=3), refreshed=timedelta(hours=2))
    assert len(ac.unfinished_run_problems(path, died, dead_lock, {}, NOW, 60)) == 1
    ended = json.dumps({"run": run, "outcome": "ok"})
    assert ac.unfinished_run_problems(path, ended, None, {}, NOW, 60) == []
    pending = {"/opt/cerniq/bluegreen.pending": '{"procedure": "bluegreen.switch"}'}
    assert ac.unfinished_run_problems(path, ended, None, pending, NOW, 60) == [
        '/opt/cerniq/bluegreen.pending: a blue-green change was never finished ({"procedure": '
        '"bluegreen.switch"}); re-run it, or `invoke bluegreen.switch --to <color>`'
    ]
    assert ac.unfinished_run_problems(path, None, None, {"/x": None}, NOW, 60) == []


def test_the_last_run_is_summed_up_in_one_short_line():
    journal = json.dumps(
        {
            "run": {"procedure": "deploy", "version": "v1.2.0", "holder": "ana@ci-7"},
            "outcome": "ok",
            "at": "2026-12-02T06:50:20Z",
        }
    )
    assert ac.last_run_summary(journal) == (
        "last run: deploy v1.2.0 ok at 2026-12-02T06:50:20Z (ana@ci-7)"
    )
    assert ac.last_run_summary(None) == "no run recorded"


def test_a_restore_that_died_after_its_swap_or_before_it_fails_verify():
    prefix = "cerniq_scratch_restore_"
    swapped = {"cerniq": "previous", "of": "cerniq", "backup": "b-20261128", "state": "swapped"}
    kept = {**swapped, "state": "kept"}
    dbs = [
        Database("cerniq", True),
        Database("cerniq_previous_20261128t110000z", True, swapped),
        Database("cerniq_previous_20261127t110000z", True, kept),
        Database("cerniq_scratch_restore_ab12", True),
        Database("postgres", True),
    ]
    rerun = "re-run `invoke backup.restore --env production` with the same backup"
    assert ac.restore_problems(dbs, "cerniq", "production", prefix, "prod-db") == (
        [
            "cerniq_scratch_restore_ab12 on prod-db is a half-done restore (a restore died "
            f"before its swap, or one is running now); {rerun}",
            "cerniq on prod-db was swapped to backup b-20261128 by a restore that died before "
            f"confirming it (the data before it is in cerniq_previous_20261128t110000z); {rerun}",
        ],
        "cerniq live; kept under the retention delay: cerniq_previous_20261127t110000z",
    )
    closed = [Database("cerniq", False)]
    assert ac.restore_problems(closed, "cerniq", "production", prefix, "prod-db")[0] == [
        "cerniq on prod-db does not accept connections (a restore died while closing it, or "
        f"one is running now); {rerun}"
    ]
    assert ac.restore_problems([Database("postgres", True)], "cerniq", "staging", prefix, "h")[
        0
    ] == [
        "database cerniq does not exist on h; rename the data to serve back by hand "
        "(docs/runbooks/backups.md, 'The live database is missing')"
    ]
    assert ac.restore_problems(dbs[1:2], "cerniq", "production", prefix, "prod-db")[0][0] == (
        "database cerniq does not exist on prod-db (restores kept: "
        f"{dbs[1].name}); rename the data to serve back by hand "
        "(docs/runbooks/backups.md, 'The live database is missing')"
    )
    assert ac.restore_problems(dbs[:1], "cerniq", "production", prefix, "prod-db") == (
        [],
        "cerniq live",
    )
