"""``--jobs auto`` and the connection counts of the report, on real registries (TLS, HTTP/2 offered)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ocitransport import cli
from ocitransport.client import Client
from ocitransport.mirror import mirror_repository
from tests.servers import raw
from tests.servers.registry import RegistryServer


def _pair(registry_factory: Callable[..., RegistryServer], tmp_path: Path,
          http2: bool = True) -> tuple[RegistryServer, RegistryServer, str]:
    src = registry_factory(tls_enabled=True, http2=http2)
    dst = registry_factory(tls_enabled=True, http2=http2)
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(Path(str(src.ca_file)).read_bytes() + Path(str(dst.ca_file)).read_bytes())
    for i in range(6):
        raw.push_image(src, "conn/app", f"v{i}", layers=[bytes([i]) * 2048, bytes([i, 1]) * 1024])
    return src, dst, str(bundle)


@pytest.mark.parametrize("http2", [True, False])
def test_connections_and_handshakes_are_counted_and_reused(
        registry_factory: Callable[..., RegistryServer], tmp_path: Path, http2: bool) -> None:
    src, dst, bundle = _pair(registry_factory, tmp_path, http2)
    with Client(verify=bundle) as client:
        report = mirror_repository(f"{src.host}/conn/app", f"{dst.host}/conn/app", client=client, jobs=4)
        assert report.ok, report.errors
        assert report.concurrency == "4"
        counts = report.connections
        assert set(counts) == {src.host, dst.host}
        for host in (src.host, dst.host):
            c = counts[host]
            # Every connection is a TLS one; over HTTP/1.1 a run opens at most its requests' concurrency
            # per registry (the Client's 16 per host here: 4 images of 3 blobs each, and their checks),
            # and one when HTTP/2 multiplexes them all.
            assert c["tls_handshakes"] == c["connections"] >= 1
            assert c["connections"] <= (1 if http2 else 16), (host, c)
        assert f"{src.host} 1 (1 TLS)" in report.summary() if http2 else "new connections: " in report.summary()
        # The same Client again: the pooled connections are reused. Over HTTP/2 none is opened; over HTTP/1.1
        # the no-op run's HEADs may go out more at once than the first run's requests did, so it may open
        # more, but never past the per-host bound across both runs.
        again = mirror_repository(f"{src.host}/conn/app", f"{dst.host}/conn/app", client=client, jobs=4)
        assert again.ok and again.images_skipped == 6
        if http2:
            assert again.connections == {}
        for host, c in again.connections.items():
            assert c["connections"] + counts[host]["connections"] <= 16, (host, c, counts[host])


def test_auto_is_the_default_and_says_what_it_chose(
        registry_factory: Callable[..., RegistryServer], tmp_path: Path) -> None:
    src, dst, bundle = _pair(registry_factory, tmp_path)
    with Client(verify=bundle) as client:
        report = mirror_repository(f"{src.host}/conn/app", f"{dst.host}/conn/app", client=client)
    assert report.ok, report.errors
    assert report.concurrency.startswith("auto: ") and report.concurrency.endswith("ceiling 64)")
    assert report.to_dict()["concurrency"] == report.concurrency


def test_jobs_must_be_a_number_or_auto() -> None:
    with pytest.raises(ValueError, match='jobs must be a number greater than zero or "auto"'):
        mirror_repository("127.0.0.1:1/a/b", "127.0.0.1:1/a/c", jobs="many")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="jobs must be greater than zero"):
        mirror_repository("127.0.0.1:1/a/b", "127.0.0.1:1/a/c", jobs=0)


def test_cli_jobs_takes_a_number_or_auto(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["mirror", "--jobs", "lots", "127.0.0.1:1/a/b", "127.0.0.1:1/a/c"])
    assert exc.value.code == 2
    assert "must be a whole number or auto, not 'lots'" in capsys.readouterr().err
