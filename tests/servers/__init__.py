"""Real servers on loopback for the tests, and the pytest fixtures that start them.

- ``registry``: :class:`~tests.servers.registry.RegistryServer`, Debian's ``docker-registry`` (open, Basic,
  Bearer, TLS, mTLS), also ``python -m tests.servers.registry``;
- ``token_server``: :class:`~tests.servers.token_server.TokenServer`, our distribution token server;
- ``faults``: :class:`~tests.servers.faults.FaultServer`, a misbehaving HTTP/1.1 server;
- ``nginx``: :class:`~tests.servers.nginx.NginxServer`, static files at almost no cost per request;
- ``proxy``: :class:`~tests.servers.proxy.FaultProxy`, a seeded fault-injecting proxy in front of a registry;
- ``raw``: push and read registry content with ``http.client`` (independent of ocitransport);
- ``credentials``: a test's own docker config, auth files and credential helper (the ``env`` fixture);
- ``fixtures``: the pytest fixtures (loaded through ``pytest_plugins`` in tests/conftest.py);
- ``process``, ``tls``: free ports, child processes, trustme certificates.
"""
