"""The pure parts of cerniq_ops.backup: ids, argv, SQL, manifest, listing, retention."""

from __future__ import annotations

import dataclasses
import json
import shlex
from datetime import UTC, datetime, timedelta

import pytest

from cerniq_ops import backup, settings
from cerniq_ops.errors import BadInput

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 28, 23, 15, 0, tzinfo=UTC)


@pytest.fixture
def prod() -> settings.Settings:
    return settings.load("production", target="real")


def test_backup_id_names_time_env_and_label_and_never_reuses_one():
    assert backup.backup_id(NOW, "production", "pre-deploy") == (
        "20261128T231500Z-production-pre-deploy"
    )
    taken = {"20261128T231500Z-staging-manual", "20261128T231500Z-staging-manual-2"}
    assert backup.backup_id(NOW, "staging", "manual", taken) == "20261128T231500Z-staging-manual-3"
    for made in (backup.backup_id(NOW, "staging", "manual", taken), "20261128T231500Z-x-pre-x"):
        assert backup.check_id(made) == made
    assert backup.id_env("20261128T231500Z-staging-manual-3") == "staging"
    assert backup.id_env("backup_pre_migration_x") is None


@pytest.mark.parametrize("label", ["weekly", "", "pre deploy", "../x"])
def test_unknown_label_is_refused_with_the_choices(label):
    with pytest.raises(BadInput, match="choose one of: pre-deploy, pre-migration, manual, nightly"):
        backup.backup_id(NOW, "staging", label)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "latest",
        "../../etc/passwd",
        "20261128T231500Z-prod-x; rm -rf /",
        "2026-x",
        "20261128T231500Z-prod-x\n",
    ],
)
def test_ids_that_could_escape_the_backup_dir_are_refused(bad):
    with pytest.raises(BadInput, match="invalid backup id"):
        backup.check_id(bad)


def test_paths_of_a_backup():
    assert backup.paths("/backup/", "ID") == {
        "dump": "/backup/ID.dump",
        "manifest": "/backup/ID.manifest.json",
        "verify": "/backup/ID.verify.json",
        "partial": "/backup/ID.dump.partial",
    }


def test_pg_dump_runs_as_postgres_over_the_socket_with_the_snapshot_and_no_password(prod):
    root = dataclasses.replace(prod, ssh_user="root")
    assert backup.pg_dump_argv(root, "00000003-0000001B-1") == [
        "runuser", "-u", "postgres", "--",
        "/usr/lib/postgresql/15/bin/pg_dump", "--format=custom", "--create",
        "--compress=1", "--no-password",
        "-h", "/run/postgresql", "-p", "64032", "--dbname=cerniq",
        "--snapshot=00000003-0000001B-1",
    ]  # fmt: skip
    assert backup.as_db_superuser(prod) == ["sudo", "-n", "-u", "postgres", "--"]  # ssh: deploy


def test_pg_restore_reads_the_archive_from_the_login_users_shell_and_stops_at_the_first_error(
    prod,
):
    assert backup.pg_restore_argv(prod, "scratch") == [
        "sudo", "-n", "-u", "postgres", "--",
        "/usr/lib/postgresql/15/bin/pg_restore", "--exit-on-error", "--no-password",
        "-h", "/run/postgresql", "-p", "64032", "--dbname=scratch",
    ]  # fmt: skip
    root = dataclasses.replace(prod, ssh_user="root")
    assert backup.from_file_argv("/backup/ID.dump", backup.pg_restore_list_argv(root)) == [
        "sh", "-c", 'exec "$@" < "$0"', "/backup/ID.dump",
        "runuser", "-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_restore", "--list",
    ]  # fmt: skip
    assert backup.pg_restore_list_argv(prod) == [
        "sudo", "-n", "-u", "postgres", "--", "/usr/lib/postgresql/15/bin/pg_restore", "--list",
    ]  # fmt: skip


def test_cluster_owner_runs_exactly_pg_dump_pg_restore_and_psql(prod):
    assert backup.cluster_owner_programs(prod) == [
        "/usr/lib/postgresql/15/bin/pg_dump",
        "/usr/lib/postgresql/15/bin/pg_restore",
        "/usr/lib/postgresql/15/bin/psql",
    ]
    root = dataclasses.replace(prod, ssh_user="root")
    for s, prefix in (
        (prod, backup.as_db_superuser(prod)),
        (root, ["runuser", "-u", "postgres", "--"]),
    ):
        run_as_owner = [
            backup.pg_dump_argv(s),
            backup.pg_restore_argv(s, "x"),
            backup.pg_restore_list_argv(s),
            backup.psql_argv(s, "postgres", "SELECT 1"),
        ]
        for argv in run_as_owner:  # nothing else ever runs as the cluster owner
            assert argv[: len(prefix)] == prefix
            assert argv[len(prefix)] in backup.cluster_owner_programs(s)


def test_an_id_is_reserved_on_the_host_exclusively_and_published_without_replacing(prod):
    p = backup.paths("/backup", "20261128T231500Z-production-manual")
    assert backup.reserve_argv(p) == [
        "sh", "-c",
        'umask 077; set -C; true > "$0" 2>/dev/null || exit 3; '
        'if [ -e "$1" ] || [ -e "$2" ]; then rm -f "$0"; exit 3; fi',
        "/backup/20261128T231500Z-production-manual.dump.partial",
        "/backup/20261128T231500Z-production-manual.dump",
        "/backup/20261128T231500Z-production-manual.manifest.json",
    ]  # fmt: skip
    assert backup.publish_argv(p) == [
        "sh", "-c", 'ln "$0" "$1" && rm -f "$0"',
        "/backup/20261128T231500Z-production-manual.dump.partial",
        "/backup/20261128T231500Z-production-manual.dump",
    ]  # fmt: skip


def test_the_snapshot_session_cannot_be_ended_by_an_idle_timeout():
    assert backup.SNAPSHOT_SESSION == (
        "SET idle_in_transaction_session_timeout = 0",
        "SET statement_timeout = 0",
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    )
    assert backup.KEEPALIVES["keepalives"] == 1


def test_dump_to_file_is_one_argv_with_the_path_never_spliced_into_the_script():
    argv = backup.to_file_argv("/backup/a b'$(x).partial", ["pg_dump", "--dbname=x"])
    assert argv == [
        "sh", "-c", 'umask 077 && exec "$@" > "$0"', "/backup/a b'$(x).partial",
        "pg_dump", "--dbname=x",
    ]  # fmt: skip
    assert shlex.split(shlex.join(argv)) == argv  # what hosts.sh sends survives quoting


def test_psql_runs_each_statement_in_one_session_and_stops_on_error(prod):
    argv = backup.psql_argv(prod, "postgres", "BEGIN", "SELECT 1")
    assert argv[5:] == [
        "/usr/lib/postgresql/15/bin/psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
        "-h", "/run/postgresql", "-p", "64032", "-d", "postgres", "-c", "BEGIN", "-c", "SELECT 1",
    ]  # fmt: skip


def test_row_counts_import_the_dumps_snapshot():
    statements = backup.row_counts_statements("0000-1'")
    assert statements[0] == "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
    assert statements[1] == "SET TRANSACTION SNAPSHOT '0000-1'''"
    assert statements[2] == backup.ROW_COUNTS_SQL and statements[3] == "COMMIT"
    assert backup.row_counts_statements() == [backup.ROW_COUNTS_SQL]


def test_database_sql_quotes_names_and_copies_owner_encoding_locale():
    props = {"owner": 'app"x', "encoding": "UTF8", "collate": "C.UTF-8", "ctype": "C.UTF-8"}
    assert backup.create_database_sql("cerniq_scratch_verify_1", props) == (
        'CREATE DATABASE "cerniq_scratch_verify_1" TEMPLATE template0 OWNER "app""x" '
        "ENCODING 'UTF8' LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8'"
    )
    assert backup.drop_database_sql("s") == 'DROP DATABASE IF EXISTS "s" WITH (FORCE)'


def test_swap_closes_the_live_database_then_renames_both_in_one_transaction():
    record = {"cerniq": "previous", "state": "swapped"}
    statements = backup.swap_databases_statements("cerniq", "restored", "old", record)
    assert statements[0] == 'ALTER DATABASE "cerniq" ALLOW_CONNECTIONS false'
    assert "pg_terminate_backend" in statements[1] and "RAISE EXCEPTION" in statements[1]
    assert statements[2:] == [
        "BEGIN",
        'ALTER DATABASE "cerniq" RENAME TO "old"',
        'ALTER DATABASE "restored" RENAME TO "cerniq"',
        'ALTER DATABASE "cerniq" ALLOW_CONNECTIONS true',
        """COMMENT ON DATABASE "old" IS '{"cerniq": "previous", "state": "swapped"}'""",
        'COMMENT ON DATABASE "cerniq" IS NULL',
        "COMMIT",
    ]


def test_databases_are_read_with_their_cerniq_records_only():
    record = {"cerniq": "previous", "of": "cerniq", "state": "kept", "drop_after": "x"}
    rows = [
        {"name": "cerniq", "allow": False, "comment": "the app's database"},
        {"name": "cerniq_previous_20261128t231500z", "allow": False, "comment": json.dumps(record)},
        {"name": "other", "allow": True, "comment": json.dumps({"cerniq": "unknown"})},
    ]
    assert backup.parse_databases("noise\n" + json.dumps(rows)) == [
        backup.Database("cerniq", False, None),
        backup.Database("cerniq_previous_20261128t231500z", False, record),
        backup.Database("other", True, None),
    ]
    assert backup.kept_name("cerniq", "previous", NOW) == "cerniq_previous_20261128t231500z"


def test_a_kept_database_is_due_only_when_kept_and_its_delay_is_over():
    def db(state, drop_after):
        return backup.Database("x", False, {"cerniq": "previous", "state": state,
                                            "drop_after": drop_after})  # fmt: skip

    assert backup.due_for_drop(db("kept", "2026-11-28T23:00:00Z"), NOW)
    assert not backup.due_for_drop(db("kept", "2026-11-29T00:00:00Z"), NOW)
    assert not backup.due_for_drop(db("swapped", "2026-11-28T23:00:00Z"), NOW)  # unconfirmed
    assert not backup.due_for_drop(backup.Database("cerniq", True), NOW)


def test_scratch_names_are_lower_case_identifiers_within_63_bytes():
    assert backup.scratch_name("cerniq_scratch_", "verify", "ab12") == (
        "cerniq_scratch_verify_ab12"
    )
    long = backup.scratch_name("X-" * 40, "restore", "ab12")
    assert len(long) == 63 and long == long.lower() and "-" not in long


def test_manifest_records_what_the_issue_asks_for(prod):
    manifest = backup.build_manifest(
        backup_id_="20261128T231500Z-production-pre-deploy",
        label="pre-deploy",
        s=prod,
        version="v1.4.2",
        size=123,
        sha256="ab" * 32,
        started="2026-11-28T23:15:00Z",
        finished="2026-11-28T23:15:09Z",
        server_version="15.20",
        pg_dump_version="pg_dump (PostgreSQL) 15.20",
        database={"owner": "c3rn1q"},
        row_counts={"public.deals": 3},
        who="ana@ci",
    )
    assert manifest == {
        "id": "20261128T231500Z-production-pre-deploy",
        "label": "pre-deploy",
        "env": "production",
        "database": "cerniq",
        "db_host": "db1.cerniq.app",
        "database_properties": {"owner": "c3rn1q"},
        "version": "v1.4.2",
        "file": "/backup/20261128T231500Z-production-pre-deploy.dump",
        "format": "custom",
        "size": 123,
        "sha256": "ab" * 32,
        "started": "2026-11-28T23:15:00Z",
        "finished": "2026-11-28T23:15:09Z",
        "pg_version": "15.20",
        "pg_dump_version": "pg_dump (PostgreSQL) 15.20",
        "row_counts": {"public.deals": 3},
        "created_by": "ana@ci",
    }


def test_compare_counts_names_every_difference():
    expected = {"a.t": 1, "b.t": 2, "c.t": 3}
    actual = {"a.t": 1, "b.t": 5, "d.t": 0}
    assert backup.compare_counts(expected, actual) == [
        "b.t: 5 rows restored, 2 dumped",
        "c.t: missing after restore (3 rows expected)",
        "d.t: not in the backup's counts (0 rows)",
    ]
    assert backup.compare_counts(expected, dict(expected)) == []


def test_table_data_entries_of_a_pg_restore_list():
    listing = (
        ";\n; Archive created at 2026-11-28\n;\n"
        "215; 1259 16390 TABLE public deals c3rn1q\n"
        "3340; 0 16390 TABLE DATA public deals c3rn1q\n"
        "3341; 0 16395 TABLE DATA crm contacts c3rn1q\n"
    )
    assert backup.table_data_entries(listing) == 2


def _manifest(backup_id, finished, sha="s1", size=10, env="staging"):
    return {"id": backup_id, "finished": finished, "sha256": sha, "size": size, "env": env}


def test_parse_listing_joins_manifests_verifications_and_dumps_newest_first():
    old = _manifest("20261101T000000Z-staging-manual", "2026-11-01T00:00:09Z")
    new = _manifest("20261102T000000Z-staging-manual", "2026-11-02T00:00:09Z", sha="s2")
    text = "\n".join(
        [
            f"M\t{old['id']}.manifest.json\t{json.dumps(old)}",
            f"M\t{new['id']}.manifest.json\t{json.dumps(new)}",
            "M\tbroken.manifest.json\t{not json",
            f"M\tother.manifest.json\t{json.dumps(old)}",  # id does not match the file name
            f"V\t{old['id']}.verify.json\t" + json.dumps({"ok": True, "sha256": "s1"}),
            f"V\t{new['id']}.verify.json\t" + json.dumps({"ok": True, "sha256": "changed"}),
            f"D\t{old['id']}.dump\t10 1764000000",
            f"D\t{new['id']}.dump.partial\t99 1764000001",
            "D\tbackup_pre_migration_x.dump\t5 1764000002",
        ]
    )
    found = backup.parse_listing(text)
    assert [b.id for b in found.backups] == [new["id"], old["id"]]
    assert [b.state for b in found.backups] == ["dump missing", "verified"]
    assert found.backups[0].verified is False  # its verification was of another file
    assert found.partials == {f"{new['id']}.dump.partial": 1764000001}
    assert found.orphans == {}


def test_a_dump_without_manifest_is_an_orphan_of_the_environment_its_id_names():
    text = "\n".join(
        [
            "D\t20261101T000000Z-staging-manual.dump\t10 1764000000",
            "D\t20261101T000000Z-production-pre-deploy.dump\t10 1764000000",
            "D\t20261101T000000Z-staging-manual-2.dump.partial\t3 1764000001",
            "D\tbackup_pre_migration_x.dump\t5 1764000002",  # not ours: never touched
        ]
    )
    found = backup.parse_listing(text)
    assert found.backups == []
    assert found.leftovers("staging") == [
        "20261101T000000Z-staging-manual-2.dump.partial",
        "20261101T000000Z-staging-manual.dump",
    ]
    assert found.leftovers("production") == ["20261101T000000Z-production-pre-deploy.dump"]


def test_a_verified_backup_whose_dump_is_gone_or_truncated_is_not_verified():
    manifest = _manifest("20261128T000000Z-staging-manual", "2026-11-28T00:00:00Z", size=10)
    ok = {"ok": True, "sha256": "s1"}
    assert backup.BackupInfo(manifest, ok, 10).verified
    assert not backup.BackupInfo(manifest, ok, None).verified
    assert not backup.BackupInfo(manifest, ok, 4).verified
    assert backup.BackupInfo(manifest, ok, 4).state == "size differs"
    assert backup.verified_freshness([backup.BackupInfo(manifest, ok, None)], NOW, 26) == {
        "newest_verified": None,
        "age_hours": None,
        "fresh": False,
    }


def _candidates(*specs):
    return [
        backup.Candidate(f"b{i}", NOW - timedelta(days=age), verified)
        for i, (age, verified) in enumerate(specs)
    ]


def test_retention_keeps_the_newest_n_and_the_young_ones():
    # b0 is the newest (0 days) ... b5 the oldest (40 days); none verified
    found = _candidates((0, False), (1, False), (5, False), (20, False), (30, False), (40, False))
    assert backup.select_for_deletion(found, backup.Retention(2, 7), NOW) == ["b5", "b4", "b3"]
    assert backup.select_for_deletion(found, backup.Retention(4, 0), NOW) == ["b5", "b4"]
    assert backup.select_for_deletion(found, backup.Retention(1, 25), NOW) == ["b5", "b4"]
    assert backup.select_for_deletion(found, backup.Retention(10, 0), NOW) == []


def test_retention_never_deletes_the_newest_verified_backup():
    found = _candidates((0, False), (1, False), (10, True), (20, True), (30, False))
    assert backup.select_for_deletion(found, backup.Retention(1, 0), NOW) == ["b4", "b3", "b1"]


@pytest.mark.parametrize(("last", "days"), [(0, 7), (-1, 7), (1, -1)])
def test_retention_that_would_keep_nothing_is_bad_input(last, days):
    with pytest.raises(BadInput, match="retention"):
        backup.Retention(last, days)


def test_verified_freshness_is_the_age_of_the_newest_verified_backups_data():
    verified = backup.BackupInfo(
        _manifest("20261128T000000Z-staging-manual", "2026-11-28T00:00:00Z"),
        {"ok": True, "sha256": "s1", "verified_at": "2026-11-28T23:00:00Z"},
        10,
    )
    unverified = backup.BackupInfo(
        _manifest("20261128T220000Z-staging-manual", "2026-11-28T22:00:00Z"), None, 10
    )
    fresh = backup.verified_freshness([unverified, verified], NOW, 26)
    assert fresh == {
        "newest_verified": "20261128T000000Z-staging-manual",
        "age_hours": 23.25,
        "fresh": True,
    }
    assert backup.verified_freshness([unverified, verified], NOW, 12)["fresh"] is False
    assert backup.verified_freshness([unverified], NOW, 26) == {
        "newest_verified": None,
        "age_hours": None,
        "fresh": False,
    }


def test_procedures_are_step_tuples_read_like_the_runbook():
    names = [s.__name__ for s in backup.RESTORE]
    assert names == [
        "find_backup",
        "refuse_other_environment",
        "check_checksum",
        "check_archive",
        "converge_earlier_restore",
        "backup_current_database",
        "restore_into_new_database",
        "compare_row_counts",
        "swap_databases",
        "check_app_on_restored",
        "keep_previous_database",
    ]
    assert [s.__name__ for s in backup.VERIFY][1:4] == [
        "check_checksum",
        "check_archive",
        "test_restore",
    ]
