"""The Debian package: built by `cpack -G DEB` in a Release sub-build of this
source tree (programs only; reused between runs), its control fields (the
dependencies are exactly the Debian packages of the libraries the programs
link, plus curl), its contents (`dpkg-deb -c`), and a real `dpkg -i` into a
temporary root, where the installed units pass `systemd-analyze verify
--root` and the installed programs run; then `dpkg -r` takes it all away.

Installing into an empty root needs two forces, and only these: the
dependencies are on this host, not in that root (--force-depends), and the
root has no shell to chroot the maintainer scripts into
(--force-script-chrootless; dpkg sets DPKG_ROOT and the scripts do nothing
then). For verify, the root gets what the package depends on for units:
systemd's own units (a copy of this host's) and python3 for the demo agent."""
import glob
import json
import os
import re
import shutil
import subprocess
import tempfile

import pytest

from mapclient import REPLY, Orch, Procs, free_port, wait_until
from test_install import PROGRAMS, SHARE, UNITS, VERIFY, exec_starts

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("MAP_BUILD_DIR", os.path.join(ROOT, "build"))
SUB = os.path.join(BUILD, "pkg-release")
# The libraries a reader of the issue expects, each the Debian package of a
# .so the programs link (libmsgpackc is not among them: proto/mp.c reads
# msgpack itself and no program calls libmsgpack, so the linker drops it).
EXPECTED = {"libzmq5", "libczmq4", "libsqlite3-0", "libwebsockets17", "libjansson4", "libcurl4",
            "libc6", "curl"}


def run(args, timeout=600, **kw):
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)
    assert r.returncode == 0, "%s\n%s\n%s" % (args, r.stdout[-3000:], r.stderr[-3000:])
    return r.stdout


@pytest.fixture(scope="module")
def deb():
    env = dict(os.environ, CC="gcc")
    run(["cmake", "-S", ROOT, "-B", SUB, "-DCMAKE_BUILD_TYPE=Release",
         "-DCMAKE_SKIP_INSTALL_ALL_DEPENDENCY=ON"], env=env)
    run(["cmake", "--build", SUB, "-j2", "--target"] + PROGRAMS, env=env)
    out = os.path.join(SUB, "out")
    shutil.rmtree(out, ignore_errors=True)
    run(["cpack", "-G", "DEB", "-B", out], cwd=SUB)
    debs = glob.glob(os.path.join(out, "map_*.deb"))
    assert len(debs) == 1, debs
    yield debs[0]


def field(deb, name):
    return run(["dpkg-deb", "-f", deb, name]).strip()


def needed_packages(binary):
    """Debian packages of the shared libraries the binary names (DT_NEEDED)."""
    dyn = run(["objdump", "-p", binary])
    libs = re.findall(r"^\s+NEEDED\s+(\S+)$", dyn, re.M)
    paths = {}
    for line in run(["ldd", binary]).splitlines():
        m = re.match(r"\s*(\S+) => (\S+)", line)
        if m:
            paths[m.group(1)] = m.group(2)
    pkgs = set()
    for lib in libs:
        pkgs.add(s_owner(paths[lib]))
    return pkgs


def s_owner(path):
    """The package that ships a library; dpkg knows a file by the path its
    package lists, which on a merged /usr may be /lib/... or /usr/lib/..."""
    real = os.path.realpath(path)
    tries = [path, real]
    for p in (path, real):
        tries.append(p[4:] if p.startswith("/usr/") else "/usr" + p)
    for p in tries:
        r = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True, timeout=30)
        if r.returncode == 0:
            return r.stdout.split(":")[0]
    raise AssertionError("no package ships %s" % path)


def test_control_and_contents(deb):
    assert os.path.basename(deb) == "map_0.1.0_%s.deb" % run(["dpkg", "--print-architecture"]).strip()
    assert field(deb, "Package") == "map"
    depends = {d.strip().split(" ")[0] for d in field(deb, "Depends").split(",")}
    assert EXPECTED <= depends, depends
    # Exactly what the programs link, curl for register-demo.sh and the lws
    # libuv plugin the ingress loads at run time.
    extract = tempfile.mkdtemp(prefix="map-deb-x-")
    try:
        run(["dpkg-deb", "-x", deb, extract])
        linked = set()
        for p in PROGRAMS:
            linked |= needed_packages(os.path.join(extract, "usr/bin", p))
        assert depends == linked | {"curl", "libwebsockets-evlib-uv"}, (depends, linked)
        assert not any("asan" in p or "ubsan" in p for p in linked), linked  # a Release build
    finally:
        shutil.rmtree(extract, ignore_errors=True)
    # Every dependency is a real package (installed here, where it was built).
    for d in depends:
        run(["dpkg-query", "-W", d])
    assert "python3-fastapi" in field(deb, "Recommends")
    listing = run(["dpkg-deb", "-c", deb])
    names = {line.split()[-1] for line in listing.splitlines()}
    want = {"./usr/bin/" + p for p in PROGRAMS} | {"./usr/lib/systemd/system/" + u for u in UNITS} | \
           {"./usr/share/map/" + s for s in SHARE}
    assert want <= names, sorted(want - names)
    for line in listing.splitlines():
        if line.split()[-1] in {"./usr/bin/" + p for p in PROGRAMS}:
            assert line.startswith("-rwxr-xr-x root/root"), line
    scripts = run(["dpkg-deb", "-I", deb])
    for s in ("postinst", "prerm", "postrm"):
        assert s in scripts, scripts


def test_dpkg_install_into_a_root(deb):
    root = tempfile.mkdtemp(prefix="map-deb-root-")
    try:
        for d in ("var/lib/dpkg/info", "var/lib/dpkg/updates", "var/log"):
            os.makedirs(os.path.join(root, d))
        open(os.path.join(root, "var/lib/dpkg/status"), "w").close()
        dpkg = ["dpkg", "--root=" + root, "--log=/dev/null"]
        run(dpkg + ["--force-depends", "--force-script-chrootless", "-i", deb])
        assert "Status: install ok installed" in run(dpkg + ["-s", "map"])
        for p in PROGRAMS:
            path = os.path.join(root, "usr/bin", p)
            assert os.access(path, os.X_OK), path
        # The installed programs run against this host's libraries.
        assert "backup" in run([os.path.join(root, "usr/bin/map-admin"), "--help"])
        r = subprocess.run([os.path.join(root, "usr/bin/map-orchestrator"), "--retention", "1y"],
                           capture_output=True, text=True, timeout=20)
        assert r.returncode == 2 and "--retention" in r.stderr, r.stderr
        unit_dir = os.path.join(root, "usr/lib/systemd/system")
        starts = exec_starts(unit_dir)
        assert starts["map-broker.service"] == "/usr/bin/map-broker", starts
        assert starts["map-demo.service"] == "/usr/share/map/agents/demo/demo_agent.py"
        with open(os.path.join(unit_dir, "map-orchestrator.service")) as f:
            orch = f.read()
        assert "DynamicUser=yes" in orch and "StateDirectory=map" in orch
        assert "Environment=MAP_DB=/var/lib/map/map.db" in orch
        # What the units need from the system, then verify inside the root.
        os.makedirs(os.path.join(root, "lib/systemd"))
        shutil.copytree("/usr/lib/systemd/system", os.path.join(root, "lib/systemd/system"),
                        symlinks=True)
        shutil.copy2("/usr/bin/python3", os.path.join(root, "usr/bin/python3"))
        from test_install import verify
        r = verify(unit_dir, root=root)
        assert r.returncode == 0 and r.stderr.strip() == "", r.stderr
        # The packaged programs serve: broker, orchestrator and an echo
        # worker from the root, one run through them.
        serve_one_run(os.path.join(root, "usr/bin"))
        # Removal takes every file of the package away.
        run(dpkg + ["--force-depends", "--force-script-chrootless", "-r", "map"])
        for p in PROGRAMS:
            assert not os.path.exists(os.path.join(root, "usr/bin", p)), p
        for u in UNITS:
            assert not os.path.exists(os.path.join(unit_dir, u)), u
    finally:
        shutil.rmtree(root, ignore_errors=True)


def serve_one_run(bindir):
    procs = Procs()
    try:
        ep = "tcp://127.0.0.1:%d" % free_port()
        tap = "tcp://127.0.0.1:%d" % free_port()
        db = os.path.join(procs.dir, "map.db")
        procs.start_argv([os.path.join(bindir, "map-broker"), "--endpoint", ep, "--tap", tap,
                          "--heartbeat-ms", 200])
        procs.start_argv([os.path.join(bindir, "map-orchestrator"), "--broker", ep, "--db", db,
                          "--heartbeat-ms", 200, "--retention", "30d"])
        procs.start_argv([os.path.join(bindir, "map-echo"), "--broker", ep, "--heartbeat-ms", 200])
        c = Orch(ep)

        def echo_ready():
            kind, body = c.wait_final(c.call("agents"))[-1]
            return kind == REPLY and any(a["agent_id"] == "echo" and a["workers"] >= 1
                                         for a in json.loads(body["json"])["agents"])
        wait_until(echo_ready, timeout=20, step=0.1, what="the packaged echo worker")
        rid = c.call("invoke", session_id="pkg", agent_id="echo", role="user",
                     content="from the package", follow=True)
        status, run = c.reply(rid)
        assert status == 200 and run["status"] == "done", run
        events = c.events(rid)
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert events[-1]["type"] == "run_done"
        c.peer.close()
        r = subprocess.run([os.path.join(bindir, "map-admin"), "check", "--db", db],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "is ok" in r.stdout, r.stderr
    finally:
        procs.stop_all()


def test_a_package_of_a_sanitizer_or_debug_build_is_refused():
    """cpack in this build (the ASan Debug one under ./scripts/test.sh) stops
    with one sentence instead of packaging sanitizer binaries."""
    with open(os.path.join(BUILD, "CMakeCache.txt")) as f:
        cache = dict(re.findall(r"^(CMAKE_BUILD_TYPE|SANITIZE|FUZZ):\w+=(.*)$", f.read(), re.M))
    if cache.get("CMAKE_BUILD_TYPE") == "Release" and cache.get("SANITIZE") != "ON" and \
            cache.get("FUZZ") != "ON":
        pytest.skip("this build is a Release build: it may be packaged")
    out = tempfile.mkdtemp(prefix="map-deb-refused-")
    try:
        r = subprocess.run(["cpack", "-G", "DEB", "-B", out], cwd=BUILD, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode != 0, r.stdout
        assert "packages come from a Release build without SANITIZE or FUZZ" in r.stderr, r.stderr
        assert not glob.glob(os.path.join(out, "*.deb"))
    finally:
        shutil.rmtree(out, ignore_errors=True)
