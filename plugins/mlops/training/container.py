"""Pipeline functions run in an isolated container through the Docker provider.

`model.training_runtime: docker` runs train_candidates this way. The container is the
project's image (`model.training_image`, built from the Dockerfile: the same code and pins as
the workers) on `model.training_network_mode`, so it reaches MLflow, the object store and the
warehouse at the addresses the worker uses. It runs `python -m mlops.training.container <module:function>`:

* the function's keyword arguments (XCom values) go in as a JSON file the operator copies into
  the created container before it starts (not the environment: the kernel refuses one variable
  over 128 KiB, about 6,600 batch ids); its JSON result comes back through a file the operator
  copies out of the container;
* the configuration overrides (MLOPS__*) go in as plain environment;
* the connections (object store, MLflow, warehouse) go in as AIRFLOW_CONN_* *private*
  environment, read from Airflow when the task starts: never logged, never rendered in the UI;
* a SQLite warehouse is a file on the worker: its folder is bind-mounted at the same path,
  and the container runs as the worker's user so that it may open it.

(`@task.docker` is not used: in Airflow 3.3 its script tries to reattach to the worker's
supervisor socket, which does not exist inside a container, whenever Airflow is installed
in the image.)
"""

from __future__ import annotations

import importlib
import io
import json
import os
import sys
import tarfile
from pathlib import Path

from airflow.providers.docker.operators.docker import DockerOperator

from mlops.config import ENV_PREFIX, get_config

INPUT_PATH = "/tmp/mlops-job-input.json"
OUTPUT_PATH = "/tmp/mlops-job-result.json"


def input_archive(job_input: dict, path: str = INPUT_PATH) -> bytes:
    """A tar archive holding job_input as JSON at `path` (its folder must exist in the image),
    readable by any user, for Docker's put_archive (the API's way to copy files into a container)."""
    data = json.dumps(job_input).encode()
    info = tarfile.TarInfo(Path(path).name)
    info.size, info.mode = len(data), 0o644
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def connection_environment() -> dict[str, str]:
    """AIRFLOW_CONN_<ID> = the connection as JSON, for each connection the pipeline uses."""
    from airflow.sdk import BaseHook

    ids = get_config().connections.model_dump().values()
    return {f"AIRFLOW_CONN_{conn_id.upper()}": BaseHook.get_connection(conn_id).as_json() for conn_id in ids}


def sqlite_warehouse_folder() -> str | None:
    """The folder of the warehouse's SQLite file, or None for a server database."""
    from airflow.sdk import BaseHook

    conn = BaseHook.get_connection(get_config().connections.warehouse)
    if conn.conn_type != "sqlite" or not conn.host or conn.host == ":memory:":
        return None
    return str(Path(conn.host).resolve().parent)


class PipelineContainerOperator(DockerOperator):
    """Run `function` ("module:name", keyword arguments `job_input`) in the project's image."""

    template_fields = (*DockerOperator.template_fields, "job_input")
    # The result file is JSON (DockerOperator reads it with this module's load()).
    pickling_library = json

    def __init__(self, *, function: str, job_input: dict | None = None, **kwargs):
        cfg = get_config().model
        options = {
            "image": cfg.training_image,
            "docker_url": cfg.training_docker_url,
            "network_mode": cfg.training_network_mode,
            "command": ["python3", "-m", "mlops.training.container", function],
            "retrieve_output": True,
            "retrieve_output_path": OUTPUT_PATH,
            # Input and output travel without a host folder: works with a remote engine too.
            "mount_tmp_dir": False,
            "auto_remove": "success",
            **kwargs,
        }
        super().__init__(**options)
        self.function = function
        self.job_input = job_input or {}

    def container_environment(self) -> dict[str, str]:
        """The container's plain environment: the MLOPS__ overrides and the operator's own."""
        return {**{k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}, **(self.environment or {})}

    def _run_image_with_mounts(self, target_mounts, add_tmp_variable: bool):
        """DockerOperator's create-and-start, with the job input copied in between."""
        cli = self.cli
        create = cli.create_container

        def create_with_input(*args, **kwargs):
            container = create(*args, **kwargs)
            cli.put_archive(container["Id"], str(Path(INPUT_PATH).parent), input_archive(self.job_input))
            return container

        cli.create_container = create_with_input
        try:
            return super()._run_image_with_mounts(target_mounts, add_tmp_variable)
        finally:
            del cli.create_container  # the client's own method again

    def execute(self, context):
        self.environment = self.container_environment()
        self._private_environment = {**self._private_environment, **connection_environment()}
        folder = sqlite_warehouse_folder()
        if folder:
            self.mounts = [*self.mounts, {"Target": folder, "Source": folder, "Type": "bind"}]
            self.user = self.user or f"{os.getuid()}:{os.getgid()}"
        self.log.info(
            "running %s in image %s (network %s); connections passed privately: %s; mounts: %s",
            self.function,
            self.image,
            self.network_mode,
            sorted(self._private_environment),
            [m["Target"] for m in self.mounts],
        )
        return super().execute(context)


def main(argv: list[str]) -> int:
    """In the container: call the function with the JSON input file, write its JSON result."""
    module_name, _, name = argv[1].partition(":")
    function = getattr(importlib.import_module(module_name), name)
    path = Path(INPUT_PATH)
    result = function(**(json.loads(path.read_text()) if path.exists() else {}))
    Path(OUTPUT_PATH).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
