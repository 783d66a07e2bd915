"""The test session's ROS isolation: every pytest process (each pytest-xdist worker) on a domain
of its own, so concurrent workers never see each other's nodes (conftest.py)."""

from __future__ import annotations

import pytest

from conftest import _choose_domain_id


@pytest.mark.parametrize("override", ["", "40"])
def test_each_xdist_worker_gets_its_own_domain(monkeypatch, override):
    if override:
        monkeypatch.setenv("ACTDISTILL_TEST_ROS_DOMAIN_ID", override)
    else:
        monkeypatch.delenv("ACTDISTILL_TEST_ROS_DOMAIN_ID", raising=False)
    domains = []
    for worker in ("gw0", "gw1", "gw2", "gw3"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        domains.append(_choose_domain_id())
    assert len(set(domains)) == 4, domains
    assert all(1 <= d <= 100 for d in domains), domains  # ROS 2 domain ids safe on Linux: 0-101
    if override:
        assert domains == [40, 41, 42, 43]


def test_one_process_without_xdist_keeps_the_override(monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.setenv("ACTDISTILL_TEST_ROS_DOMAIN_ID", "57")
    assert _choose_domain_id() == 57
