"""pytest plugin: the session's real Kubernetes API server (tests/plugins/kube_cluster.py).

- ``kube_cluster`` (session): a :class:`~tests.plugins.kube_cluster.Cluster` (etcd + kube-apiserver
  on free loopback ports, Knative's CRDs installed), started on first use and stopped at the end;
  skips naming the exact failure when the binaries cannot be had here.
- ``kube_namespace``: a fresh namespace per test, so tests never see each other's objects.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from tests.plugins.kube_cluster import Cluster, Unavailable, run_cluster

_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[Cluster]:
    """The session's API server; skips (naming the failure) when it cannot run here."""
    try:
        import kubernetes  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"the Knative deploy tests need the kubernetes client (pip install 'graphpack[knative]'): {exc}")
    try:
        with run_cluster() as cluster:
            yield cluster
    except Unavailable as exc:
        pytest.skip(f"no Kubernetes API server: {exc}")


@pytest.fixture
def kube_namespace(kube_cluster: Cluster) -> str:
    """A namespace of its own for one test (namespaces are never deleted: no controller would finish it)."""
    return kube_cluster.create_namespace(f"t{next(_numbers)}")
