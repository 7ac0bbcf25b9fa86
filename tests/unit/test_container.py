"""The container runtime's input (model.training_runtime=docker): a file copied into the
container, not an environment variable, so a long training window fits."""

import io
import json
import tarfile

from mlops.training import container

# Linux refuses one environment string longer than 32 pages (MAX_ARG_STRLEN, 128 KiB).
MAX_ARG_STRLEN = 128 * 1024


def _big_window() -> dict:
    ids = [f"2026-01-01T00:00:00_observations_{i:06d}.csv" for i in range(10_000)]
    window = {"window": {"batch_ids": ids, "window_start": "2025-01-01", "window_end": "2026-01-01"}}
    assert len(json.dumps(window)) > MAX_ARG_STRLEN
    return window


def test_a_long_window_goes_in_as_a_file_not_the_environment(monkeypatch):
    monkeypatch.setenv("MLOPS__MODEL__SEARCH_ITERATIONS", "3")
    job_input = _big_window()
    op = container.PipelineContainerOperator(
        task_id="t", function="mlops.training.pipeline:train_from_snapshot", job_input=job_input
    )
    environment = op.container_environment()
    assert environment == {"MLOPS__MODEL__SEARCH_ITERATIONS": "3"}
    assert all(len(f"{k}={v}") < MAX_ARG_STRLEN for k, v in environment.items())
    with tarfile.open(fileobj=io.BytesIO(container.input_archive(job_input))) as archive:
        (member,) = archive.getmembers()
        assert member.name == "mlops-job-input.json" and member.mode == 0o644
        assert json.load(archive.extractfile(member)) == job_input


def test_the_container_entry_point_reads_the_input_file(tmp_path, monkeypatch):
    job_input = _big_window()
    monkeypatch.setattr(container, "INPUT_PATH", str(tmp_path / "input.json"))
    monkeypatch.setattr(container, "OUTPUT_PATH", str(tmp_path / "result.json"))
    with tarfile.open(fileobj=io.BytesIO(container.input_archive(job_input))) as archive:
        archive.extractall(tmp_path, filter="data")
    (tmp_path / "mlops-job-input.json").rename(tmp_path / "input.json")
    # builtins:dict returns its keyword arguments: the result is the input the function was given
    assert container.main(["mlops.training.container", "builtins:dict"]) == 0
    assert json.loads((tmp_path / "result.json").read_text()) == job_input
