from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyter_helpers import JupyterServer, Kernel
from netns_helpers import Node, NoNamespace, network_namespace
from slurm_helpers import Cluster, NoCluster, slurm_cluster


@pytest.fixture(autouse=True)
def _private_runtime(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test's sessions live in their own runtime dir; no real Jupyter server is visible."""
    root = tmp_path_factory.mktemp("runtime")
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(root))
    monkeypatch.setenv("NBVIZ_RUNTIME_DIR", str(root / "nbviz"))
    for key in ("JPY_PARENT_PID", "JUPYTERHUB_SERVICE_PREFIX", "NBVIZ_BASE_URL"):
        monkeypatch.delenv(key, raising=False)


#: Arguments that turn nbviz's server extension off (jupyter-server-proxy's route only).
WITHOUT_NBVIZ = ['--ServerApp.jpserver_extensions={"nbviz.serverext": False}']


@pytest.fixture(scope="session")
def jupyter_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    """A real JupyterLab server with base URL /user/alice/ and a token (shared by a session)."""
    with JupyterServer(root=Path(tmp_path_factory.mktemp("jupyter"))) as server:
        yield server


@pytest.fixture(scope="session")
def server_without_nbviz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    """A Jupyter server where nbviz's extension is off (jupyter-server-proxy only)."""
    root = Path(tmp_path_factory.mktemp("nonbviz"))
    with JupyterServer(root=root, app="server", extra_args=WITHOUT_NBVIZ) as server:
        yield server


@pytest.fixture(scope="session")
def lab_without_nbviz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    """JupyterLab where nbviz's server extension is off: jupyter-server-proxy's route only."""
    root = Path(tmp_path_factory.mktemp("lab-nonbviz"))
    with JupyterServer(root=root, extra_args=WITHOUT_NBVIZ) as server:
        yield server


@pytest.fixture(scope="session")
def slurm() -> Iterator[Cluster]:
    """A real one-node Slurm cluster (munged, slurmctld, slurmd) for the run; clients find it
    through ``slurm.env`` (SLURM_CONF)."""
    try:
        with slurm_cluster() as started:
            yield started
    except NoCluster as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[tuple[Cluster, Node]]:
    """A real cluster whose second node (``nbviz-node2``, partition ``remote``) is a network
    namespace: another host as far as the network goes (one per test module)."""
    try:
        with network_namespace() as node, slurm_cluster(second=node) as cluster:
            yield cluster, node
    except (NoNamespace, NoCluster) as exc:
        pytest.skip(str(exc))


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")


@pytest.fixture
def kernel(jupyter_server: JupyterServer) -> Iterator[Kernel]:
    """A kernel the shared server started (as the notebook UI would), shut down afterwards."""
    started = Kernel(jupyter_server)
    try:
        yield started
    finally:
        started.close()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Users the tests created (a second local user for the privacy tests) are removed."""
    from user_helpers import remove_created_users

    remove_created_users()
