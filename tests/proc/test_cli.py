"""SPEC §1: every process accepts --help, and prints one clear line and
exits non-zero on a bad flag, an invalid endpoint or an unusable database."""
import os
import socket
import subprocess
import tempfile

import pytest

from mapclient import binary, free_port, wait_until

PROGRAMS = ["map-broker", "map-echo", "map-orchestrator", "map-tap"]


def run(*args, timeout=10):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout,
                          env={k: v for k, v in os.environ.items() if not k.startswith("MAP_")})


@pytest.mark.parametrize("prog", PROGRAMS)
def test_help_and_bad_flags(prog):
    r = run(binary(prog), "--help")
    assert r.returncode == 0 and ("--log-level" in r.stdout or "--tap" in r.stdout)
    r = run(binary(prog), "--no-such-flag")
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--no-such-flag" in lines[0]


def test_bad_values_are_one_line():
    for args in (("map-broker", "--heartbeat-ms", "0"), ("map-broker", "--liveness", "x"),
                 ("map-orchestrator", "--durability", "sometimes"),
                 ("map-orchestrator", "--log-level", "loud"), ("map-echo", "--delay-ms", "-1")):
        r = run(binary(args[0]), *args[1:])
        assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1, (args, r.stderr)


def test_broker_refuses_a_bad_or_taken_endpoint():
    r = run(binary("map-broker"), "--endpoint", "nonsense://x", "--tap", "")
    assert r.returncode != 0 and "nonsense://x" in r.stderr
    port = free_port()
    first = subprocess.Popen([binary("map-broker"), "--endpoint", "tcp://127.0.0.1:%d" % port,
                              "--tap", ""], stderr=subprocess.DEVNULL)
    try:
        def bound():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_until(bound, what="the first broker to bind")
        r = run(binary("map-broker"), "--endpoint", "tcp://127.0.0.1:%d" % port, "--tap", "")
        assert r.returncode != 0 and "Address already in use" in r.stderr
    finally:
        first.kill()
        first.wait()


def test_workers_refuse_a_bad_endpoint():
    for prog in ("map-echo", "map-orchestrator"):
        extra = ("--db", os.path.join(tempfile.mkdtemp(), "m.db")) if prog == "map-orchestrator" else ()
        r = run(binary(prog), "--broker", "nowhere", *extra)
        assert r.returncode != 0 and "nowhere" in r.stderr, (prog, r.stderr)


def test_orchestrator_refuses_unusable_databases():
    d = tempfile.mkdtemp()
    ep = ("--broker", "tcp://127.0.0.1:%d" % free_port())
    # A directory, a path under a missing directory, a corrupt file.
    r = run(binary("map-orchestrator"), "--db", d, *ep)
    assert r.returncode != 0 and d in r.stderr and "directory" in r.stderr
    missing = os.path.join(d, "no", "such", "x.db")
    r = run(binary("map-orchestrator"), "--db", missing, *ep)
    assert r.returncode != 0 and missing in r.stderr
    corrupt = os.path.join(d, "corrupt.db")
    with open(corrupt, "wb") as f:
        f.write(b"definitely not sqlite " * 1000)
    r = run(binary("map-orchestrator"), "--db", corrupt, *ep)
    assert r.returncode != 0 and corrupt in r.stderr and "not a database" in r.stderr
    with open(corrupt, "rb") as f:
        assert f.read() == b"definitely not sqlite " * 1000  # left as it was
    # A read-only file (immutable: even root cannot write it).
    ro = os.path.join(d, "ro.db")
    open(ro, "wb").close()
    if subprocess.run(["chattr", "+i", ro], capture_output=True).returncode != 0:
        pytest.fail("chattr +i is not supported here: cannot make a read-only file as root")
    try:
        r = run(binary("map-orchestrator"), "--db", ro, *ep)
        assert r.returncode != 0 and ro in r.stderr and "read-only" in r.stderr
    finally:
        subprocess.run(["chattr", "-i", ro])
