"""registries.conf loading, validation and drop-in merging (containers/image
pkg/sysregistriesv2/system_registries_v2.go: loadConfigFile, postProcessRegistries,
tryUpdatingCache, dropInConfigs, FindRegistry, V1RegistriesConf.ConvertToV2)."""

from __future__ import annotations

import pytest

from mirrorlab.proxy.errors import ConfigError
from mirrorlab.proxy.matching import find_registry

from .conftest import LoadConf

# containers/image pkg/sysregistriesv2/testdata/find-registry.conf and the drop-ins of
# testdata/registries.conf.d/, in our own words.
F_FIND = """
[[registry]]
prefix = "simple-prefix.com"
location = "registry.com:5000"
[[registry]]
prefix = "complex-prefix.com:4000/with/path"
location = "another-registry.com:5000"
[[registry]]
prefix = "another-registry.com"
location = "registry.com:5000"
[[registry]]
location = "no-prefix.com"
[[registry]]
prefix = ""
location = "empty-prefix.com"
[[registry]]
prefix = "*.so.simple-prefix.com"
location = "subdomain-prefix.com"
[[registry]]
prefix = "*.simple-prefix.com"
location = "subdomain-prefix-2.com"
[[registry]]
prefix = "*.not.quite.simple-prefix.com"
location = "subdomain-prefix-1.com"
[[registry]]
prefix = "*.docker.io"
location = "subdomain-prefix-2.com"
[[registry]]
prefix = "*.bar.example.com"
location = "subdomain-prefix-3.com"
[[registry]]
prefix = "*.bar.docker.io"
location = "subdomain-prefix-4.com"
[[registry]]
prefix = "foo.bar.example.com:5000"
location = "subdomain-prefix-5.com"
[[registry]]
prefix = "*.internal.registry.com"
[[registry]]
prefix = "*.com"
[[registry]]
prefix = "*.foobar.io"
"""

F_D = {
    "config-1.conf": """
        unqualified-search-registries = ["example-overwrite.com"]
        credential-helpers = ["helper-1", "helper-2", "helper-3", "helper-4", "helper-5"]
        [[registry]]
        location = "1.com"
        [aliases]
        "config-one" = "config-one.com/image"
        "shared" = "one.com/shared"
        """,
    "config-2.conf": """
        short-name-mode = "permissive"
        credential-helpers = ["dropin-1", "dropin-2"]
        [[registry]]
        location = "1.com"
        [[registry]]
        location = "2.com"
        [[registry]]
        location = "base.com"
        blocked = true
        [aliases]
        "config-two" = "config-two.com/image"
        "shared" = "two.com/shared"
        """,
    "config-3.conf": "",
    "config-3.ignore": "this is not TOML and is never read because of its suffix [[[",
    "subdomain-override-1.conf": """
        [[registry]]
        prefix = "*.not.quite.simple-prefix.com"
        location = "subdomain-prefix-1-overridden-by-dropin-location.com"
        """,
    "subdomain-override-2.conf": """
        [[registry]]
        prefix = "*.docker.com"
        location = "subdomain-prefix-2-overridden-by-dropin-location.com"
        """,
    "subdomain-override-3.conf": """
        [[registry]]
        prefix = "*.bar.example.com"
        location = "subdomain-prefix-3-overridden-by-dropin-location.com"
        """,
}

FIND = [
    # system_registries_v2_test.go: TestFindRegistry: name, matched location (None: no match)
    ("simple-prefix.com/foo/bar:latest", "registry.com:5000"),
    ("not.so.simple-prefix.com/", "subdomain-prefix.com"),
    ("not.quite.simple-prefix.com:5000/with/path/and/beyond:tag", "subdomain-prefix-2.com"),
    ("really.not.quite.simple-prefix.com:5000/with/path/and/beyond:tag",
     "subdomain-prefix-1-overridden-by-dropin-location.com"),
    ("foo.docker.io:5000/omg/wtf/bbq:foo", "subdomain-prefix-2.com"),
    ("foo.bar.docker.io:5000/omg/wtf/bbq:foo", "subdomain-prefix-4.com"),
    ("foo.bar.example.com:5000/omg/wtf/bbq:foo", "subdomain-prefix-5.com"),
    ("foo.bar.example.com:6000/omg/wtf/bbq@sha256:" + "a" * 64,
     "subdomain-prefix-3-overridden-by-dropin-location.com"),
    ("simple-prefix.comx", None),
    ("complex-prefix.com:4000/with/path/and/beyond:tag", "another-registry.com:5000"),
    ("empty-prefix.com/foo:tag", "empty-prefix.com"),
    ("base.com/x", "base.com"),
    ("somewhere.internal.registry.com/x", ""),
]


@pytest.mark.parametrize(("name", "location"), FIND)
def test_find_registry_with_drop_ins(load_conf: LoadConf, name: str, location: str | None) -> None:
    config = load_conf(F_FIND, F_D)
    found = find_registry(config.registries, name)
    assert (found.location if found else None) == location


def test_merge_of_drop_ins(load_conf: LoadConf) -> None:
    """system_registries_v2_test.go: TestRegistriesConfDirectory, TestCredentialHelpers: drop-ins
    replace whole entries by prefix; later files win per key."""
    config = load_conf(
        """
        unqualified-search-registries = ["example.com"]
        [[registry]]
        location = "base.com"
        insecure = true
        """,
        F_D,
    )
    assert config.unqualified_search_registries == ("example-overwrite.com",)
    assert config.unqualified_search_origin.endswith("config-1.conf")
    assert [r.prefix for r in config.registries] == [
        "*.bar.example.com", "*.docker.com", "*.not.quite.simple-prefix.com",
        "1.com", "2.com", "base.com",
    ]
    base = config.registries[-1]
    assert (base.blocked, base.insecure) == (True, False)  # whole-entry replacement
    assert config.credential_helpers == ("dropin-1", "dropin-2")
    assert config.aliases == {
        "config-one": "config-one.com/image",
        "config-two": "config-two.com/image",
        "shared": "two.com/shared",
    }
    assert [f.rsplit("/", 1)[1] for f in config.files] == [
        "registries.conf", "config-1.conf", "config-2.conf", "config-3.conf",
        "subdomain-override-1.conf", "subdomain-override-2.conf", "subdomain-override-3.conf",
    ]


MERGES = [
    # (main, drop-in, attribute, expected)
    ('credential-helpers = ["a"]', "credential-helpers = []", "credential_helpers",
     ("containers-auth.json",)),
    ("", "", "credential_helpers", ("containers-auth.json",)),
    ('unqualified-search-registries = ["a.io", "c.io"]', "unqualified-search-registries = []",
     "unqualified_search_registries", ()),
    ('unqualified-search-registries = ["a.io", "c.io"]', "", "unqualified_search_registries",
     ("a.io", "c.io")),
    ("", "", "unqualified_search_registries", None),
    ('short-name-mode = "enforcing"', 'short-name-mode = ""', "short_name_mode", "enforcing"),
    ("", "", "short_name_mode", "permissive"),
    ('[aliases]\n"x" = "quay.io/x"', '[aliases]\n"x" = ""', "aliases", {}),
    ('[aliases]\n"fedora" = "docker.io/fedora"', "", "aliases",
     {"fedora": "docker.io/library/fedora"}),
]


@pytest.mark.parametrize(("main", "drop_in", "attribute", "expected"), MERGES)
def test_merge_rules(load_conf: LoadConf, main: str, drop_in: str, attribute: str,
                     expected: object) -> None:
    config = load_conf(main, {"50-drop.conf": drop_in})
    assert getattr(config, attribute) == expected


INVALID = [
    # system_registries_v2_test.go: TestInvalidV2Configs, TestInvalidMirrorConfig,
    # TestMixingV1andV2, and the other postProcessRegistries / loadConfigFile conditions
    ('[[registry]]\nlocation = "registry.com"\n[[registry]]\nprefix = "registry.com/a"\n'
     'location = "registry.com"\ninsecure = true', "conflicting 'insecure' setting"),
    ('[[registry]]\nlocation = "registry.com"\n[[registry]]\nprefix = "registry.com/a"\n'
     'location = "registry.com"\nblocked = true', "conflicting 'blocked' setting"),
    ('[[registry]]\nlocation = "a.com"\n[[registry.mirror]]\ninsecure = true',
     "mirror location is unset"),
    # found by the differential test: empty-location wildcards are grouped by prefix
    ('[[registry]]\nprefix = "*.local"\ninsecure = true\n[[registry]]\nprefix = "*.local"',
     "registry '' is defined multiple times with conflicting 'insecure' setting"),
    ('[[registry]]\nprefix = "http://schema-is-invalid.com"\nlocation = "x.com"',
     "URI schemes are not supported"),
    ('[[registry]]\nlocation = "https://x.com"', "URI schemes are not supported"),
    ('[[registry]]\nlocation = "x.com"\n[[registry.mirror]]\nlocation = "http://m.com"',
     "URI schemes are not supported"),
    ('[[registry]]\nprefix = "registry-a.com/foo"\nlocation = "x.com"\n'
     'pull-from-mirror = "digest-only"',
     'pull-from-mirror must not be set for a non-mirror registry "registry-a.com/foo"'),
    ('[[registry]]\nlocation = "a.com"\nmirror-by-digest-only = true\n[[registry.mirror]]\n'
     'location = "m.com"\npull-from-mirror = "all"', "cannot set mirror usage"),
    ('[[registry]]\nlocation = "a.com"\n[[registry.mirror]]\nlocation = "mirror-1.a.com"\n'
     'pull-from-mirror = "notvalid"',
     'unsupported pull-from-mirror value "notvalid" for mirror "mirror-1.a.com"'),
    ('[[registry]]\nlocation = "a.com"\n[[registry.mirror]]\nlocation = "m.com"\n'
     'pull-from-mirror = "Digest-Only"', "unsupported pull-from-mirror value"),
    ('unqualified-search-registries = ["registry-a.com/namespace-is-forbidden"]',
     "Invalid unqualified-search-registries entry"),
    ('unqualified-search-registries = ["https://a.com"]', "URI schemes are not supported"),
    ("[[registry]]\ninsecure = true", "both location and prefix are unset"),
    ('[[registry]]\nprefix = "a.com"', "location is unset and prefix is not in the format"),
    ('[[registry]]\nprefix = "*.a.com/ns"\nlocation = "b.com"', "Wildcarded prefix should be"),
    ('[[registry]]\nprefix = "*.a.com:5000"\nlocation = "b.com"', "Wildcarded prefix should be"),
    ('short-name-mode = "strict"', 'invalid short-name mode: "strict"'),
    ('unqualified-search-registries = []\n[registries.search]\nregistries = []',
     "mixing sysregistry v1/v2 is not supported"),
    ('[[registry]]\nlocation = "a.com"\ninsecure = "true"', "incompatible types"),
    ('[[registry]]\nlocation = 5', "incompatible types"),
    ('[registry]\nlocation = "a.com"', "incompatible types"),
    ('[[registry]]\nlocation = "a.com"\n[registry.mirror]\nlocation = "m.com"',
     "incompatible types"),
    ('unqualified-search-registries = "a.com"', "incompatible types"),
    ('[[registry]]\nlocation = "a.com"\nlocation = "b.com"', "toml"),  # duplicate key
    ('[[registry]\nlocation = "a.com"', "toml: line 1"),
    ('[aliases]\n"quay.io/x" = "quay.io/x"', "must not contain registry"),
    ('[aliases]\n"x:1" = "quay.io/x"', "must not contain tag"),
    ('[aliases]\n"x" = "x"', "must contain registry and repository"),
    ('[aliases]\n"x" = "quay.io/x:1"', "must not contain tag"),
    # a top-level key written after [aliases] becomes an alias (the TOML placement gotcha)
    ('[aliases]\n"x" = "quay.io/x"\nshort-name-mode = "enforcing"',
     'invalid alias "enforcing": must contain registry and repository'),
]


@pytest.mark.parametrize(("text", "message"), INVALID)
def test_invalid_configurations(load_conf: LoadConf, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_conf(text)
    assert message in str(caught.value)
    assert str(caught.value).startswith('loading registries configuration "')
    assert "\n" not in str(caught.value)


def test_error_names_the_line_of_the_entry(load_conf: LoadConf) -> None:
    with pytest.raises(ConfigError, match=r'registries.conf": line 5: invalid condition: mirror'):
        load_conf('[[registry]]\nlocation = "a.com"\n\n# second entry\n[[registry]]\n'
                  'location = "b.com"\n[[registry.mirror]]\ninsecure = true\n')


def test_drop_in_errors_name_the_drop_in(load_conf: LoadConf) -> None:
    with pytest.raises(ConfigError, match=r'loading drop-in registries configuration ".*bad.conf"'):
        load_conf("", {"bad.conf": '[[registry]]\nlocation = "http://x"'})


def test_drop_in_must_be_v2(load_conf: LoadConf) -> None:
    with pytest.raises(ConfigError, match="registry must be in v2 format but is in v1"):
        load_conf("", {"v1.conf": '[registries.search]\nregistries = ["a.com"]'})


ACCEPTED = [
    # Conditions containers/image lets through: unknown keys, typos, per-file-only checks.
    ('[[registry]]\nlocation = "a.com"\nmirror-by-digest-onyl = true', "a.com", False),
    ('[[registry]]\nlocation = "a.com"\n[[registry.mirrors]]\nlocation = "typo.local"',
     "a.com", False),
    ('[[registry]]\nlocation = "a.com"\nunknown = [1, {x = 2}]', "a.com", False),
    ('[[registry]]\nlocation = "a.com"\nshort-name-mode = "nonsense"', "a.com", False),
    # the same prefix twice in one file: the first entry wins, silently
    ('[[registry]]\nlocation = "a.com"\n[[registry]]\nlocation = "a.com"\nblocked = false\n'
     '[[registry.mirror]]\nlocation = "m.com"', "a.com", False),
    # duplicated entries with the same flags are no conflict
    ('[[registry]]\nlocation = "a.com"\nblocked = true\n[[registry]]\nprefix = "x.com"\n'
     'location = "a.com"\nblocked = true', "a.com", True),
]


@pytest.mark.parametrize(("text", "prefix", "blocked"), ACCEPTED)
def test_accepted_configurations(load_conf: LoadConf, text: str, prefix: str,
                                 blocked: bool) -> None:
    config = load_conf(text)
    entry = next(r for r in config.registries if r.prefix == prefix)
    assert entry.blocked is blocked
    assert entry.mirrors == ()


def test_conflicts_across_files_are_not_detected(load_conf: LoadConf) -> None:
    config = load_conf('[[registry]]\nlocation = "a.com"',
                       {"x.conf": '[[registry]]\nprefix = "a.com/x"\nlocation = "a.com"\n'
                                  "insecure = true"})
    assert [r.insecure for r in config.registries] == [False, True]


def test_v1_format_converts(load_conf: LoadConf) -> None:
    """system_registries_v2_test.go: TestV1BackwardsCompatibility (V1RegistriesConf.ConvertToV2):
    V1 search/insecure/block lists become v2 entries."""
    config = load_conf(
        """
        [registries.search]
        registries = ["registry-a.com////", "registry-c.com", "registry-d.com"]
        [registries.block]
        registries = ["registry-b.com"]
        [registries.insecure]
        registries = ["registry-b.com////", "registry-d.com", "registry-e.com", "registry-a.com"]
        """
    )
    assert config.unqualified_search_registries == (
        "registry-a.com", "registry-c.com", "registry-d.com")
    flags = {r.location: (r.insecure, r.blocked) for r in config.registries}
    assert flags == {
        "registry-a.com": (True, False),
        "registry-b.com": (True, True),
        "registry-d.com": (True, False),
        "registry-e.com": (True, False),
    }


def test_missing_explicit_file_is_an_error(tmp_path: object) -> None:
    """tryUpdatingCache (system_registries_v2.go): an explicit path must exist; the implicit
    default may be missing."""
    from mirrorlab.proxy.registries_conf import RegistriesConfPaths, load_registries_conf

    with pytest.raises(ConfigError, match="no such file or directory"):
        load_registries_conf(RegistriesConfPaths("/nonexistent/registries.conf", True, ()))
    empty = load_registries_conf(RegistriesConfPaths("/nonexistent/registries.conf", False, ()))
    assert empty.registries == ()


def test_trailing_slashes_are_stripped(load_conf: LoadConf) -> None:
    config = load_conf('[[registry]]\nlocation = "a.com/ns//"\n[[registry.mirror]]\n'
                       'location = "m.com/x/"')
    (entry,) = config.registries
    assert (entry.prefix, entry.location, entry.mirrors[0].location) == (
        "a.com/ns", "a.com/ns", "m.com/x")
