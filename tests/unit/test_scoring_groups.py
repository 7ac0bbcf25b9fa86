"""batch_score's plan of groups: every batch once, at most parallel_batches tasks, by row budget."""

from hypothesis import given
from hypothesis import strategies as st

from mlops.scoring.batch import plan_groups


def _batches(n):
    return [{"batch_id": f"b{i:03d}", "roles": ["champion"]} for i in range(n)]


def test_a_backfill_of_small_batches_is_one_task():
    batches = _batches(24)
    groups = plan_groups(batches, {b["batch_id"]: 750 for b in batches}, parallel=4, rows_per_group=200_000)
    assert len(groups) == 1
    assert groups[0]["batches"] == batches
    assert groups[0]["label"] == "24 batches b000 .. b023"


def test_large_batches_spread_over_the_parallel_tasks_balanced_by_rows():
    batches = _batches(5)
    sizes = {"b000": 900, "b001": 100, "b002": 500, "b003": 500, "b004": 100}
    groups = plan_groups(batches, sizes, parallel=2, rows_per_group=500)
    assert sorted(sum(sizes[b["batch_id"]] for b in g["batches"]) for g in groups) == [1000, 1100]


def test_no_batches_no_groups():
    assert plan_groups([], {}, parallel=3, rows_per_group=10) == []


@given(
    sizes=st.lists(st.integers(0, 10_000), min_size=1, max_size=60),
    parallel=st.integers(1, 8),
    rows_per_group=st.integers(1, 50_000),
)
def test_every_batch_is_planned_once_in_order_within_the_limits(sizes, parallel, rows_per_group):
    batches = _batches(len(sizes))
    by_id = {b["batch_id"]: n for b, n in zip(batches, sizes, strict=True)}
    groups = plan_groups(batches, by_id, parallel, rows_per_group)
    planned = [b["batch_id"] for g in groups for b in g["batches"]]
    assert sorted(planned) == [b["batch_id"] for b in batches]  # each exactly once
    for group in groups:
        ids = [b["batch_id"] for b in group["batches"]]
        assert ids == sorted(ids) and ids  # the plan's order, no empty task
    needed = -(-sum(sizes) // rows_per_group)
    assert len(groups) == max(1, min(parallel, len(batches), needed))
    # Longest-processing-time bound: no group exceeds the average load by more than the largest batch.
    loads = [sum(by_id[b["batch_id"]] for b in g["batches"]) for g in groups]
    assert max(loads) <= sum(sizes) / len(groups) + max(sizes)
