"""The documentation gate (seed 14.1, 14.2) as pure functions over a branch's changes."""

import pytest

from cerniq_ops import docs_gate, team

pytestmark = pytest.mark.unit
T = team.load()


def exists_in(*paths):
    return lambda p: p in set(paths)


def test_a_new_service_needs_readme_configuration_guide_and_runbook():
    changed = [("A", "packages/billing/src/index.js"), ("A", "packages/billing/README.md")]
    found = docs_gate.gaps(T, changed, {"api", "web"}, exists_in("packages/billing/README.md"))
    assert found == [
        "new service 'billing' needs its configuration guide (docs/configuration/billing.md)",
        "new service 'billing' needs its runbook (docs/runbooks/billing.md)",
    ]


def test_an_existing_service_changed_is_not_new():
    changed = [("A", "packages/api/tools/x.js")]
    assert docs_gate.new_services(T, changed, {"api"}) == []


def test_a_user_facing_change_needs_a_changelog_entry_and_has_one():
    changed = [("M", "packages/web/src/app.js"), ("M", "packages/api/src/leads.js")]
    assert docs_gate.gaps(T, changed, {"api", "web"}, exists_in()) == [
        "user-facing change (packages/web/src/app.js, packages/api/src/leads.js) needs an"
        " entry in CHANGELOG.md"
    ]
    with_entry = [*changed, ("M", "CHANGELOG.md")]
    assert docs_gate.gaps(T, with_entry, {"api", "web"}, exists_in()) == []


def test_relative_links_must_resolve_and_others_are_left_alone():
    text = (
        "# Docs\n"
        "[ok](runbooks/api.md) [anchor](configuration/api.md#env) [web](https://x.y)\n"
        "[gone](runbooks/missing.md) ![img](img/arch.png) [self](#top)\n"
        "```\n[in code](nowhere.md)\n```\n"
        "[up](../CHANGELOG.md) [out](../../etc/passwd) `[code](x.md)`\n"
        "[ref]: adr/0001.md\n"
    )
    exists = exists_in("docs/runbooks/api.md", "docs/configuration/api.md", "CHANGELOG.md")
    assert docs_gate.broken_links(text, "docs/index.md", exists) == [
        "docs/index.md:3: broken link runbooks/missing.md",
        "docs/index.md:3: broken link img/arch.png",
        "docs/index.md:7: broken link ../../etc/passwd",
        "docs/index.md:8: broken link adr/0001.md",
    ]
