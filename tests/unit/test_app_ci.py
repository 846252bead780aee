"""testbed/app_ci.py's pure parts: which pushed refs start a build, the check run it reports,
the hook it installs."""

from __future__ import annotations

import pytest

from testbed import app_ci

pytestmark = pytest.mark.unit

A, B = "a" * 40, "b" * 40


def test_only_release_tags_created_or_moved_start_a_build():
    pushed = "\n".join(
        [
            f"{app_ci.ZERO} {A} refs/tags/v1.2.0",
            f"{A} {B} refs/heads/main",
            f"{A} {app_ci.ZERO} refs/tags/v1.1.0",  # deleted
            f"{app_ci.ZERO} {B} refs/tags/nightly",
            f"{A} {B} refs/tags/v1.2.1-rc.1",
            "garbage",
        ]
    )
    assert app_ci.release_tags(pushed) == ["v1.2.0", "v1.2.1-rc.1"]


def test_a_green_build_reports_githubs_create_check_run_body():
    body = app_ci.check_run(A)
    completed = body.pop("completed_at")
    assert body == {"name": "CI", "head_sha": A, "status": "completed", "conclusion": "success"}
    assert completed.endswith("Z") and len(completed) == 20


def test_the_hook_runs_this_module_with_the_project_on_the_path(tmp_path):
    origin = tmp_path / "my origin.git"
    assert app_ci.hook_script(origin, "/venv/bin/python") == (
        "#!/bin/sh\n"
        "# The app's CI on the testbed (testbed/app_ci.py): release tags pushed here get a\n"
        "# green check run on GitHub and their images published, in the background.\n"
        f"PYTHONPATH={app_ci.PROJECT} exec /venv/bin/python -m testbed.app_ci "
        f"'{origin}'\n"
    )


def test_the_github_token_is_kept_in_a_private_file(tmp_path):
    (tmp_path / "hooks").mkdir()
    app_ci.install(tmp_path, "10.0.0.2:5000", "cerniq")
    app_ci.configure_github(tmp_path, "http://127.0.0.1:1", "cerniq/app", "ghp_secret")
    config = tmp_path / app_ci.CONFIG
    assert config.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "hooks" / "post-receive").stat().st_mode & 0o111
    assert '"token": "ghp_secret"' in config.read_text()
