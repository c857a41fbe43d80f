"""Helpers shared by the tests that drive the edge with outside clients:
a stack whose ingress gets extra environment (MAP_ALLOWED_ORIGINS), the
sanitizer reports in the stack's logs, and a module-scoped stack that is
replaced (and the test failed) when a test kills the ingress, so one crash
does not turn every later test of the file into noise."""
import pytest

from conftest import Edge
from mapclient import Procs

import rawhttp

MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
           "Segmentation fault", "Assertion `")


class _EnvProcs(Procs):
    def __init__(self, ingress_env):
        super().__init__()
        self.ingress_env = dict(ingress_env)

    def start(self, name, *args, env=None, log=None):
        if name == "map-ingress":
            env = dict(env or {}, **self.ingress_env)
        return super().start(name, *args, env=env, log=log)


class EnvEdge(Edge):
    """conftest's Edge, with environment variables for map-ingress."""

    def __init__(self, ingress_env=None, api_key=None, ingress_args=(), orch_args=(),
                 bridge=False):
        self.orch_args = orch_args
        self.procs = _EnvProcs(ingress_env or {})
        try:
            self._start(api_key, ingress_args, bridge)
        except BaseException:
            self.procs.stop_all(check=False)
            raise


def log_text(p):
    with open(p.log, "rb") as f:
        return f.read().decode(errors="replace")


def sanitizer_reports(edge):
    """[(log path, excerpt)] of every sanitizer or crash report in the
    stack's process logs (the logs Procs.stop_all checks at the end)."""
    out = []
    for p in edge.procs.procs:
        text = log_text(p)
        for marker in MARKERS:
            i = text.find(marker)
            if i >= 0:
                out.append((p.log, text[max(0, i - 300):i + 2500]))
    return out


def ingress_state(edge):
    """None while the ingress runs and answers /health; else why not."""
    if edge.ingress.poll() is not None:
        return "map-ingress exited with %r" % edge.ingress.returncode
    try:
        if not rawhttp.health_ok(edge.http, timeout=5):
            return "/health is not ok"
    except (OSError, AssertionError) as ex:
        return "/health failed: %r" % ex
    return None


class Guard:
    """One stack per module; a test after which the ingress is dead (or a
    sanitizer spoke) fails with the report, and the next test gets a new
    stack."""

    def __init__(self, factory):
        self.factory = factory
        self.edge = None

    def get(self):
        if self.edge is None:
            self.edge = self.factory()
        return self.edge

    def check_after(self):
        e = self.edge
        state = ingress_state(e)
        reports = sanitizer_reports(e)
        if state is None and not reports:
            return
        self.edge = None
        e.procs.stop_all(check=False)
        pytest.fail("after this test: %s\n%s" % (
            state or "a sanitizer reported",
            "\n".join("%s:\n%s" % r for r in reports) or e.procs.logs()[-3000:]), pytrace=False)

    def close(self):
        if self.edge is not None:
            self.edge.close()
            self.edge = None


def guarded_fixtures(factory=Edge):
    """(module fixture, function fixture `edge`) around Guard."""

    @pytest.fixture(scope="module")
    def _guard():
        g = Guard(factory)
        yield g
        g.close()

    @pytest.fixture
    def edge(_guard):
        yield _guard.get()
        _guard.check_after()

    return _guard, edge
