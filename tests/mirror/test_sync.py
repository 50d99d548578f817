"""``mirror.sync``: the sync file (skopeo's YAML plus a destination and options), and runs of it
between real registries on loopback; results read back with raw HTTP (tests/servers/raw.py)."""

from __future__ import annotations

import base64
import io
import json
import shutil
import textwrap

import pytest

from ocitransport import mirror
from ocitransport.authn import Basic
from ocitransport.client import Client
from ocitransport.mirror import Plan, Report, SyncConfig, SyncConfigError
from ocitransport.mirror.sync import PlanExecutor, SyncKeychain, load_config
from tests.servers import raw


def _yaml(tmp_path, text: str, name: str = "sync.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


# ------------------------------------------------------------------------------------------- the file

def test_skopeo_example_parses(tmp_path):
    path = _yaml(tmp_path, """\
        destination: mirror.example.com/base/
        defaults:
          exclude: ['-rc']
          platforms: [linux/amd64]
        registry.example.com:
            images:
                busybox: []
                redis:
                    - "1.0"
                    - "2.0"
                    - "sha256:0000000000000000000000000000000011111111111111111111111111111111"
            images-by-tag-regex:
                nginx: ^1\\.13\\.[12]-alpine-perl$
            images-by-semver:
                alpine: ">= 3.12.0"
                redis: "~2"
            credentials:
                username: john
                password: this is a secret
            tls-verify: true
        quay.io:
            tls-verify: false
            exclude: []
            images:
                coreos/etcd:
                    - latest
        """)
    config = load_config(path)
    assert config.destination == "mirror.example.com/base" and config.jobs == "auto" and not config.keep_going
    example, quay = config.registries
    repos = {s.repository: s for s in example.images}
    assert repos["busybox"].all_tags
    assert repos["redis"].tags == ("1.0", "2.0") and repos["redis"].semver == ("~2",)
    assert repos["redis"].digests == ("sha256:" + "0" * 32 + "1" * 32,)
    assert repos["nginx"].tag_regex == (r"^1\.13\.[12]-alpine-perl$",)
    assert example.exclude == ("-rc",) and example.platforms == ("linux/amd64",)
    assert quay.insecure and quay.exclude == () and quay.platforms == ("linux/amd64",)  # own value wins
    assert isinstance(example.credentials, Basic) and quay.credentials is None
    assert "this is a secret" not in repr(config) and "this is a secret" not in repr(example)
    # skopeo's destination naming: the last path component; scoped keeps registry and path.
    from ocitransport.name import Repository

    etcd = Repository("quay.io/coreos/etcd")
    assert config.destination_repository(etcd, "coreos/etcd") == "mirror.example.com/base/etcd"
    scoped = SyncConfig.from_dict({"destination": "m.example.com", "scoped": True,
                                   "quay.io": {"images": {"coreos/etcd": []}}})
    assert scoped.destination_repository(etcd, "coreos/etcd") == "m.example.com/quay.io/coreos/etcd"


def test_selection_is_the_union_of_the_sections():
    config = SyncConfig.from_dict({"destination": "d.example", "r.example": {
        "images": {"app": ["pinned"]}, "images-by-tag-regex": {"app": "^dev-"},
        "images-by-semver": {"app": ">= 1.2, < 2"}}})
    (selection,) = config.registries[0].images
    listed = ["latest", "dev-1", "1.1.0", "1.2.0", "1.9.3", "2.0.0", "pinned", "v1.5.0-rc.1"]
    assert selection.select(listed) == ["pinned", "dev-1", "1.2.0", "1.9.3"]


@pytest.mark.parametrize(("text", "line", "words"), [
    ("destination: d.example\nr.example:\n  imagse: {a: []}\n", 3, ["unknown key 'imagse'", "images"]),
    ("destination: d.example\njbos: 3\n", 2, ["unknown key 'jbos'", "jobs"]),
    ("destination: d.example\nr.example:\n  images-by-tag-regex:\n    a: '(unclosed'\n", 4,
     ["bad regular expression", "(unclosed"]),
    ("destination: d.example\nr.example:\n  images-by-semver:\n    a: '>= one'\n", 4, ["semver", "one"]),
    ("destination: d.example\nr.example:\n  images:\n    a: [1.10]\n", 4, ["quote"]),
    ("destination: d.example\nr.example:\n  images:\n    a: ['no good']\n", 4, ["neither a tag nor a digest"]),
    ("destination: d.example\nr.example:\n  tls-verify: yes please\n  images: {a: []}\n", 3, ["true or false"]),
    ("destination: d.example\nr.example:\n  platforms: [linux/amd64, 'not a platform!']\n  images: {a: []}\n", 3,
     ["platform"]),
    ("destination: d.example\nr.example:\n  tls-verify: false\n", 2, ["no images"]),
    ("destination: d.example\nr.example:\n  images: {a: []}\nr.example:\n  images: {b: []}\n", 4, ["duplicate"]),
    ("destination: 'Not A Registry'\nr.example:\n  images: {a: []}\n", 1, ["destination"]),
    ("destination: d.example\nr.example:\n  images: {a: [}\n", 3, ["invalid YAML"]),
    ("destination: d.example\ndefaults:\n  include: '['\nr.example:\n  images: {a: []}\n", 3,
     ["bad regular expression"]),
    ("- just\n- a list\n", 1, ["mapping"]),
])
def test_config_errors_name_file_and_line(tmp_path, text, line, words):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SyncConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: "), message
    assert "\n" not in message
    for word in words:
        assert word in message


def test_credentials_never_in_errors_or_reprs(tmp_path):
    path = _yaml(tmp_path, """\
        destination: d.example
        r.example:
          images: {a: []}
          credentials: {username: robot, password: hunter2-secret, token: x}
        """)
    with pytest.raises(SyncConfigError) as caught:
        load_config(path)
    assert "unknown key 'token'" in str(caught.value) and "hunter2" not in str(caught.value)
    config = SyncConfig.from_dict({"destination": "d.example", "r.example": {
        "images": {"a": []}, "credentials": {"username": "robot", "password": "hunter2-secret"}}})
    keychain = SyncKeychain({"r.example": config.registries[0].credentials})
    assert "hunter2" not in repr(config) + repr(keychain) + str(config)


def test_missing_destination_and_missing_file(tmp_path):
    config = SyncConfig.from_dict({"r.example": {"images": {"a": []}}})
    with pytest.raises(SyncConfigError, match="no destination"):
        mirror.sync(config)
    with pytest.raises(SyncConfigError, match="no such file"):
        load_config(tmp_path / "absent.yaml")
    with pytest.raises(SyncConfigError, match="empty"):
        load_config(_yaml(tmp_path, "\n"))


def test_keychain_gives_file_credentials_to_their_registry_only():
    class Fallback:
        def __init__(self):
            self.asked = []

        def resolve(self, target):
            self.asked.append(str(target))
            return Basic("fallback", "pw")

    fallback = Fallback()
    keychain = SyncKeychain({"r.example": Basic("robot", "secret")}, fallback)
    assert keychain.resolve("r.example").username == "robot"
    from ocitransport.name import Repository

    assert keychain.resolve(Repository("r.example/a/b")).username == "robot"
    assert keychain.resolve("other.example").username == "fallback"
    assert fallback.asked == ["other.example"]


# ------------------------------------------------------------------------------------------- runs

@pytest.fixture
def source(registry, make_repo_name):
    """A source repository with tags of every kind a sync file selects by."""
    repo = make_repo_name()
    tags = ["latest", "1.0.0", "1.2.0", "1.3.1", "2.0.0", "1.4.0-rc.1", "dev-a", "dev-b", "old"]
    images = {tag: raw.push_image(registry, repo, tag) for tag in tags}
    return repo, images


def _dest_tags(dst_registry, prefix, repo):
    return sorted(raw.list_tags(dst_registry, f"{prefix}/{repo.rsplit('/', 1)[-1]}"))


def test_sync_selects_by_tags_regex_semver_and_exclude(registry, dst_registry, source, make_repo_name):
    repo, images = source
    other = make_repo_name()
    for tag in ("a", "b"):
        raw.push_image(registry, other, tag)
    prefix = make_repo_name()
    config = {
        "destination": f"{dst_registry.host}/{prefix}",
        registry.host: {
            "images": {repo: ["old", images["latest"].digest], other: []},
            "images-by-tag-regex": {repo: "^dev-"},
            "images-by-semver": {repo: ">= 1.2, < 2"},
            "exclude": ["^dev-b$"],
        },
    }
    report = mirror.sync(config)
    assert report.ok, report.errors
    assert _dest_tags(dst_registry, prefix, repo) == ["1.2.0", "1.3.1", "dev-a", "old"]
    assert _dest_tags(dst_registry, prefix, other) == ["a", "b"]
    dst_repo = f"{prefix}/{repo.rsplit('/', 1)[-1]}"
    for tag in ("1.2.0", "old"):
        assert raw.get_manifest(dst_registry, dst_repo, tag).body == images[tag].manifest
    # The digest went over by digest (no tag), with its blobs.
    assert raw.get_manifest(dst_registry, dst_repo, images["latest"].digest).body == images["latest"].manifest
    assert report.images_copied == 7 and report.bytes_transferred > 0

    again = mirror.sync(config)
    assert again.ok and again.images_copied == 0 and again.images_skipped == 7
    assert again.blobs_transferred == 0


def test_dry_run_writes_nothing(registry, registry_factory, source):
    dst = registry_factory()
    repo, _ = source
    report = mirror.sync({"destination": dst.host, registry.host: {"images-by-semver": {repo: "^1"}}},
                         dry_run=True)
    assert report.ok and report.dry_run
    assert sorted(i.destination.rsplit(":", 1)[-1] for i in report.images) == ["1.0.0", "1.2.0", "1.3.1"]
    assert {i.status for i in report.images} == {"planned"}
    assert not any(dst.root.rglob("data"))  # no blob, no manifest stored


def test_planning_failures_are_reported_per_reference(registry, dst_registry, source, make_repo_name):
    repo, _ = source
    prefix = make_repo_name()
    config = {"destination": f"{dst_registry.host}/{prefix}", "keep-going": True,
              registry.host: {"images": {repo: ["old", "missing"], make_repo_name(): []}}}
    report = mirror.sync(config)
    assert not report.ok and report.images_copied == 1
    messages = " | ".join(f"{ref}: {msg}" for ref, msg in report.errors)
    assert "missing" in messages and "not found" in messages
    assert len(report.errors) == 2, messages


def test_two_sources_landing_on_one_destination_are_refused(registry, dst_registry, make_repo_name):
    a, b = f"{make_repo_name()}/app", f"{make_repo_name()}/app"
    raw.push_image(registry, a, "v1")
    raw.push_image(registry, b, "v1")
    prefix = make_repo_name()
    config = {"destination": f"{dst_registry.host}/{prefix}", "keep-going": True,
              registry.host: {"images": {a: ["v1"], b: ["v1"]}}}
    report = mirror.sync(config)
    assert report.images_copied == 1 and len(report.errors) == 1
    assert "both map to" in report.errors[0][1] and "scoped" in report.errors[0][1]
    report = mirror.sync({**config, "scoped": True})
    assert report.ok and report.images_copied == 2
    assert raw.list_tags(dst_registry, f"{prefix}/{registry.host.replace(':', '_')}/{b}") == ["v1"]


class RecordingClient(Client):
    """A Client remembering the ``Authorization`` header (or ``""``) of every request, by host."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.sent: list[tuple[str, str]] = []

    async def round_trip_async(self, request):
        host = request.url.split("://", 1)[1].split("/", 1)[0]
        self.sent.append((host, request.headers.get("Authorization") or ""))
        return await super().round_trip_async(request)


def test_file_credentials_reach_their_registry_and_nowhere_else(basic_registry, registry_factory, make_repo_name,
                                                                 tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))  # no other credentials anywhere
    repo = make_repo_name()
    image = raw.push_image(basic_registry, repo, "v1")
    dst = registry_factory(auth="basic")
    secret = base64.b64encode(f"{basic_registry.username}:{basic_registry.password}".encode()).decode()
    config = {"destination": dst.host, basic_registry.host: {
        "images": {repo: ["v1"]},
        "credentials": {"username": basic_registry.username, "password": basic_registry.password}}}

    with RecordingClient() as client:
        report = mirror.sync(config, client=client)
    # The source was read with the file's credentials; the destination never saw them (and, with no
    # credentials of its own, refused the push).
    assert any(host == basic_registry.host and auth == f"Basic {secret}" for host, auth in client.sent)
    assert not [auth for host, auth in client.sent if host != basic_registry.host and auth]
    assert not report.ok and "UNAUTHORIZED" in " ".join(m for _, m in report.errors)
    assert basic_registry.password not in report.to_json()

    # Other registries' credentials still come from the docker config (the fallback keychain).
    dst_auth = base64.b64encode(f"{dst.username}:{dst.password}".encode()).decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {dst.host: {"auth": dst_auth}}}))
    report = mirror.sync(config)
    assert report.ok, report.errors
    assert raw.get_manifest(dst, repo.rsplit("/", 1)[-1], "v1").body == image.manifest


def test_tls_settings_apply_to_their_registry(tls_registry, dst_registry, make_repo_name, tmp_path):
    repo = make_repo_name()
    image = raw.push_image(tls_registry, repo, "v1")
    certs = tmp_path / "certs"
    certs.mkdir()
    shutil.copy(tls_registry.ca_file, certs / "ca.crt")
    prefix = make_repo_name()
    base = {"destination": f"{dst_registry.host}/{prefix}"}
    # Without trust the source's certificate is refused...
    report = mirror.sync({**base, tls_registry.host: {"images": {repo: ["v1"]}}})
    assert not report.ok and report.images_copied == 0
    # ...with its CA in cert-dir it is verified, and with tls-verify: false it is not checked.
    report = mirror.sync({**base, tls_registry.host: {"images": {repo: ["v1"]}, "cert-dir": str(certs)}})
    assert report.ok, report.errors
    dst_repo = f"{prefix}/{repo.rsplit('/', 1)[-1]}"
    assert raw.get_manifest(dst_registry, dst_repo, "v1").body == image.manifest
    report = mirror.sync({"destination": f"{dst_registry.host}/{make_repo_name()}",
                          tls_registry.host: {"images": {repo: ["v1"]}, "tls-verify": False}})
    assert report.ok and report.images_copied == 1, report.errors


class PlanRecorder:
    """A :class:`PlanExecutor` that runs the plan with ``mirror.execute`` and keeps what it was given."""

    def __init__(self):
        self.calls: list[tuple[Plan, dict]] = []

    def execute(self, plan, *, jobs, retries, keep_going, include_nondistributable, progress) -> Report:
        self.calls.append((plan, {"jobs": jobs, "retries": retries, "keep_going": keep_going}))
        return mirror.execute(plan.units, jobs=jobs, retries=retries, keep_going=keep_going,
                              include_nondistributable=include_nondistributable, progress=progress)


def test_plan_goes_to_the_given_executor(registry, dst_registry, source, make_repo_name):
    repo, _ = source
    recorder = PlanRecorder()
    assert isinstance(recorder, PlanExecutor)
    prefix = make_repo_name()
    report = mirror.sync({"destination": f"{dst_registry.host}/{prefix}", "jobs": 3, "retries": 1,
                          registry.host: {"images": {repo: ["old", "latest"]}}}, executor=recorder)
    assert report.ok and report.images_copied == 2
    ((plan, options),) = recorder.calls
    assert sorted(u.source.rsplit(":", 1)[-1] for u in plan.units) == ["latest", "old"]
    assert options == {"jobs": 3, "retries": 1, "keep_going": False}
    assert _dest_tags(dst_registry, prefix, repo) == ["latest", "old"]


def test_rich_progress_draws_images_and_bytes(registry, dst_registry, make_repo_name):
    rich = pytest.importorskip("rich.console")
    from ocitransport.cli import RichProgress

    repo = make_repo_name()
    for tag in ("a", "b", "c"):
        raw.push_image(registry, repo, tag, layers=[bytes(300_000)])  # same layer: one transfer, then mounts
    out = io.StringIO()
    console = rich.Console(file=out, force_terminal=True, width=120, color_system=None)
    progress = RichProgress(console=console)
    try:
        report = mirror.sync({"destination": f"{dst_registry.host}/{make_repo_name()}",
                              registry.host: {"images": {repo: []}}}, progress=progress)
    finally:
        progress.close()
    progress.finish(report)
    text = out.getvalue()
    assert report.ok and report.images_copied == 3
    assert "3/3" in text and "images" in text
    assert "MiB" in text and "kB" not in text  # the bytes counter and rate, in one unit system
    assert "summary" in text and "transferred" in text
