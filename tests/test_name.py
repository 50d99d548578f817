"""ocitransport.name: docker's naming rules, Docker Hub defaults, scopes, schemes, value semantics."""

from __future__ import annotations

import copy
import pickle
import types

import pytest

from ocitransport import OCITransportError, name
from ocitransport.name import (
    DEFAULT_REGISTRY,
    DEFAULT_TAG,
    BadName,
    Digest,
    Registry,
    Repository,
    Tag,
    parse_reference,
)

SHA256 = "sha256:" + "0123456789abcdef" * 4
SHA512 = "sha512:" + "0123456789abcdef" * 8


@pytest.fixture
def scopes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scope twins, or (until they land) a stand-in with the upstream string format."""
    from ocitransport import _scopes

    try:
        _scopes.repository_scope("a/b", "pull")
        _scopes.registry_scope()
    except NotImplementedError:
        stand_in = types.SimpleNamespace(
            repository_scope=lambda repository, actions: f"repository:{repository}:{actions}",
            registry_scope=lambda: "registry:catalog:*",
        )
        monkeypatch.setattr(name, "_scopes", stand_in)


def bad(match: str) -> pytest.RaisesContext[BadName]:
    return pytest.raises(BadName, match=match)


# --------------------------------------------------------------------------------------- constants


def test_constants() -> None:
    assert DEFAULT_REGISTRY == "index.docker.io"
    assert DEFAULT_TAG == "latest"


def test_badname_hierarchy() -> None:
    assert issubclass(BadName, OCITransportError)
    assert issubclass(BadName, ValueError)


# --------------------------------------------------------------------------------------- Registry


@pytest.mark.parametrize("alias", ["", "docker.io", "index.docker.io"])
def test_registry_docker_hub_aliases(alias: str) -> None:
    reg = Registry(alias)
    assert reg.name == "index.docker.io"
    assert str(reg) == "index.docker.io"
    assert reg.registry_str() == "index.docker.io"
    assert reg.api_host == "registry-1.docker.io"
    assert reg.is_docker_hub
    assert reg.scheme == "https"
    assert reg == Registry()


def test_registry_default_argument_is_docker_hub() -> None:
    assert Registry().name == DEFAULT_REGISTRY


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("gcr.io", "gcr.io", None),
        ("r.example:5000", "r.example", 5000),
        ("localhost", "localhost", None),
        ("localhost:5000", "localhost", 5000),
        ("127.0.0.1:5000", "127.0.0.1", 5000),
        ("[::1]", "[::1]", None),
        ("[::1]:5000", "[::1]", 5000),
        ("[2001:db8::1]:443", "[2001:db8::1]", 443),
        ("registry-1.docker.io", "registry-1.docker.io", None),
        ("My-Registry.Example", "My-Registry.Example", None),
        ("a", "a", None),
        ("xn--bcher-kva.example", "xn--bcher-kva.example", None),
        ("r.example:65535", "r.example", 65535),
    ],
)
def test_registry_valid(text: str, host: str, port: int | None) -> None:
    reg = Registry(text)
    assert reg.name == text
    assert reg.host == host
    assert reg.port == port
    assert reg.api_host == text
    assert not reg.is_docker_hub


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("https://r.example", "without a scheme"),
        ("r.example/path", "without a path"),
        ("r.example:", "port must be a number"),
        ("r.example:abc", "port must be a number"),
        ("r.example:0", "port must be between 1 and 65535"),
        ("r.example:65536", "port must be between 1 and 65535"),
        ("r.example:５０", "port must be a number"),
        ("::1", "must be enclosed in brackets"),
        ("2001:db8::1:5000", "must be enclosed in brackets"),
        ("[::1", "unterminated"),
        ("[not-ipv6]:5000", "not a valid IPv6 address"),
        ("[fe80::1%eth0]", "not a valid IPv6 address"),
        ("under_score.example", "host must be a domain name"),
        ("-leading.example", "host must be a domain name"),
        ("trailing-.example", "host must be a domain name"),
        ("double..dot", "host must be a domain name"),
        (".example", "host must be a domain name"),
        (":5000", "missing host name"),
        ("r.exa mple", "host must be a domain name"),
        ("bücher.example", "host must be a domain name"),
    ],
)
def test_registry_invalid(text: str, reason: str) -> None:
    with pytest.raises(BadName) as info:
        Registry(text)
    message = str(info.value)
    assert reason in message
    assert message.startswith("invalid registry ")
    assert f'"{text}"' in message  # the offending input, quoted


def test_registry_type_error() -> None:
    with pytest.raises(TypeError):
        Registry(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Repository(b"ubuntu")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        parse_reference(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text",
    [
        "localhost",
        "localhost:5000",
        "LOCALHOST:5000",
        "foo.localhost",
        "foo.localhost:8080",
        "127.0.0.1",
        "127.0.0.1:5000",
        "127.1.2.3:5000",
        "[::1]",
        "[::1]:5000",
        "[::ffff:127.0.0.1]:5000",
        "10.0.0.1",
        "10.255.255.255:5000",
        "172.16.0.1",
        "172.31.255.255:5000",
        "192.168.1.10",
        "192.168.1.10:5000",
    ],
)
def test_scheme_plain_http_hosts(text: str) -> None:
    reg = Registry(text)
    assert reg.scheme == "http"
    assert reg.allows_http_fallback


@pytest.mark.parametrize(
    "text",
    [
        "r.example",
        "r.example:5000",
        "localhost.example",
        "mylocalhost",
        "foo.local",
        "172.15.0.1",
        "172.32.0.1:5000",
        "192.169.0.1",
        "11.0.0.1",
        "8.8.8.8",
        "[2001:db8::1]:5000",
        "[fd00::1]",
        "index.docker.io",
    ],
)
def test_scheme_https_hosts(text: str) -> None:
    reg = Registry(text)
    assert reg.scheme == "https"
    assert not reg.allows_http_fallback


def test_scheme_insecure() -> None:
    reg = Registry("r.example", insecure=True)
    assert reg.insecure
    assert reg.scheme == "http"
    assert reg.allows_http_fallback
    assert Repository("r.example/a", insecure=True).registry.scheme == "http"
    assert parse_reference("r.example/a:t", insecure=True).registry.insecure
    assert Tag("r.example/a:t", insecure=True).registry.scheme == "http"
    assert Digest(f"r.example/a@{SHA256}", insecure=True).registry.scheme == "http"


def test_registry_scope_ignores_action(scopes: None) -> None:
    reg = Registry("r.example")
    assert reg.scope("catalog") == "registry:catalog:*"
    assert reg.scope("pull") == "registry:catalog:*"
    assert reg.scope() == "registry:catalog:*"


def test_registry_repo() -> None:
    assert Registry("r.example").repo("a", "b") == Repository("r.example/a/b")
    assert Registry().repo("ubuntu").name == "index.docker.io/library/ubuntu"
    assert Registry("r.example", insecure=True).repo("a").registry.insecure


# --------------------------------------------------------------------------------------- Repository


@pytest.mark.parametrize(
    ("text", "registry", "path"),
    [
        ("ubuntu", "index.docker.io", "library/ubuntu"),
        ("library/ubuntu", "index.docker.io", "library/ubuntu"),
        ("docker.io/ubuntu", "index.docker.io", "library/ubuntu"),
        ("docker.io/library/ubuntu", "index.docker.io", "library/ubuntu"),
        ("index.docker.io/ubuntu", "index.docker.io", "library/ubuntu"),
        ("bitnami/redis", "index.docker.io", "bitnami/redis"),
        ("a/b/c/d", "index.docker.io", "a/b/c/d"),
        ("gcr.io/project/image", "gcr.io", "project/image"),
        ("r.example/single", "r.example", "single"),
        ("localhost/foo", "localhost", "foo"),
        ("localhost:5000/foo/bar", "localhost:5000", "foo/bar"),
        ("[::1]:5000/foo", "[::1]:5000", "foo"),
        ("[2001:db8::1]/foo", "[2001:db8::1]", "foo"),
        ("registry-1.docker.io/foo", "registry-1.docker.io", "foo"),
        ("host:5000/x", "host:5000", "x"),
        ("localhost", "index.docker.io", "library/localhost"),  # no '/': a Docker Hub name
        ("r.example", "index.docker.io", "library/r.example"),  # no '/': a Docker Hub name
        ("foo_bar", "index.docker.io", "library/foo_bar"),
        ("foo__bar", "index.docker.io", "library/foo__bar"),
        ("foo-bar", "index.docker.io", "library/foo-bar"),
        ("foo---bar", "index.docker.io", "library/foo---bar"),
        ("foo.bar", "index.docker.io", "library/foo.bar"),
        ("a0/b1.c2_d3__e4-f5", "index.docker.io", "a0/b1.c2_d3__e4-f5"),
        ("0", "index.docker.io", "library/0"),
    ],
)
def test_repository_valid(text: str, registry: str, path: str) -> None:
    repo = Repository(text)
    assert repo.registry.name == registry
    assert repo.registry_str() == registry
    assert repo.repository_str() == path
    assert repo.path == path
    assert repo.name == f"{registry}/{path}"
    assert str(repo) == repo.name


def test_repository_docker_hub_forms_are_equal() -> None:
    forms = [
        "ubuntu",
        "library/ubuntu",
        "docker.io/ubuntu",
        "docker.io/library/ubuntu",
        "index.docker.io/library/ubuntu",
    ]
    assert len({Repository(f) for f in forms}) == 1
    assert str(Repository("ubuntu")) == "index.docker.io/library/ubuntu"
    assert Repository("ubuntu").repository_str() == "library/ubuntu"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Ubuntu", "repository name must be lowercase"),
        ("library/Ubuntu", "repository name must be lowercase"),
        ("Foo/bar", "repository name must be lowercase"),  # not a registry: no '.', ':' or localhost
        ("r.example/Foo", "repository name must be lowercase"),
        ("a//b", "must not be empty"),
        ("/a", "must not be empty"),
        ("a/", "must not be empty"),
        ("r.example/", "a repository name must be specified"),
        ("r.example//a", "must not be empty"),
        ("-foo", 'path component "-foo"'),
        ("foo-", 'path component "foo-"'),
        ("_foo", 'path component "_foo"'),
        ("foo_", 'path component "foo_"'),
        (".foo", 'path component ".foo"'),
        ("foo..bar", 'path component "foo..bar"'),
        ("foo___bar", 'path component "foo___bar"'),
        ("foo._bar", 'path component "foo._bar"'),
        ("foo bar", 'path component "foo bar"'),
        ("föö", 'path component "föö"'),
        ("foo!", 'path component "foo!"'),
        ("ubuntu:latest", "cannot contain a tag or digest"),
        (f"ubuntu@{SHA256}", "cannot contain a tag or digest"),
        ("r.example/a:tag", "cannot contain a tag or digest"),
        ("", "a repository name must be specified"),
        ("bad_host.example:5000/foo", 'invalid registry "bad_host.example:5000"'),
        ("https://r.example/foo", "cannot include a URL scheme"),
        ("r.example:99999/foo", "port must be between 1 and 65535"),
        ("::1/foo", "must be enclosed in brackets"),
    ],
)
def test_repository_invalid(text: str, reason: str) -> None:
    with pytest.raises(BadName) as info:
        Repository(text)
    message = str(info.value)
    assert reason in message
    assert f'"{text}"' in message


def test_repository_length_limit() -> None:
    ok = "r.example/" + "a" * (255 - len("r.example/"))
    assert len(ok) == 255
    assert Repository(ok).name == ok
    with bad("must not be more than 255 characters"):
        Repository(ok + "a")
    # Docker Hub's implicit library/ counts too.
    with bad("must not be more than 255 characters"):
        Repository("a" * 250)
    assert Repository("a" * 247).repository_str() == "library/" + "a" * 247


def test_error_message_truncates_huge_input() -> None:
    with pytest.raises(BadName) as info:
        Repository("A" * 100_000)
    assert len(str(info.value)) < 1000


def test_error_message_escapes_control_characters() -> None:
    with pytest.raises(BadName) as info:
        Repository("evil\nINFO forged log line")
    assert "\n" not in str(info.value)
    assert "\\n" in str(info.value)


def test_repository_scope(scopes: None) -> None:
    assert Repository("r.example/a/b").scope("pull") == "repository:a/b:pull"
    assert Repository("ubuntu").scope("pull") == "repository:library/ubuntu:pull"
    assert Repository("foo/bar").scope("push,pull") == "repository:foo/bar:push,pull"
    assert Repository("localhost:5000/x").scope("push,pull,delete") == "repository:x:push,pull,delete"
    assert Tag("ubuntu:22.04").scope("pull") == "repository:library/ubuntu:pull"
    assert Digest(f"r.example/a/b@{SHA256}").scope("pull") == "repository:a/b:pull"


def test_repository_tag_and_digest_helpers() -> None:
    repo = Repository("r.example/a")
    assert repo.tag("v1") == Tag("r.example/a:v1")
    assert repo.digest(SHA256) == Digest(f"r.example/a@{SHA256}")
    with bad("must start with a letter"):
        repo.tag("-bad")
    with bad("sha256 digest must be 64 lower-case hex characters"):
        repo.digest("sha256:abc")


# --------------------------------------------------------------------------------------- Tag


@pytest.mark.parametrize(
    ("text", "full", "tag"),
    [
        ("ubuntu", "index.docker.io/library/ubuntu:latest", "latest"),
        ("ubuntu:22.04", "index.docker.io/library/ubuntu:22.04", "22.04"),
        ("docker.io/library/ubuntu:latest", "index.docker.io/library/ubuntu:latest", "latest"),
        ("r.example/a/b:v1.2.3-rc_1", "r.example/a/b:v1.2.3-rc_1", "v1.2.3-rc_1"),
        ("localhost:5000/foo", "localhost:5000/foo:latest", "latest"),  # the port is not a tag
        ("localhost:5000/foo:bar", "localhost:5000/foo:bar", "bar"),
        ("[::1]:5000/foo", "[::1]:5000/foo:latest", "latest"),
        ("[::1]:5000/foo:v1", "[::1]:5000/foo:v1", "v1"),
        ("localhost:5000", "index.docker.io/library/localhost:5000", "5000"),  # no '/': Hub name + tag
        ("foo:_under", "index.docker.io/library/foo:_under", "_under"),
        ("foo:UPPER", "index.docker.io/library/foo:UPPER", "UPPER"),
        ("foo:" + "t" * 128, "index.docker.io/library/foo:" + "t" * 128, "t" * 128),
    ],
)
def test_tag_valid(text: str, full: str, tag: str) -> None:
    t = Tag(text)
    assert t.name == full
    assert t.tag == tag
    assert t.tag_str() == tag
    assert t.identifier == tag
    assert str(t) == text  # the original input, as go-containerregistry's String()
    assert t.repository.name == full.rsplit(":", 1)[0]
    assert t.context == t.repository
    assert t.registry == t.repository.registry


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("foo:", "tag must not be empty"),
        ("foo:.x", "tag \".x\" must start with a letter, digit or '_'"),
        ("foo:-x", "tag \"-x\" must start with a letter, digit or '_'"),
        ("foo:a/b", 'invalid registry "foo:a": port must be a number'),
        ("https://r.example/foo:v1", "cannot include a URL scheme"),
        ("foo:t+t", 'tag "t+t" may contain only letters'),
        ("foo:tüg", 'tag "tüg" may contain only letters'),
        ("foo:" + "t" * 129, "tag must be at most 128 characters"),
        (f"foo@{SHA256}", "a tag reference cannot contain a digest"),
        ("Foo:bar", "repository name must be lowercase"),
        ("", "a repository name must be specified"),
        (":tag", "a repository name must be specified"),
    ],
)
def test_tag_invalid(text: str, reason: str) -> None:
    with pytest.raises(BadName) as info:
        Tag(text)
    message = str(info.value)
    assert reason in message
    assert f'"{text}"' in message


# --------------------------------------------------------------------------------------- Digest


@pytest.mark.parametrize(
    ("text", "full", "digest", "tag"),
    [
        (f"ubuntu@{SHA256}", f"index.docker.io/library/ubuntu@{SHA256}", SHA256, None),
        (f"ubuntu:22.04@{SHA256}", f"index.docker.io/library/ubuntu@{SHA256}", SHA256, "22.04"),
        (f"r.example/a/b@{SHA512}", f"r.example/a/b@{SHA512}", SHA512, None),
        (f"localhost:5000/a@{SHA256}", f"localhost:5000/a@{SHA256}", SHA256, None),
        (f"localhost:5000/a:v1@{SHA256}", f"localhost:5000/a@{SHA256}", SHA256, "v1"),
        (f"[::1]:5000/a:v1@{SHA256}", f"[::1]:5000/a@{SHA256}", SHA256, "v1"),
        (
            "foo@multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8",
            "index.docker.io/library/foo@multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8",
            "multihash+base58:QmRZxt2b1FVZPNqd8hsiykDL3TdBDeTSPX9Kv46HmX4Gx8",
            None,
        ),
        ("foo@blake3:abc=_-XYZ", "index.docker.io/library/foo@blake3:abc=_-XYZ", "blake3:abc=_-XYZ", None),
    ],
)
def test_digest_valid(text: str, full: str, digest: str, tag: str | None) -> None:
    d = Digest(text)
    assert d.name == full
    assert d.digest == digest
    assert d.digest_str() == digest
    assert d.identifier == digest
    assert d.tag == tag
    assert str(d) == text
    assert parse_reference(text) == d


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("ubuntu", "must contain '@'"),
        (f"a@{SHA256}@{SHA256}", "exactly one '@'"),
        (f"@{SHA256}", "a repository name must be specified"),
        ("ubuntu@", "must be formatted as algorithm:encoded"),
        ("ubuntu@sha256", "must be formatted as algorithm:encoded"),
        ("ubuntu@:abc", "must be formatted as algorithm:encoded"),
        ("ubuntu@sha256:", "must be formatted as algorithm:encoded"),
        ("ubuntu@sha256:abc", "sha256 digest must be 64 lower-case hex characters"),
        ("ubuntu@sha256:" + "A" * 64, "sha256 digest must be 64 lower-case hex characters"),
        ("ubuntu@sha256:" + "g" * 64, "sha256 digest must be 64 lower-case hex characters"),
        ("ubuntu@sha256:" + "a" * 65, "sha256 digest must be 64 lower-case hex characters"),
        ("ubuntu@" + SHA512[:-1], "sha512 digest must be 128 lower-case hex characters"),
        ("ubuntu@sha512:" + "a" * 64, "sha512 digest must be 128 lower-case hex characters"),
        ("ubuntu@SHA256:" + "a" * 64, 'digest algorithm "SHA256" is not valid'),
        ("ubuntu@sha-:abc", 'digest algorithm "sha-" is not valid'),
        ("ubuntu@foo:ab cd", "encoded part of digest"),
        ("ubuntu@foo:ab+cd", "encoded part of digest"),
        (f"Ubuntu@{SHA256}", "repository name must be lowercase"),
        (f"ubuntu:.bad@{SHA256}", 'tag ".bad" must start with'),
    ],
)
def test_digest_invalid(text: str, reason: str) -> None:
    with pytest.raises(BadName) as info:
        Digest(text)
    message = str(info.value)
    assert reason in message
    assert f'"{text}"' in message or "..." in message


def test_digest_tag_is_informational() -> None:
    with_tag = Digest(f"ubuntu:22.04@{SHA256}")
    without = Digest(f"ubuntu@{SHA256}")
    assert with_tag == without
    assert hash(with_tag) == hash(without)
    assert with_tag.tag == "22.04"
    assert "22.04" not in with_tag.name


# --------------------------------------------------------------------------------------- parse_reference


def test_parse_reference_kinds() -> None:
    assert isinstance(parse_reference("ubuntu"), Tag)
    assert isinstance(parse_reference("ubuntu:1"), Tag)
    assert isinstance(parse_reference(f"ubuntu@{SHA256}"), Digest)
    assert isinstance(parse_reference(f"ubuntu:1@{SHA256}"), Digest)
    assert parse_reference("ubuntu") == Tag("index.docker.io/library/ubuntu:latest")


def test_parse_reference_errors_are_badname() -> None:
    for text in ["", "UPPER", "a:b:c", "a@sha256:x", "r.example:x/a"]:
        with pytest.raises(BadName):
            parse_reference(text)


# --------------------------------------------------------------------------------------- values


VALUES = [
    Registry("r.example:5000"),
    Registry("r.example", insecure=True),
    Repository("ubuntu"),
    Repository("[::1]:5000/a/b", insecure=True),
    Tag("ubuntu"),
    Tag("r.example/a:v1"),
    Digest(f"ubuntu:22.04@{SHA256}"),
    Digest(f"r.example/a@{SHA512}"),
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_pickle_roundtrip(value: object) -> None:
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        back = pickle.loads(pickle.dumps(value, protocol))
        assert back == value
        assert type(back) is type(value)
        assert str(back) == str(value)
        assert repr(back) == repr(value)
    assert copy.deepcopy(value) == value
    assert copy.copy(value) == value


def test_pickle_keeps_informational_tag_and_original() -> None:
    d = pickle.loads(pickle.dumps(Digest(f"ubuntu:22.04@{SHA256}")))
    assert d.tag == "22.04"
    assert str(d) == f"ubuntu:22.04@{SHA256}"
    assert pickle.loads(pickle.dumps(Registry("r.example", insecure=True))).insecure


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_immutable(value: object) -> None:
    with pytest.raises(AttributeError):
        value.foo = 1  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        value._name = "x"  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        del value._name  # type: ignore[attr-defined]


def test_hashable_and_equal() -> None:
    assert {Tag("ubuntu"), Tag("docker.io/library/ubuntu:latest")} == {Tag("ubuntu")}
    assert Registry("r.example") != Registry("r.example", insecure=True)
    assert Registry("r.example") != Registry("r.example:443")
    assert Repository("r.example/a") != Tag("r.example/a")
    assert Registry("r.example") != "r.example"
    assert Tag("a:1") != Tag("a:2")
    assert hash(Registry("a.example")) == hash(Registry("a.example"))
    assert Tag("r.example/a:1").registry_str() == "r.example"
    assert Digest(f"r.example/a@{SHA256}").repository_str() == "a"


def test_ordering() -> None:
    assert sorted([Registry("b.example"), Registry("a.example")]) == [
        Registry("a.example"),
        Registry("b.example"),
    ]
    assert min([Repository("b"), Repository("a")]) == Repository("a")
    assert min([Tag("a:2"), Tag("a:1")]) == Tag("a:1")
    assert Tag("a:1") <= Tag("a:1") and Tag("a:2") >= Tag("a:1") and Tag("a:2") > Tag("a:1")
    assert min([Digest(f"b@{SHA256}"), Digest(f"a@{SHA256}")]) == Digest(f"a@{SHA256}")
    with pytest.raises(TypeError):
        Tag("a") < Digest(f"a@{SHA256}")  # noqa: B015
    with pytest.raises(TypeError):
        Registry("a.example") < Repository("a")  # noqa: B015


def test_reprs() -> None:
    assert repr(Registry("r.example")) == "Registry('r.example')"
    assert repr(Registry("r.example", insecure=True)) == "Registry('r.example', insecure=True)"
    assert repr(Repository("ubuntu")) == "Repository('index.docker.io/library/ubuntu')"
    assert repr(Tag("ubuntu")) == "Tag('index.docker.io/library/ubuntu:latest')"
    assert repr(Digest(f"ubuntu@{SHA256}")) == f"Digest('index.docker.io/library/ubuntu@{SHA256}')"
    assert repr(Tag("r.example/a", insecure=True)) == "Tag('r.example/a:latest', insecure=True)"
