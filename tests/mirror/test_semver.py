"""Semver constraints as skopeo's sync applies them to tags (Masterminds semver v3 rules)."""

from __future__ import annotations

import pytest

from ocitransport.mirror.semver import SemverError, Version, matching, parse_constraint, parse_version


@pytest.mark.parametrize(("text", "expected"), [
    ("1.2.3", Version(1, 2, 3)),
    ("v1.2.3", Version(1, 2, 3)),
    ("1.2", Version(1, 2, 0)),
    ("3", Version(3, 0, 0)),
    ("1.2.3-rc.1+build.5", Version(1, 2, 3, "rc.1", "build.5")),
    ("latest", None),
    ("1.2.3.4", None),
    ("1.2.3-01", None),  # numeric pre-release identifiers have no leading zero
    ("", None),
    ("v", None),
    ("1.2.3-", None),
])
def test_parse_version(text, expected):
    got = parse_version(text)
    assert got == expected
    if expected is not None:
        assert (got.prerelease, got.build) == (expected.prerelease, expected.build)


def test_precedence_follows_the_spec():
    ordered = ["1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
               "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.1.0", "2.0.0"]
    versions = [parse_version(v) for v in ordered]
    assert sorted(versions[5:] + versions[:5]) == versions
    assert parse_version("1.0.0+a") == parse_version("1.0.0+b")  # build metadata is ignored


@pytest.mark.parametrize(("constraint", "yes", "no"), [
    (">= 1.2.0, < 2", ["1.2.0", "1.9.9", "v1.3"], ["1.1.9", "2.0.0", "2.0.0-rc.1", "1.5.0-rc.1"]),
    (">=1.2.0 <2", ["1.2.0", "1.9.9"], ["2.0.0"]),  # a blank also means AND
    ("1.2.3", ["1.2.3", "v1.2.3", "1.2.3+meta"], ["1.2.4", "1.2.3-rc.1"]),
    ("= 1.2", ["1.2.0", "1.2.9"], ["1.3.0", "1.1.9"]),
    ("!= 1.2.3", ["1.2.4", "1.2.2"], ["1.2.3"]),
    ("!= 1.2.x", ["1.3.0", "2.2.0"], ["1.2.0", "1.2.9"]),
    ("> 1.2.3", ["1.2.4", "2.0.0"], ["1.2.3", "1.0.0"]),
    ("> 1.2", ["1.3.0"], ["1.2.9", "1.2.0"]),  # > 1.2 needs 1.3 or later
    ("> 11", ["12.0.0"], ["11.9.0"]),
    ("< 1.2.3", ["1.2.2", "0.9.0"], ["1.2.3", "1.2.3-rc.1"]),
    ("<= 1.2", ["1.2.9", "1.0.0"], ["1.3.0"]),
    ("<= 1", ["1.9.9"], ["2.0.0"]),
    ("~1.2.3", ["1.2.3", "1.2.9"], ["1.3.0", "1.2.2"]),
    ("~1.2", ["1.2.0", "1.2.9"], ["1.3.0"]),
    ("~1", ["1.0.0", "1.9.0"], ["2.0.0", "0.9.0"]),
    ("~1.x", ["1.4.0"], ["2.0.0"]),
    ("^1.2.3", ["1.2.3", "1.9.0"], ["2.0.0", "1.2.2"]),
    ("^0.2.3", ["0.2.3", "0.2.9"], ["0.3.0", "1.0.0"]),
    ("^0.0.3", ["0.0.3"], ["0.0.4", "0.1.0"]),
    ("^0", ["0.0.1", "0.9.0"], ["1.0.0"]),
    ("1.2.x", ["1.2.0", "1.2.7"], ["1.3.0"]),
    ("1.X", ["1.0.0", "1.9.9"], ["2.0.0"]),
    ("*", ["0.0.1", "99.0.0"], ["1.0.0-rc.1", "latest"]),
    ("1.2 - 1.4.5", ["1.2.0", "1.4.5"], ["1.4.6", "1.1.9"]),
    ("^1.2 || ~3.1", ["1.5.0", "3.1.7"], ["2.0.0", "3.2.0"]),
    (">= 1.0.0-rc.1", ["1.0.0-rc.2", "1.0.0", "2.0.0"], ["1.0.0-beta"]),
    ("v1.2.3", ["1.2.3"], []),
    ("=> 2", ["2.0.0"], ["1.9.0"]),
])
def test_constraints(constraint, yes, no):
    parsed = parse_constraint(constraint)
    assert [t for t in yes if not parsed.allows(t)] == []
    assert [t for t in no if parsed.allows(t)] == []


def test_matching_keeps_order_and_drops_non_versions():
    tags = ["latest", "3.19.1", "3.18.0", "edge", "3.17.9", "4.0.0", "3.20.0-rc1", "v3.18.4"]
    assert matching(tags, ">= 3.18, < 4") == ["3.19.1", "3.18.0", "v3.18.4"]


@pytest.mark.parametrize("bad", ["", "   ", ">= one", ">=1.2.3.4", "1.2 ||", "~>", ">= 1.2.3-01", "<<1", "1.2,,"])
def test_bad_constraints_raise(bad):
    with pytest.raises(SemverError):
        parse_constraint(bad)
