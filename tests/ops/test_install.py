"""`cmake --install` of this build: into a temporary prefix (every program,
unit and file; the units name the installed programs and pass
`systemd-analyze verify`; supervisord.conf finds what it starts), and with
DESTDIR (everything under it, no DESTDIR path in any installed file)."""
import os
import shutil
import subprocess
import tempfile

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("MAP_BUILD_DIR", os.path.join(ROOT, "build"))

PROGRAMS = ["map-broker", "map-tap", "map-keygen", "map-echo", "map-fanout", "map-bridge",
            "map-orchestrator", "map-ingress", "map-admin"]
UNITS = ["map-broker.service", "map-orchestrator.service", "map-ingress.service",
         "map-bridge.service", "map-demo.service", "map-echo@.service", "map-fanout.service",
         "map-register-demo.service", "map.target"]
SHARE = ["supervisord.conf", "map.env.example", "agents/demo/demo_agent.py",
         "scripts/register-demo.sh", "agents/python/mapagent/__init__.py",
         "agents/python/mapagent/agent.py", "agents/python/mapagent/link.py",
         "agents/python/examples/py_echo.py"]
# What systemd-analyze verify loads: every unit, the template through an instance.
VERIFY = [u.replace("@.", "@1.") for u in UNITS]


def install(prefix, destdir=None):
    env = dict(os.environ)
    env.pop("DESTDIR", None)
    if destdir:
        env["DESTDIR"] = destdir
    r = subprocess.run(["cmake", "--install", BUILD, "--prefix", prefix], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def files_under(top):
    out = set()
    for d, _, names in os.walk(top):
        for n in names:
            out.add(os.path.relpath(os.path.join(d, n), top))
    return out


def exec_starts(unit_dir):
    """unit -> the program path of its ExecStart (the interpreter's script for python3)."""
    found = {}
    for u in UNITS:
        with open(os.path.join(unit_dir, u)) as f:
            for line in f:
                if line.startswith("ExecStart="):
                    argv = line.strip().split("=", 1)[1].split()
                    found[u] = argv[1] if argv[0] == "/usr/bin/python3" else argv[0]
    return found


def verify(unit_dir, root=None):
    args = ["systemd-analyze", "verify", "--man=no"]
    if root:
        args.append("--root=" + root)
    return subprocess.run(args + VERIFY, cwd=unit_dir, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture
def tmp():
    d = tempfile.mkdtemp(prefix="map-install-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_prefix_install_has_everything_and_units_verify(tmp):
    prefix = os.path.join(tmp, "prefix")
    install(prefix)
    have = files_under(prefix)
    want = {"bin/" + p for p in PROGRAMS} | {"lib/systemd/system/" + u for u in UNITS} | \
           {"share/map/" + s for s in SHARE}
    assert want <= have, sorted(want - have)
    for p in PROGRAMS:
        path = os.path.join(prefix, "bin", p)
        assert os.access(path, os.X_OK), path
        r = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=20)
        assert r.returncode == 0 and r.stdout.strip(), (p, r.stdout, r.stderr)
    assert os.access(os.path.join(prefix, "share/map/scripts/register-demo.sh"), os.X_OK)
    # Every ExecStart names what this install put there.
    unit_dir = os.path.join(prefix, "lib/systemd/system")
    starts = exec_starts(unit_dir)
    assert set(starts) == set(UNITS) - {"map.target"}, starts
    for u, path in starts.items():
        assert path.startswith(prefix + "/"), (u, path)
        assert os.path.isfile(path), (u, path)
    assert starts["map-broker.service"] == os.path.join(prefix, "bin/map-broker")
    assert starts["map-demo.service"] == os.path.join(prefix, "share/map/agents/demo/demo_agent.py")
    r = verify(unit_dir)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr
    # The same check fails when a program is missing: it looks at them.
    os.rename(os.path.join(prefix, "bin/map-echo"), os.path.join(tmp, "map-echo"))
    r = verify(unit_dir)
    assert r.returncode != 0 and "map-echo" in r.stderr and "not executable" in r.stderr, r.stderr
    # supervisord.conf with MAP_HOME at share/map and MAP_BIN at bin finds
    # every command it starts.
    with open(os.path.join(prefix, "share/map/supervisord.conf")) as f:
        conf = f.read()
    for line in conf.splitlines():
        if line.startswith("command="):
            cmd = line.split("=", 1)[1].replace("%(ENV_MAP_HOME)s", os.path.join(prefix, "share/map"))
            cmd = cmd.replace("%(ENV_MAP_BIN)s", os.path.join(prefix, "bin"))
            path = cmd.split()[1] if cmd.startswith("/usr/bin/python3") else cmd.split()[0]
            if path.endswith("map-echo"):
                continue  # moved away above
            assert os.path.isfile(path), line


def test_destdir_install_stays_under_destdir(tmp):
    dest = os.path.join(tmp, "root")
    out = install("/opt/map", destdir=dest)
    assert "Installing: %s/opt/map/bin/map-admin" % dest in out, out
    have = files_under(dest)
    assert all(f.startswith("opt/map/") for f in have), sorted(have)
    want = {"opt/map/bin/" + p for p in PROGRAMS} | \
           {"opt/map/lib/systemd/system/" + u for u in UNITS} | \
           {"opt/map/share/map/" + s for s in SHARE}
    assert want <= have, sorted(want - have)
    unit_dir = os.path.join(dest, "opt/map/lib/systemd/system")
    starts = exec_starts(unit_dir)
    assert starts["map-orchestrator.service"] == "/opt/map/bin/map-orchestrator", starts
    assert starts["map-register-demo.service"] == "/opt/map/share/map/scripts/register-demo.sh"
    for f in have:
        with open(os.path.join(dest, f), "rb") as fh:
            assert dest.encode() not in fh.read(), f
