"""docs/configuration.md is what the settings modules declare (`make docs` rewrites it)."""

from __future__ import annotations

from collections import defaultdict

import pytest
from pydantic import Field
from pydantic_settings import BaseSettings

from datasync.settings import API, doc, documented
from devstack.configuration import DOC, boundaries, render

ROOT = DOC.parents[1]


def test_the_committed_table_is_what_the_settings_declare():
    assert DOC.read_text() == render(boundaries()), "the settings changed: run `make docs`"


def test_every_variable_says_what_it_means_and_who_reads_it():
    variables = [v for boundary in boundaries() for v in boundary.variables]
    assert len(variables) > 80  # every boundary's, per-destination queues once each
    assert [v.name for v in variables if not (v.description and v.read_by)] == []


@pytest.mark.parametrize(
    "field",
    [
        Field(1, validation_alias="X_SETTING", json_schema_extra=doc(API)),  # no description
        Field(1, validation_alias="X_SETTING", description="what it is"),  # no reader
    ],
)
def test_a_setting_without_a_description_or_reader_cannot_be_documented(field):
    class Undocumented(BaseSettings):
        x: int = field

    with pytest.raises(ValueError, match="Undocumented.x"):
        documented(Undocumented)


def test_a_variable_two_boundaries_read_has_the_same_default_in_both():
    defaults = defaultdict(set)
    for boundary in boundaries():
        for variable in boundary.variables:
            defaults[variable.name].add(variable.default)
    shared = {name for name in defaults if sum(name in {v.name for v in b.variables}
                                               for b in boundaries()) > 1}  # fmt: skip
    assert {"API_PORT", "AWS_REGION", "DATASYNC_LOG_LEVEL", "DATASYNC_VAR_DIR"} <= shared
    assert {name: d for name, d in defaults.items() if len(d) > 1} == {}


def test_the_readme_links_to_the_table_and_no_longer_repeats_it():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    assert "(docs/configuration.md)" in section
    assert "| `DATASYNC_RECEIVE_WAIT_SECONDS`" not in section
