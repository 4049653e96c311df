"""The Ray engine's task sizing (the engine itself is run against the local one in tests/e2e/test_ray.py)."""

from __future__ import annotations

from facesieve.engines.ray_engine import TASK_IMAGES, task_images


def test_tasks_are_large_enough_to_hide_rays_scheduling_cost():
    """A task costs Ray Data about 0.16 s to schedule: 10,000 images on 2 CPUs go out as tasks
    of TASK_IMAGES (128), not one 16-image batch each (625 tasks, the cores idle a quarter of the
    time); whole inference batches always."""
    assert task_images(10_000, 16, 2) == TASK_IMAGES == 128
    assert task_images(10_000, 32, 2) == 128
    assert task_images(3_000, 16, 64) == 16  # a cluster: every CPU still gets several tasks
    assert task_images(100, 16, 2) == 16  # 13 rounded up to a whole batch
    assert task_images(5_000_000, 16, 2) == 5_008  # at most ~1,000 tasks: 5,000 rounded up to whole batches
    for n, batch, cpus in [(1, 16, 1), (77, 24, 3), (123_457, 32, 16)]:
        assert task_images(n, batch, cpus) % batch == 0
