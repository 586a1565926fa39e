"""The local Ray cluster of the Ray tests (tests/engine/test_ray_executor.py, tests/pipeline/test_pipeline_ray.py),
loaded by ``tests/conftest.py`` as a plugin: one cluster for the whole session, started on first use."""

from __future__ import annotations

from typing import Any, Iterator

import pytest


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """One local Ray cluster for the session (2 CPUs, no dashboard, a small object store)."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024 * 1024, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()
