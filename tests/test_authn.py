"""ocitransport.authn: AuthConfig, authenticators, the docker/podman keychain and credential helpers.

Credential helpers are exercised with a real program, tests/bin/docker-credential-ocitest, put on PATH.
Every test runs with HOME, DOCKER_CONFIG, REGISTRY_AUTH_FILE and XDG_RUNTIME_DIR pointed at temp dirs.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from ocitransport import OCITransportError
from ocitransport.authn import (
    DEFAULT_AUTH_KEY,
    Anonymous,
    AuthConfig,
    Authenticator,
    AuthError,
    BadAuthConfig,
    Basic,
    Bearer,
    ConfigFileError,
    CredentialHelper,
    CredentialHelperError,
    DefaultKeychain,
    FromConfig,
    IdentityToken,
    Keychain,
    MultiKeychain,
)
from ocitransport.name import BadName, Digest, Registry, Repository, Tag
from tests.servers.credentials import BIN, Env

HELPER = BIN / "docker-credential-ocitest"
SECRET = "s3cr3t-PASSWORD-do-not-leak"
BAD_AUTH = "unable to decode auth field: must be formatted as base64(username:password)"


def b64(text: str, *, padded: bool = True) -> str:
    encoded = base64.b64encode(text.encode()).decode()
    return encoded if padded else encoded.rstrip("=")


def creds_of(auth: Authenticator) -> tuple[str, str]:
    cfg = auth.authorization()
    return cfg.username, cfg.password


# ============================================================================ AuthConfig


def test_error_hierarchy() -> None:
    assert issubclass(AuthError, OCITransportError)
    assert issubclass(BadAuthConfig, AuthError) and issubclass(BadAuthConfig, ValueError)
    assert issubclass(ConfigFileError, AuthError)
    assert issubclass(CredentialHelperError, AuthError)


@pytest.mark.parametrize(
    ("auth", "username", "password"),
    [
        (b64("alice:pw"), "alice", "pw"),  # padded
        (b64("alice:pw", padded=False), "alice", "pw"),  # unpadded
        (b64("alice:pw1"), "alice", "pw1"),  # no padding needed
        ("  " + b64("alice:pw") + "\n", "alice", "pw"),  # surrounding whitespace
        (b64("alice:pa:ss:word"), "alice", "pa:ss:word"),  # the password may contain ':'
        (b64("alice:"), "alice", ""),
        (b64(":pw"), "", "pw"),
        (b64("ünï:cödé"), "ünï", "cödé"),
    ],
)
def test_auth_field_decoded(auth: str, username: str, password: str) -> None:
    cfg = AuthConfig(auth=auth)
    assert (cfg.username, cfg.password) == (username, password)
    assert cfg.auth == auth


def test_auth_field_overrides_username_and_password() -> None:
    cfg = AuthConfig(username="bob", password="other", auth=b64("alice:pw"))
    assert (cfg.username, cfg.password) == ("alice", "pw")


@pytest.mark.parametrize(
    "auth",
    [
        b64(SECRET),  # decodes, but no ':'
        b64(SECRET, padded=False),
        "not base64 at all " + SECRET,
        SECRET + "!!",
        "abcde",  # 1 mod 4: never valid base64
        b64("alice:pw")[:-1] + "==",  # wrong padding (Python 3.10's binascii accepted it)
        b64("alice:pw") + "=",  # too much padding
        b64("alice:pw")[:4] + "=" + b64("alice:pw")[4:],  # padding inside
        b64("alice:pw")[:-1] + "A===",  # three padding characters
        base64.b64encode(b"\xff\xfe:" + SECRET.encode()).decode(),  # not UTF-8
    ],
)
def test_auth_field_malformed(auth: str) -> None:
    with pytest.raises(BadAuthConfig) as info:
        AuthConfig(auth=auth)
    assert str(info.value) == BAD_AUTH
    assert SECRET not in str(info.value)
    assert auth.strip() not in str(info.value)
    assert info.value.__suppress_context__ or info.value.__context__ is None


def test_auth_computed_from_username_and_password() -> None:
    cfg = AuthConfig(username="alice", password="pw")
    assert cfg.auth == b64("alice:pw")
    assert AuthConfig(username="alice").auth == ""


def test_authconfig_type_check() -> None:
    with pytest.raises(TypeError):
        AuthConfig(username=1)  # type: ignore[arg-type]


def test_authconfig_from_dict_and_to_dict() -> None:
    cfg = AuthConfig.from_dict(
        {"Username": "alice", "password": "pw", "IdentityToken": "it", "registrytoken": "rt", "email": "x@y"}
    )
    assert cfg == AuthConfig(username="alice", password="pw", identity_token="it", registry_token="rt")
    assert cfg.to_dict() == {
        "username": "alice",
        "password": "pw",
        "auth": b64("alice:pw"),
        "identitytoken": "it",
        "registrytoken": "rt",
    }
    assert AuthConfig().to_dict() == {}
    assert AuthConfig.from_dict({"auth": b64("u:p", padded=False)}).to_dict()["auth"] == b64("u:p")
    with pytest.raises(BadAuthConfig, match="'password' field must be a string"):
        AuthConfig.from_dict({"password": 5})
    with pytest.raises(BadAuthConfig, match="unable to decode auth field"):
        AuthConfig.from_dict({"auth": b64(SECRET)})


def test_authconfig_repr_and_str_hide_secrets() -> None:
    cfg = AuthConfig(
        username="alice", password=SECRET, identity_token=SECRET + "i", registry_token=SECRET + "r"
    )
    for text in (repr(cfg), str(cfg), f"{cfg}", f"{[cfg]}"):
        assert SECRET not in text
        assert cfg.auth not in text
    assert repr(AuthConfig(username="alice", password=SECRET)) == (
        "AuthConfig(username='alice', password=<set>, auth=<set>)"
    )
    assert repr(AuthConfig()) == "AuthConfig()"
    assert repr(AuthConfig(registry_token=SECRET)) == "AuthConfig(registry_token=<set>)"
    assert repr(AuthConfig(identity_token=SECRET)) == "AuthConfig(identity_token=<set>)"


def test_authconfig_value_semantics() -> None:
    cfg = AuthConfig(username="alice", password="pw")
    with pytest.raises(AttributeError):
        cfg.password = "x"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del cfg.password
    assert cfg == AuthConfig(auth=b64("alice:pw"))
    assert hash(cfg) == hash(AuthConfig(username="alice", password="pw"))
    assert pickle.loads(pickle.dumps(cfg)) == cfg
    assert AuthConfig().is_empty and not cfg.is_empty


def test_authorization_header_priority() -> None:
    assert AuthConfig().authorization_header() is None
    assert AuthConfig(registry_token="rt", username="u", password="p").authorization_header() == "Bearer rt"
    assert AuthConfig(username="u", password="p").authorization_header() == "Basic " + b64("u:p")
    # Unpadded auth is decoded; the header is recomputed in standard (padded) base64.
    assert AuthConfig(auth=b64("u:p1", padded=False)).authorization_header() == "Basic " + b64("u:p1")
    # auth whose password is empty: sent verbatim.
    assert AuthConfig(auth=b64("u:")).authorization_header() == "Basic " + b64("u:")
    assert AuthConfig(identity_token="it").authorization_header() is None
    assert AuthConfig(username="u").authorization_header() is None


# ============================================================================ authenticators


def test_anonymous_singleton() -> None:
    assert Anonymous.authorization() == AuthConfig()
    assert repr(Anonymous) == "Anonymous"
    assert pickle.loads(pickle.dumps(Anonymous)) is Anonymous
    assert isinstance(Anonymous, Authenticator)
    with pytest.raises(AttributeError):
        Anonymous._config = AuthConfig(username="x")  # type: ignore[misc]


def test_basic() -> None:
    auth = Basic("alice", SECRET)
    assert auth.authorization() == AuthConfig(username="alice", password=SECRET)
    assert auth.username == "alice"
    assert repr(auth) == "Basic(username='alice', password=<set>)"
    assert SECRET not in str(auth)
    assert pickle.loads(pickle.dumps(auth)) == auth
    assert auth == Basic("alice", SECRET) and auth != Basic("alice", "other")
    assert auth != FromConfig(auth.authorization())  # different kinds never compare equal
    assert hash(auth) == hash(Basic("alice", SECRET))
    assert AuthConfig() != ""
    assert isinstance(auth, Authenticator)


def test_bearer() -> None:
    auth = Bearer(SECRET)
    assert auth.authorization() == AuthConfig(registry_token=SECRET)
    assert repr(auth) == "Bearer(token=<set>)"
    assert SECRET not in str(auth)
    assert pickle.loads(pickle.dumps(auth)) == auth


def test_identity_token() -> None:
    auth = IdentityToken(SECRET)
    assert auth.authorization() == AuthConfig(identity_token=SECRET)
    assert repr(auth) == "IdentityToken(token=<set>)"
    named = IdentityToken(SECRET, username="<token>")
    assert named.authorization().username == "<token>"
    assert repr(named) == "IdentityToken(username='<token>', token=<set>)"
    assert pickle.loads(pickle.dumps(named)) == named


def test_from_config() -> None:
    cfg = AuthConfig(username="alice", password=SECRET)
    auth = FromConfig(cfg)
    assert auth.authorization() is cfg
    assert repr(auth) == "FromConfig(AuthConfig(username='alice', password=<set>, auth=<set>))"
    assert SECRET not in str(auth)
    assert pickle.loads(pickle.dumps(auth)) == auth
    with pytest.raises(TypeError):
        FromConfig({"username": "alice"})  # type: ignore[arg-type]


# ============================================================================ DefaultKeychain: files


def test_no_files_is_anonymous(env: Env) -> None:
    assert DefaultKeychain().resolve("r.example") is Anonymous
    assert DefaultKeychain().resolve(Registry()) is Anonymous


def test_docker_config_env(env: Env) -> None:
    env.docker({"auths": {"r.example": {"auth": b64("alice:pw")}}})
    auth = DefaultKeychain().resolve(Registry("r.example"))
    assert creds_of(auth) == ("alice", "pw")
    assert isinstance(auth, Authenticator)


def test_home_docker_config(env: Env) -> None:
    env.home_docker({"auths": {"r.example": {"username": "alice", "password": "pw"}}})
    assert creds_of(DefaultKeychain().resolve("r.example")) == ("alice", "pw")


def test_docker_config_env_replaces_home(env: Env) -> None:
    env.home_docker({"auths": {"r.example": {"auth": b64("home:pw")}}})
    env.docker({"auths": {"other.example": {"auth": b64("dc:pw")}}})
    assert DefaultKeychain().resolve("r.example") is Anonymous
    assert creds_of(DefaultKeychain().resolve("other.example")) == ("dc", "pw")


@pytest.mark.parametrize(
    "target", ["", "docker.io", "index.docker.io", Registry(), Repository("ubuntu"), Tag("bitnami/redis:7")]
)
@pytest.mark.parametrize(
    "key",
    [
        DEFAULT_AUTH_KEY,
        "index.docker.io",
        "docker.io",
        "https://docker.io",
        "registry-1.docker.io",
        "https://index.docker.io/v2/",
    ],
)
def test_docker_hub_keys(env: Env, key: str, target: object) -> None:
    env.docker({"auths": {key: {"auth": b64("hub:pw")}}})
    assert creds_of(DefaultKeychain().resolve(target)) == ("hub", "pw")  # type: ignore[arg-type]


def test_docker_hub_legacy_key_preferred_over_scan(env: Env) -> None:
    env.docker(
        {"auths": {"docker.io": {"auth": b64("scan:pw")}, DEFAULT_AUTH_KEY: {"auth": b64("legacy:pw")}}}
    )
    assert creds_of(DefaultKeychain().resolve(Registry())) == ("legacy", "pw")


@pytest.mark.parametrize(
    "key",
    [
        "r.example:5000",
        "https://r.example:5000",
        "http://r.example:5000",
        "r.example:5000/v1/",
        "https://r.example:5000/v2/",
        "HTTPS://R.Example:5000",
        "https://r.example:5000/anything/else",
    ],
)
def test_registry_key_forms(env: Env, key: str) -> None:
    env.docker({"auths": {key: {"auth": b64("alice:pw")}}})
    assert creds_of(DefaultKeychain().resolve("r.example:5000")) == ("alice", "pw")


def test_port_must_match(env: Env) -> None:
    env.docker({"auths": {"r.example": {"auth": b64("alice:pw")}, "s.example:5000": {"auth": b64("s:pw")}}})
    assert DefaultKeychain().resolve("r.example:5000") is Anonymous
    assert DefaultKeychain().resolve("s.example") is Anonymous
    assert DefaultKeychain().resolve("other.example") is Anonymous


def test_exact_key_preferred(env: Env) -> None:
    env.docker(
        {"auths": {"https://r.example": {"auth": b64("scan:pw")}, "r.example": {"auth": b64("exact:pw")}}}
    )
    assert creds_of(DefaultKeychain().resolve("r.example")) == ("exact", "pw")


def test_ipv6_registry_key(env: Env) -> None:
    env.docker({"auths": {"[::1]:5000": {"auth": b64("v6:pw")}}})
    assert creds_of(DefaultKeychain().resolve(Repository("[::1]:5000/a"))) == ("v6", "pw")


def test_entry_fields(env: Env) -> None:
    env.docker(
        {
            "auths": {
                "pw.example": {"username": "alice", "password": "pw"},
                "it.example": {"username": "alice", "identitytoken": "refresh"},
                "rt.example": {"registrytoken": "regtok"},
                "both.example": {"auth": b64("alice:pw"), "identitytoken": "refresh", "email": "a@b"},
            }
        }
    )
    kc = DefaultKeychain()
    assert kc.resolve("pw.example").authorization() == AuthConfig(username="alice", password="pw")
    assert kc.resolve("it.example").authorization() == AuthConfig(username="alice", identity_token="refresh")
    assert kc.resolve("rt.example").authorization() == AuthConfig(registry_token="regtok")
    assert kc.resolve("both.example").authorization() == AuthConfig(
        username="alice", password="pw", identity_token="refresh"
    )


def test_empty_entry_is_anonymous(env: Env) -> None:
    env.docker({"auths": {"r.example": {}}})
    assert DefaultKeychain().resolve("r.example") is Anonymous


def test_registry_auth_file(env: Env) -> None:
    env.registry_auth_file({"auths": {"r.example": {"auth": b64("raf:pw")}}})
    assert creds_of(DefaultKeychain().resolve("r.example")) == ("raf", "pw")


def test_podman_auth_file(env: Env) -> None:
    env.podman({"auths": {"r.example": {"auth": b64("podman:pw")}}})
    assert creds_of(DefaultKeychain().resolve("r.example")) == ("podman", "pw")


def test_file_order(env: Env) -> None:
    env.docker({"auths": {"a.example": {"auth": b64("docker:pw")}}})
    env.registry_auth_file(
        {"auths": {"a.example": {"auth": b64("raf:pw")}, "b.example": {"auth": b64("raf:pw")}}}
    )
    env.podman({"auths": {a: {"auth": b64("podman:pw")} for a in ("a.example", "b.example", "c.example")}})
    kc = DefaultKeychain()
    assert creds_of(kc.resolve("a.example")) == ("docker", "pw")
    assert creds_of(kc.resolve("b.example")) == ("raf", "pw")
    assert creds_of(kc.resolve("c.example")) == ("podman", "pw")
    assert [p.name for p in kc.config_paths()] == ["config.json", "auth-file.json", "auth.json"]


def test_podman_repository_scoped_keys(env: Env) -> None:
    env.podman(
        {
            "auths": {
                "r.example": {"auth": b64("host:pw")},
                "r.example/team": {"auth": b64("team:pw")},
                "r.example/team/app": {"auth": b64("app:pw")},
            }
        }
    )
    kc = DefaultKeychain()
    assert creds_of(kc.resolve(Repository("r.example/team/app"))) == ("app", "pw")
    assert creds_of(kc.resolve(Tag("r.example/team/other:v1"))) == ("team", "pw")
    assert creds_of(kc.resolve(Digest("r.example/solo@sha256:" + "a" * 64))) == ("host", "pw")
    assert creds_of(kc.resolve(Registry("r.example"))) == ("host", "pw")


def test_repository_scoped_key_not_used_for_host(env: Env) -> None:
    env.docker({"auths": {"r.example/team": {"auth": b64("team:pw")}}})
    assert DefaultKeychain().resolve("r.example") is Anonymous
    assert DefaultKeychain().resolve(Repository("r.example/other")) is Anonymous


def test_same_file_named_twice_read_once(env: Env) -> None:
    path = env.docker({"credsStore": "ocitest"})
    env.helper_creds({})
    env.monkeypatch.setenv("REGISTRY_AUTH_FILE", str(path))
    assert DefaultKeychain().resolve("r.example") is Anonymous
    assert len(env.helper_calls()) == 1


def test_config_read_at_resolve_time(env: Env) -> None:
    kc = DefaultKeychain()
    assert kc.resolve("r.example") is Anonymous
    env.docker({"auths": {"r.example": {"auth": b64("first:pw")}}})
    assert creds_of(kc.resolve("r.example")) == ("first", "pw")
    env.docker({"auths": {"r.example": {"auth": b64("second:pw")}}})
    assert creds_of(kc.resolve("r.example")) == ("second", "pw")
    (env.docker_config / "config.json").unlink()
    assert kc.resolve("r.example") is Anonymous


def test_missing_and_odd_files_skipped(env: Env) -> None:
    env.monkeypatch.setenv("DOCKER_CONFIG", str(env.tmp / "does-not-exist"))
    env.monkeypatch.setenv("REGISTRY_AUTH_FILE", str(env.tmp))  # a directory
    env.monkeypatch.setenv("XDG_RUNTIME_DIR", str(env.tmp / "nothing"))
    env.write(env.tmp / "empty" / "config.json", "  \n")
    assert DefaultKeychain().resolve("r.example") is Anonymous
    env.monkeypatch.setenv("DOCKER_CONFIG", str(env.tmp / "empty"))
    assert DefaultKeychain().resolve("r.example") is Anonymous


def test_malformed_json_names_file(env: Env) -> None:
    path = env.docker('{"auths": {"r.example": {"password": "' + SECRET + '" ')
    with pytest.raises(ConfigFileError) as info:
        DefaultKeychain().resolve("r.example")
    message = str(info.value)
    assert str(path) in message and "malformed JSON" in message
    assert SECRET not in message
    assert info.value.path == str(path)
    assert info.value.__suppress_context__


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ([1, 2], "must hold a JSON object"),
        ({"auths": []}, "'auths' must be a JSON object"),
        ({"auths": {"r.example": "x"}}, "auths entry 'r.example' must be a JSON object"),
        ({"credHelpers": "x"}, "'credHelpers' must be a JSON object"),
        ({"credsStore": 5}, '"credsStore" must be a string'),
        ({"credHelpers": {"r.example": 5}}, "credHelpers entry for 'r.example' must be a string"),
    ],
)
def test_malformed_config_structure(env: Env, data: Any, reason: str) -> None:
    path = env.docker(data)
    with pytest.raises(ConfigFileError) as info:
        DefaultKeychain().resolve("r.example")
    assert reason in str(info.value)
    assert str(path) in str(info.value)


def test_bad_auth_in_config(env: Env) -> None:
    path = env.docker({"auths": {"r.example": {"auth": b64(SECRET)}}})
    with pytest.raises(BadAuthConfig) as info:
        DefaultKeychain().resolve("r.example")
    message = str(info.value)
    assert BAD_AUTH in message
    assert str(path) in message and "r.example" in message
    assert SECRET not in message and b64(SECRET) not in message


def test_unreadable_file_is_an_error(env: Env) -> None:
    path = env.docker({"auths": {}})

    def refuse(self: Path, *args: Any, **kwargs: Any) -> str:
        raise PermissionError(13, "Permission denied", str(self))

    env.monkeypatch.setattr(Path, "read_text", refuse)  # chmod 0 does not stop root
    with pytest.raises(ConfigFileError) as info:
        DefaultKeychain().resolve("r.example")
    assert str(info.value) == f"cannot read credentials file {path}: Permission denied"


def test_bad_target(env: Env) -> None:
    with pytest.raises(BadName):
        DefaultKeychain().resolve("https://r.example")
    with pytest.raises(TypeError):
        DefaultKeychain().resolve(5)  # type: ignore[arg-type]


def test_keychain_protocol() -> None:
    assert isinstance(DefaultKeychain(), Keychain)
    assert isinstance(MultiKeychain(), Keychain)
    assert isinstance(CredentialHelper("ocitest"), Keychain)
    assert repr(DefaultKeychain(helper_timeout=5)) == "DefaultKeychain(helper_timeout=5)"


# ============================================================================ credential helpers


def test_the_test_helper_speaks_the_protocol(env: Env) -> None:
    def run(action: str, stdin: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(HELPER), action], input=stdin, capture_output=True, text=True, timeout=30, check=False
        )

    assert os.access(HELPER, os.X_OK)
    assert HELPER.read_text().startswith("#!/usr/bin/env python3\n")
    store = run("store", json.dumps({"ServerURL": "r.example", "Username": "alice", "Secret": SECRET}))
    assert store.returncode == 0, store.stdout
    got = run("get", "r.example")
    assert got.returncode == 0
    assert json.loads(got.stdout) == {"ServerURL": "r.example", "Username": "alice", "Secret": SECRET}
    assert json.loads(run("list", "").stdout) == {"r.example": "alice"}
    assert run("erase", "r.example").returncode == 0
    missing = run("get", "r.example")
    assert missing.returncode == 1 and "credentials not found in native keychain" in missing.stdout
    assert json.loads(run("list", "").stdout) == {}


def test_cred_helpers_per_registry(env: Env) -> None:
    env.helper_creds({"r.example": ("alice", "pw")})
    env.docker({"credHelpers": {"r.example": "ocitest"}, "auths": {"r.example": {"auth": b64("file:pw")}}})
    auth = DefaultKeychain().resolve(Registry("r.example"))
    assert creds_of(auth) == ("alice", "pw")
    calls = env.helper_calls()
    assert len(calls) == 1
    assert calls[0]["argv"][1:] == ["get"]
    assert Path(calls[0]["argv"][0]).name == "docker-credential-ocitest"
    assert calls[0]["stdin"] == "r.example"


def test_cred_helpers_key_normalised(env: Env) -> None:
    env.helper_creds({"r.example:5000": ("alice", "pw")})
    env.docker({"credHelpers": {"https://r.example:5000": "ocitest"}})
    assert creds_of(DefaultKeychain().resolve("r.example:5000")) == ("alice", "pw")


def test_cred_helpers_only_for_their_registry(env: Env) -> None:
    env.helper_creds({"r.example": ("alice", "pw")})
    env.docker({"credHelpers": {"r.example": "ocitest"}, "auths": {"s.example": {"auth": b64("file:pw")}}})
    assert creds_of(DefaultKeychain().resolve("s.example")) == ("file", "pw")
    assert env.helper_calls() == []


def test_creds_store_default(env: Env) -> None:
    env.helper_creds({"r.example": ("store-user", "pw")})
    env.docker({"credsStore": "ocitest", "auths": {"r.example": {}}})
    assert creds_of(DefaultKeychain().resolve("r.example")) == ("store-user", "pw")


def test_cred_helpers_beat_creds_store(env: Env) -> None:
    env.helper_creds({"r.example": ("alice", "pw")})
    env.docker({"credsStore": "missing-store", "credHelpers": {"r.example": "ocitest"}})
    assert creds_of(DefaultKeychain().resolve("r.example")) == ("alice", "pw")
    with pytest.raises(CredentialHelperError, match="docker-credential-missing-store"):
        DefaultKeychain().resolve("s.example")


def test_empty_cred_helper_falls_back_to_store(env: Env) -> None:
    env.helper_creds({"r.example": ("store-user", "pw")})
    env.docker({"credsStore": "ocitest", "credHelpers": {"r.example": ""}})
    assert creds_of(DefaultKeychain().resolve("r.example")) == ("store-user", "pw")


def test_docker_hub_helper_server_url(env: Env) -> None:
    env.helper_creds({DEFAULT_AUTH_KEY: ("hub", "pw")})
    env.docker({"credHelpers": {"index.docker.io": "ocitest"}})
    assert creds_of(DefaultKeychain().resolve(Repository("ubuntu"))) == ("hub", "pw")
    assert env.helper_calls()[0]["stdin"] == DEFAULT_AUTH_KEY
    env.docker({"credsStore": "ocitest"})
    assert creds_of(DefaultKeychain().resolve("docker.io")) == ("hub", "pw")


def test_helper_not_found_answer_is_anonymous(env: Env) -> None:
    env.helper_creds({})
    env.docker({"credsStore": "ocitest", "auths": {"r.example": {"auth": b64("ignored:pw")}}})
    # As with docker, a configured store is the source of truth for that file.
    assert DefaultKeychain().resolve("r.example") is Anonymous


def test_helper_not_found_falls_through_to_next_file(env: Env) -> None:
    env.helper_creds({})
    env.docker({"credsStore": "ocitest"})
    env.podman({"auths": {"r.example": {"auth": b64("podman:pw")}}})
    assert creds_of(DefaultKeychain().resolve("r.example")) == ("podman", "pw")


def test_helper_identity_token(env: Env) -> None:
    env.helper_creds({"r.example": ("<token>", SECRET)})
    env.docker({"credHelpers": {"r.example": "ocitest"}})
    cfg = DefaultKeychain().resolve("r.example").authorization()
    assert cfg.identity_token == SECRET
    assert cfg.password == ""
    assert cfg.username == "<token>"
    assert SECRET not in repr(DefaultKeychain().resolve("r.example"))


def test_helper_program_missing(env: Env) -> None:
    env.docker({"credHelpers": {"r.example": "nonexistent"}})
    with pytest.raises(CredentialHelperError) as info:
        DefaultKeychain().resolve("r.example")
    message = str(info.value)
    assert "docker-credential-nonexistent" in message and "not found on PATH" in message
    assert "r.example" in message
    assert info.value.helper == "docker-credential-nonexistent"
    assert info.value.server_url == "r.example"


def test_helper_failure_reports_stderr_not_secrets(env: Env) -> None:
    env.helper_creds({"r.example": ("alice", SECRET)})
    env.docker({"credHelpers": {"r.example": "ocitest"}, "auths": {"r.example": {"password": SECRET}}})
    env.monkeypatch.setenv("OCITEST_HELPER_MODE", "fail")
    with pytest.raises(CredentialHelperError) as info:
        DefaultKeychain().resolve("r.example")
    message = str(info.value)
    assert message == (
        "credential helper docker-credential-ocitest failed with exit status 2: "
        "ocitest: the keyring is locked (registry r.example)"
    )
    assert SECRET not in message


def test_helper_silent_failure(env: Env) -> None:
    env.docker({"credsStore": "ocitest"})
    env.monkeypatch.setenv("OCITEST_HELPER_MODE", "silent-fail")
    with pytest.raises(CredentialHelperError, match=r"failed with exit status 3 \(registry r.example\)$"):
        DefaultKeychain().resolve("r.example")


def test_helper_error_on_stdout_is_reported(env: Env) -> None:
    # Helpers built on docker-credential-helpers print their errors on stdout (stderr stays empty).
    env.monkeypatch.delenv("OCITEST_CREDENTIALS_FILE")
    with pytest.raises(CredentialHelperError, match="exit status 1: OCITEST_CREDENTIALS_FILE is not set"):
        CredentialHelper("ocitest").get("r.example")


def test_helper_garbage_output(env: Env) -> None:
    env.docker({"credsStore": "ocitest"})
    env.monkeypatch.setenv("OCITEST_HELPER_MODE", "garbage")
    with pytest.raises(CredentialHelperError) as info:
        DefaultKeychain().resolve("r.example")
    assert "not JSON" in str(info.value)
    assert "this is not json" not in str(info.value)


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ('["a", "b"]', "returned JSON that is not an object"),
        ('{"Username": 1, "Secret": "' + SECRET + '"}', "returned a non-string Username or Secret"),
        ("", "returned output that is not JSON"),
    ],
)
def test_helper_malformed_answers(env: Env, answer: str, reason: str) -> None:
    env.monkeypatch.setenv("OCITEST_HELPER_MODE", "answer")
    env.monkeypatch.setenv("OCITEST_HELPER_ANSWER", answer)
    with pytest.raises(CredentialHelperError) as info:
        CredentialHelper("ocitest").get("r.example")
    assert reason in str(info.value)
    assert SECRET not in str(info.value)


def test_helper_empty_credentials_are_none(env: Env) -> None:
    env.monkeypatch.setenv("OCITEST_HELPER_MODE", "answer")
    env.monkeypatch.setenv(
        "OCITEST_HELPER_ANSWER", '{"ServerURL": "r.example", "Username": "", "Secret": ""}'
    )
    assert CredentialHelper("ocitest").get("r.example") is None


def test_helper_failure_json_stdout_not_quoted(env: Env) -> None:
    # A failing helper whose stdout looks like credentials: never quoted into the error.
    fake = env.tmp / "bin" / "docker-credential-leaky"
    env.write(fake, '#!/bin/sh\necho \'{"Secret": "' + SECRET + "\"}'\nexit 4\n")
    fake.chmod(0o755)
    env.monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(CredentialHelperError) as info:
        CredentialHelper("leaky").get("r.example")
    assert (
        str(info.value)
        == "credential helper docker-credential-leaky failed with exit status 4 (registry r.example)"
    )


def test_helper_long_stderr_is_trimmed(env: Env) -> None:
    env.monkeypatch.setenv("OCITEST_HELPER_MODE", "noisy-fail")
    with pytest.raises(CredentialHelperError) as info:
        CredentialHelper("ocitest").get("r.example")
    assert len(str(info.value)) < 1200
    assert "x" * 1000 + "..." in str(info.value)


def test_helper_cannot_be_executed(env: Env) -> None:
    fake = env.tmp / "bin" / "docker-credential-broken"
    env.write(fake, "no shebang here\n")
    fake.chmod(0o755)
    env.monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(
        CredentialHelperError, match="docker-credential-broken could not be run: Exec format error"
    ):
        CredentialHelper("broken").get("r.example")


def test_helper_timeout(env: Env) -> None:
    env.helper_creds({"r.example": ("alice", "pw")})
    env.docker({"credHelpers": {"r.example": "ocitest"}})
    env.monkeypatch.setenv("OCITEST_HELPER_MODE", "sleep")
    env.monkeypatch.setenv("OCITEST_HELPER_SLEEP", "30")
    start = time.monotonic()
    with pytest.raises(CredentialHelperError) as info:
        DefaultKeychain(helper_timeout=1.0).resolve("r.example")
    elapsed = time.monotonic() - start
    assert elapsed < 10
    assert (
        str(info.value)
        == "credential helper docker-credential-ocitest timed out after 1 s (registry r.example)"
    )
    # The helper was killed and reaped, not left running.
    pid = env.helper_calls()[0]["pid"]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_helper_sleep_within_timeout(env: Env) -> None:
    env.helper_creds({"r.example": ("alice", "pw")})
    env.monkeypatch.setenv("OCITEST_HELPER_MODE", "sleep")
    env.monkeypatch.setenv("OCITEST_HELPER_SLEEP", "0.1")
    assert creds_of(CredentialHelper("ocitest", timeout=20).resolve("r.example")) == ("alice", "pw")


@pytest.mark.parametrize("bad", ["../ocitest", "a/b", "", ".."])
def test_helper_name_cannot_escape_path(env: Env, bad: str) -> None:
    with pytest.raises(AuthError, match="invalid credential helper name"):
        CredentialHelper(bad)
    if bad:
        env.docker({"credHelpers": {"r.example": bad}})
        with pytest.raises(ConfigFileError, match="invalid credential helper name"):
            DefaultKeychain().resolve("r.example")


def test_credential_helper_direct(env: Env) -> None:
    env.helper_creds({"r.example": ("alice", "pw"), DEFAULT_AUTH_KEY: ("hub", "pw")})
    helper = CredentialHelper("ocitest")
    assert helper.program == "docker-credential-ocitest"
    assert helper.get("r.example") == AuthConfig(username="alice", password="pw")
    assert helper.get("nothing.example") is None
    assert creds_of(helper.resolve(Repository("ubuntu"))) == ("hub", "pw")
    assert helper.resolve("nothing.example") is Anonymous
    assert repr(helper) == "CredentialHelper('ocitest', timeout=30.0)"


def test_helper_runs_without_shell(env: Env, tmp_path: Path) -> None:
    # A server URL full of shell syntax reaches the helper untouched on stdin.
    marker = tmp_path / "pwned"
    env.helper_creds({})
    url = f"r.example; touch {marker}"
    assert CredentialHelper("ocitest").get(url) is None
    assert not marker.exists()
    assert env.helper_calls()[0]["stdin"] == url


# ============================================================================ MultiKeychain


class FixedKeychain:
    def __init__(self, auth: Authenticator | Exception) -> None:
        self.auth = auth
        self.calls = 0

    def resolve(self, target: object) -> Authenticator:
        self.calls += 1
        if isinstance(self.auth, Exception):
            raise self.auth
        return self.auth


def test_multi_keychain_first_non_anonymous_wins() -> None:
    a, b, c = FixedKeychain(Anonymous), FixedKeychain(Basic("b", "pw")), FixedKeychain(Basic("c", "pw"))
    assert MultiKeychain(a, b, c).resolve("r.example") == Basic("b", "pw")
    assert (a.calls, b.calls, c.calls) == (1, 1, 0)


def test_multi_keychain_all_anonymous() -> None:
    assert MultiKeychain().resolve("r.example") is Anonymous
    assert MultiKeychain(FixedKeychain(Anonymous), FixedKeychain(Anonymous)).resolve("r.example") is Anonymous


def test_multi_keychain_errors_abort() -> None:
    later = FixedKeychain(Basic("c", "pw"))
    with pytest.raises(AuthError, match="boom"):
        MultiKeychain(FixedKeychain(Anonymous), FixedKeychain(AuthError("boom")), later).resolve("r.example")
    assert later.calls == 0


def test_multi_keychain_with_default(env: Env) -> None:
    env.docker({"auths": {"r.example": {"auth": b64("file:pw")}}})
    kc = MultiKeychain(DefaultKeychain(), FixedKeychain(Basic("fallback", "pw")))
    assert creds_of(kc.resolve("r.example")) == ("file", "pw")
    assert creds_of(kc.resolve("s.example")) == ("fallback", "pw")
    assert "DefaultKeychain" in repr(kc)


def test_no_real_docker_config_touched(env: Env) -> None:
    # The fixture points HOME away from the real one; make sure the keychain honours it.
    assert all(str(env.tmp) in str(p) for p in DefaultKeychain().config_paths())
