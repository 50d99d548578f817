"""The adapters' own API: argument mapping, shared clients, install/uninstall, close and pickling."""

from __future__ import annotations

import pickle

import httpx
import pytest
import requests
import urllib3

from ocitransport import Client, Timeout
from ocitransport.adapters import httpx as ahttpx
from ocitransport.adapters import requests as arequests
from tests.servers.faults import pattern


def test_requests_timeout_mapping() -> None:
    assert arequests.map_timeout(None) == Timeout(connect=None, total=None, stall=None, pool=None, min_rate=None)
    assert arequests.map_timeout(2.5) == Timeout(connect=2.5, total=None, stall=2.5, pool=None, min_rate=None)
    assert arequests.map_timeout((1, 7)) == Timeout(connect=1, total=None, stall=7, pool=None, min_rate=None)
    assert arequests.map_timeout(urllib3.Timeout(connect=3, read=4)) == Timeout(
        connect=3, total=None, stall=4, pool=None, min_rate=None)
    assert arequests.map_timeout((1, 7)) is arequests.map_timeout((1, 7))  # one object per setting
    with pytest.raises(ValueError, match="Invalid timeout"):
        arequests.map_timeout((1, 2, 3))


def test_httpx_timeout_mapping() -> None:
    ext = {"timeout": {"connect": 1.0, "read": 2.0, "write": 3.0, "pool": 4.0}}
    assert ahttpx.map_timeout(ext) == Timeout(connect=1.0, total=None, stall=2.0, pool=4.0, min_rate=None)
    ext = {"timeout": {"connect": None, "read": None, "write": 3.0, "pool": None}}
    assert ahttpx.map_timeout(ext).stall == 3.0
    assert ahttpx.map_timeout({}) == Timeout(connect=None, total=None, stall=None, pool=None, min_rate=None)


def test_shared_client_is_used_and_left_open(fault_server) -> None:
    with Client(follow_redirects=False) as shared:
        adapter = arequests.RequestsAdapter(client=shared)
        assert adapter.client_for(True, None, "") is shared
        s = requests.Session()
        s.mount("http://", adapter)
        assert s.get(fault_server.url_for("/bytes?n=7")).content == pattern(7)
        s.close()  # closes the adapter, not the shared client
        assert not shared.closed
        transport = ahttpx.HTTPXTransport(client=shared)
        with httpx.Client(transport=transport) as client:
            assert client.get(fault_server.url_for("/bytes?n=5")).content == pattern(5)
        assert not shared.closed


def test_requests_adapter_usable_after_close(fault_server) -> None:
    adapter = arequests.RequestsAdapter()
    s = requests.Session()
    s.mount("http://", adapter)
    assert s.get(fault_server.url_for("/bytes?n=3")).status_code == 200
    adapter.close()
    adapter.close()
    assert s.get(fault_server.url_for("/bytes?n=3")).status_code == 200  # like HTTPAdapter after close
    adapter.close()


def test_installed_mounts_everywhere_and_restores(fault_server) -> None:
    original = requests.Session.get_adapter
    with arequests.installed() as adapter:
        assert requests.Session().get_adapter("http://x/") is adapter
        r = requests.get(fault_server.url_for("/bytes?n=4"))
        assert r.connection is adapter
        assert r.content == pattern(4)
    assert requests.Session.get_adapter is original


def test_pickles_its_settings_not_its_clients(fault_server) -> None:
    """As stock's HTTPAdapter (which pickles its settings and re-creates its pools)."""
    adapter = arequests.RequestsAdapter(max_connections=3, retry=False)
    with requests.Session() as s:
        s.mount("http://", adapter)
        s.get(fault_server.url_for("/bytes?n=4"))
    copy = pickle.loads(pickle.dumps(adapter))
    assert copy._config == {**adapter._config} and copy._clients == {}
    assert copy.client_for()._engine is not adapter.client_for()._engine
    copy.close()
    adapter.close()
