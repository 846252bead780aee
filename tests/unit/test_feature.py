"""cerniq_ops.feature's pure parts: the PR description against the template (seed 15.1)."""

import pytest

from cerniq_ops import feature, team

pytestmark = pytest.mark.unit
TEMPLATE = team.load()["pr_template"]


def test_the_template_itself_is_not_a_description():
    assert feature.description_gaps(TEMPLATE, TEMPLATE) == [
        "the Description is the template's placeholder",
        "no Type of Change ticked",
    ]
    assert feature.unticked(TEMPLATE) == [
        "Code follows standards",
        "Tests pass",
        "Documentation updated",
        "Changelog updated",
    ]


def test_a_filled_template_has_no_gaps():
    body = (
        TEMPLATE.replace("Brief description of changes.", "Score cache (CERN-42).")
        .replace("- [ ] New feature", "- [x] New feature")
        .replace("- [ ]", "- [X]")
    )
    assert feature.description_gaps(body, TEMPLATE) == []
    assert feature.unticked(body) == []
    assert feature.description_gaps("", TEMPLATE) == [
        "no '## Description' section",
        "no '## Type of Change' section",
        "no '## Testing' section",
        "no '## Checklist' section",
    ]
