"""`invoke docs.check` on a real sample app repo: a branch with conventional commits against
main; each gap named, exit 1; fixed, exit 0."""

from __future__ import annotations

import json

import pytest

from testbed.sample_app import commit, make_sample_app, write
from tests.support.cli import invoke

pytestmark = pytest.mark.integration


def test_each_gap_is_named_then_the_fixed_branch_passes(tmp_path):
    app = make_sample_app(tmp_path)
    clean = invoke("docs.check", "--repo", str(app))
    assert (clean.returncode, clean.stdout.strip()) == (0, "documentation rules met against main")

    write(
        app,
        {
            "packages/billing/src/index.js": "module.exports = {};\n",
            "packages/api/src/math.js": (app / "packages/api/src/math.js").read_text() + "\n",
            "docs/index.md": (app / "docs/index.md").read_text()
            + "- [Billing](runbooks/billing.md)\n",
        },
    )
    commit(app, "feat(billing): new billing service")
    r = invoke("docs.check", "--repo", str(app))
    assert r.returncode == 1, r.stderr
    assert r.stdout.splitlines() == [
        "documentation gaps against main:",
        "  new service 'billing' needs its README (packages/billing/README.md)",
        "  new service 'billing' needs its configuration guide (docs/configuration/billing.md)",
        "  new service 'billing' needs its runbook (docs/runbooks/billing.md)",
        "  user-facing change (packages/api/src/math.js) needs an entry in CHANGELOG.md",
        "  docs/index.md:7: broken link runbooks/billing.md",
    ]

    write(
        app,
        {
            "packages/billing/README.md": "# billing\n",
            "docs/configuration/billing.md": "# Billing configuration\n",
            "docs/runbooks/billing.md": "# Billing\n\n[config](../configuration/billing.md)\n",
            "CHANGELOG.md": (app / "CHANGELOG.md")
            .read_text()
            .replace("## Unreleased\n", "## Unreleased\n- Billing service.\n"),
        },
    )
    commit(app, "docs(billing): README, configuration guide, runbook, changelog")
    ok = invoke("docs.check", "--repo", str(app), "--json")
    assert ok.returncode == 0, ok.stdout
    assert json.loads(ok.stdout) == {"base": "main", "gaps": [], "ok": True}


def test_an_unknown_base_is_bad_input(tmp_path):
    app = make_sample_app(tmp_path)
    r = invoke("docs.check", "--repo", str(app), "--base", "release/9")
    assert r.returncode == 2
    assert r.stderr.strip() == (
        f"error: unknown base 'release/9' in {app}; pass --base REF (a branch, tag or sha)"
    )
