"""Ctrl-C: one line saying what was finished and that a rerun completes the job, exit status 130, no
traceback; the rerun does complete it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from tests.cli.conftest import SRC, run_cli
from tests.servers import raw


def test_ctrl_c_says_what_finished_and_a_rerun_completes(registry, registry_factory, make_repo_name):
    dst = registry_factory()
    repo = make_repo_name()
    tags = [f"t{n}" for n in range(6)]
    for tag in tags:
        raw.push_image(registry, repo, tag, layers=[os.urandom(8 << 20)])
    argv = ["mirror", "--jobs", "1", f"{registry.host}/{repo}", f"{dst.host}/{repo}"]
    env = dict(os.environ, PYTHONPATH=SRC)
    proc = subprocess.Popen([sys.executable, "-m", "ocitransport", *argv], stderr=subprocess.PIPE, text=True,
                            env=env)
    assert proc.stderr is not None
    first = proc.stderr.readline()  # one image done: interrupt the rest
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=60)
    err = first + rest
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "aclose" not in err and "RuntimeError" not in err
    [line] = [x for x in err.splitlines() if "interrupted" in x]
    assert "of 6 images finished" in line and "run the same command again to complete the job" in line
    again = run_cli(*argv)
    assert again.returncode == 0, again.stderr
    assert sorted(raw.list_tags(dst, repo)) == tags
