"""Session fixtures: one PostgreSQL cluster for the whole run.

With DEVPI_TWISTED_REQUIRE_POSTGRES=1 (set by scripts/run-tests for a full run)
the run fails unless tests on PostgreSQL ran and passed: they must never be
skipped or deselected away silently. DEVPI_TWISTED_REQUIRE_NGINX=1 (also set
for a full run) does the same for the tests with a real nginx (tests/e2e/test_nginx.py),
DEVPI_TWISTED_REQUIRE_SLAPD=1 for those with a real OpenLDAP slapd (tests/ldap.py),
DEVPI_TWISTED_REQUIRE_BROWSER=1 for those in a real headless chromium (tests/browser/).

Property tests (hypothesis) explore new examples on every run by hand; a full run
(scripts/run-tests sets DEVPI_TWISTED_HYPOTHESIS=ci) draws the same examples every
time, so a CI verdict never depends on the luck of the draw.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests import ldap
from tests.pg import PgCluster

settings.register_profile("ci", derandomize=True, database=None)
settings.load_profile(os.environ.get("DEVPI_TWISTED_HYPOTHESIS", "default"))

SLAPD_TESTS = ("tests/e2e/test_ldap.py", "tests/identity/test_ldap_directory.py")
BROWSER_TESTS = "tests/browser/"

_postgres_passed: list[str] = []
_nginx_passed: list[str] = []
_slapd_passed: list[str] = []
_browser_passed: list[str] = []
_browser_skipped: list[str] = []


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    cluster = PgCluster().start()
    yield cluster
    cluster.stop()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and report.passed and "postgres" in report.nodeid:
        _postgres_passed.append(report.nodeid)
    if report.when == "call" and report.passed and "test_nginx" in report.nodeid:
        _nginx_passed.append(report.nodeid)
    if report.when == "call" and report.passed and report.nodeid.startswith(SLAPD_TESTS):
        _slapd_passed.append(report.nodeid)
    if report.when == "call" and report.passed and report.nodeid.startswith(BROWSER_TESTS):
        _browser_passed.append(report.nodeid)
    if report.skipped and report.nodeid.startswith(BROWSER_TESTS):
        _browser_skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("DEVPI_TWISTED_REQUIRE_POSTGRES") == "1" and not _postgres_passed:
        print("\nrun-tests: no test on PostgreSQL passed; a full run must run them", flush=True)
        session.exitstatus = 1
    if os.environ.get("DEVPI_TWISTED_REQUIRE_NGINX") == "1" and not _nginx_passed:
        print("\nrun-tests: no test with nginx passed; a full run must run them", flush=True)
        session.exitstatus = 1
    if os.environ.get("DEVPI_TWISTED_REQUIRE_SLAPD") == "1" and not (_slapd_passed
                                                                      and ldap.STARTED):
        print("\nrun-tests: no test with slapd passed; a full run must run them", flush=True)
        session.exitstatus = 1
    if os.environ.get("DEVPI_TWISTED_REQUIRE_BROWSER") == "1" and (_browser_skipped
                                                                    or not _browser_passed):
        print("\nrun-tests: browser tests were skipped or none passed; a full run must run "
              "them (chromium, Playwright)", flush=True)
        session.exitstatus = 1
