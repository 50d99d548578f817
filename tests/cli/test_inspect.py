"""``ls``, ``catalog``, ``digest``, ``manifest``, ``config``, ``inspect``, ``blob``, ``tag`` and ``delete``
against real registries (open and Bearer), through the command line and from Python."""

from __future__ import annotations

import json

import pytest

from ocitransport.cli import main
from ocitransport.client import Client
from ocitransport.inspect import Registry
from tests.servers import raw


@pytest.fixture(params=["registry", "bearer_registry"])
def any_registry(request, env):
    server = request.getfixturevalue(request.param)
    if server.auth == "bearer":
        import base64

        auth = base64.b64encode(f"{server.username}:{server.password}".encode()).decode()
        env.docker({"auths": {server.host: {"auth": auth}}})
    return server


def test_read_commands(any_registry, make_repo_name, capsysbinary):
    reg, repo = any_registry, make_repo_name()
    a = raw.push_image(reg, repo, "a")
    raw.push_image(reg, repo, "b")
    arm = raw.push_image(reg, repo, "arm", config=b'{"architecture":"arm64","os":"linux","config":'
                                                  b'{"Labels":{"k":"v"},"Env":["A=1"]}}')
    index = raw.push_index(reg, repo, "multi", [a, arm], platforms=[
        {"os": "linux", "architecture": "amd64"}, {"os": "linux", "architecture": "arm64"}])

    def run(*argv: str) -> bytes:
        assert main(list(argv)) == 0, capsysbinary.readouterr().err
        return capsysbinary.readouterr().out

    assert sorted(run("ls", f"{reg.host}/{repo}").decode().split()) == sorted(["a", "arm", "b", "multi"])
    assert repo in run("catalog", reg.host).decode().split()
    assert run("digest", a.reference).decode().strip() == a.digest
    assert run("digest", f"{reg.host}/{repo}:multi").decode().strip() == index
    assert run("manifest", a.reference) == a.manifest
    assert run("manifest", "--platform", "linux/arm64", f"{reg.host}/{repo}:multi") == arm.manifest
    assert run("config", a.reference) == a.config
    summary = json.loads(run("inspect", "--json", "--platform", "linux/arm64", f"{reg.host}/{repo}:multi"))
    assert summary["Digest"] == index and summary["Architecture"] == "arm64"
    assert summary["Labels"] == {"k": "v"} and summary["Env"] == ["A=1"]
    assert summary["Layers"] == arm.layer_digests and "multi" in summary["RepoTags"]
    text = run("inspect", a.reference).decode()
    assert "Digest:" in text and a.digest in text and a.layer_digests[0] in text
    assert run("blob", f"{reg.host}/{repo}@{a.layer_digests[0]}") == a.layers[0]


def test_blob_to_file_tag_and_delete(any_registry, make_repo_name, tmp_path, capsys):
    reg, repo = any_registry, make_repo_name()
    image = raw.push_image(reg, repo, "v1")
    out = tmp_path / "layer"
    assert main(["blob", "-o", str(out), f"{reg.host}/{repo}@{image.layer_digests[0]}"]) == 0
    assert out.read_bytes() == image.layers[0]
    assert main(["tag", image.reference, "v2"]) == 0
    assert raw.get_manifest(reg, repo, "v2").body == image.manifest
    assert main(["delete", f"{reg.host}/{repo}:v2"]) == 0
    assert raw.list_tags(reg, repo) == []
    capsys.readouterr()
    assert main(["manifest", image.reference]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ocitransport: error:") and "MANIFEST_UNKNOWN" in err and "Traceback" not in err


def test_blob_with_wrong_digest_leaves_no_file(registry, make_repo_name, tmp_path, capsys):
    repo = make_repo_name()
    image = raw.push_image(registry, repo, "v1")
    out = tmp_path / "layer"
    missing = "sha256:" + "0" * 64
    assert main(["blob", "-o", str(out), f"{registry.host}/{repo}@{missing}"]) == 1
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert "BLOB_UNKNOWN" in capsys.readouterr().err
    del image


def test_python_api(registry, make_repo_name):
    repo = make_repo_name()
    image = raw.push_image(registry, repo, "v1")
    with Client() as client:
        reg = Registry(client)
        assert reg.list_tags(f"{registry.host}/{repo}") == ["v1"]
        body, media_type, digest = reg.manifest(image.reference)
        assert (body, digest) == (image.manifest, image.digest) and media_type == image.media_type


def test_tag_moves_no_blob(registry, proxy_factory, make_repo_name):
    proxy = proxy_factory(registry)
    repo = make_repo_name()
    image = raw.push_image(registry, repo, "v1", layers=[b"layer" * 1000])
    assert main(["tag", f"{proxy.host}/{repo}:v1", "v1.0"]) == 0
    assert raw.get_manifest(registry, repo, "v1.0").body == image.manifest
    paths = [(r[0], r[1]) for r in proxy.records]
    assert ("PUT", f"/v2/{repo}/manifests/v1.0") in paths
    assert not any("/blobs/" in path for _, path in paths)
