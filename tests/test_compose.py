"""docker-compose.yml refers only to things that exist: no Docker engine runs here, so these checks stand in.

Every command's executable is checked against its source (the Airflow CLI parser of the pinned Airflow,
the console scripts of pyproject.toml and their --help, importable modules, or the few tools the
PostgreSQL, Redis, Airflow and Prometheus images ship; Prometheus' flags against Debian's prometheus); every
bind-mounted host path exists in the repository and every container path the environment names lies under a
mount; every ${VAR} is documented in .env.example and every variable there is used; TELEMETRY_* keys are
settings of collectors.config (or variables the code reads), AIRFLOW__SECTION__KEY keys are Airflow options;
secrets are references. The project's image is built once; the file names the Compose version its features need;
the Celery settings are those the CeleryExecutor end-to-end test runs with; the official file's optional
profiles are there.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import tomllib
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from collectors.dev.local_airflow import CELERY_SETTINGS, CeleryWorkers, celery_result_backend
from collectors.monitoring import PROMETHEUS_CONFIG
from collectors.orchestration.warehouse_connection import WAREHOUSE_CONN_ID

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
BIN = Path(sys.executable).parent  # the venv's bin: airflow and the project's console scripts

AIRFLOW_SUBCOMMANDS = {
    "airflow-apiserver": ["api-server"],
    "airflow-scheduler": ["scheduler"],
    "airflow-dag-processor": ["dag-processor"],
    "airflow-triggerer": ["triggerer"],
    "airflow-worker": ["celery", "worker"],
}
AIRFLOW_SERVICES = {*AIRFLOW_SUBCOMMANDS, "airflow-init"}
# the official file's optional services, started only with their profile (`--profile`, or `run` by name)
PROFILE_SERVICES = {"airflow-cli": "debug", "flower": "flower"}
PROJECT_SERVICES = {
    "warehouse-init": "telemetry-db",
    "receiver": "telemetry-receiver",
    "host-collector": "telemetry-host-collector",
}
EXPECTED_SERVICES = (
    AIRFLOW_SERVICES | set(PROJECT_SERVICES) | set(PROFILE_SERVICES) | {"redis", "postgres", "warehouse", "prometheus"}
)
# The first Compose release that has each feature the file uses (Compose's release notes); the file's
# x-compose-minimum-version must be at least the newest of them.
COMPOSE_FEATURES = {
    "build.dockerfile_inline": (2, 17, 0),
    "profiles": (1, 28, 0),
    "depends_on condition service_completed_successfully": (1, 29, 0),
}

# What the images themselves bring (not this repository): executables and the environment their
# entrypoints read. The Airflow image's entrypoint is scripts/docker/entrypoint_prod.sh of apache/airflow.
IMAGE_TOOLS = {
    "postgres": {"psql", "pg_isready"},
    "redis": {"redis-cli"},
    "apache/airflow": {"curl", "celery", "bash"},
    "prom/prometheus": {"prometheus", "promtool", "wget"},  # wget: the image's busybox
}
IMAGE_ENV = {
    "postgres": {"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB", "PGHOST", "PGUSER", "PGPASSWORD", "PGDATABASE"},
    "redis": set(),
    "apache/airflow": {
        "_AIRFLOW_DB_MIGRATE",
        "_AIRFLOW_WWW_USER_CREATE",
        "_AIRFLOW_WWW_USER_USERNAME",
        "_AIRFLOW_WWW_USER_PASSWORD",
        "DUMB_INIT_SETSID",
        "CONNECTION_CHECK_MAX_COUNT",
    },
    "prom/prometheus": set(),
}
# Images whose entrypoint is their program: a service's command is that program's arguments.
IMAGE_PROGRAMS = {"prom/prometheus": "prometheus"}
AIRFLOW_IMAGE_ENTRYPOINT_PASSTHROUGH = {"bash", "python", "airflow"}  # anything else is an airflow subcommand
INIT_WRAPPER = ["/usr/bin/dumb-init", "--"]
# The Celery CLI group comes from apache-airflow-providers-celery (in the apache/airflow image, not in the
# venv) and appears only under CeleryExecutor; its subcommands, as that provider defines them.
CELERY_PROVIDER_SUBCOMMANDS = {"worker", "flower", "stop"}
# Options of providers the image ships but the venv does not (checked against the provider when installed).
PROVIDER_OPTIONS = {("celery", "result_backend")}
SECRET_WORDS = ("PASSWORD", "TOKEN", "SECRET", "SALT", "FERNET_KEY")

VAR = re.compile(r"\$(?:\$|\{(?P<braced>[A-Za-z_]\w*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}|(?P<bare>[A-Za-z_]\w*))")
REFERENCE = re.compile(r"\$\{[A-Za-z_]\w*(?::?\?[^}]*)?\}")  # ${VAR} or ${VAR:?error}: no default value


# --- reading the files --------------------------------------------------------------------------------


@functools.cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())  # SafeLoader resolves the << merge keys


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


@functools.cache
def env_example() -> dict[str, str]:
    return {key: value for key, value, _ in env_example_lines()}


def env_example_lines() -> list[tuple[str, str, bool]]:
    """(key, value, documented): documented = a comment right above it, or above a run of variables of one family.

    A family shares its first two words (TELEMETRY_RETENTION_*, _AIRFLOW_WWW_*): a variable that merely follows
    another one's comment is not documented by it.
    """
    entries: list[tuple[str, str, bool]] = []
    previous: tuple[str, bool] | None = None  # the line above: (key, documented) for a variable, ("#", True) else
    for line in ENV_EXAMPLE.read_text().splitlines():
        stripped = line.strip()
        if not stripped:
            previous = None
        elif stripped.startswith("#"):
            previous = ("#", True)
        else:
            key, sep, value = stripped.partition("=")
            assert sep, f".env.example: {line!r} is not KEY=value"
            key = key.strip()
            documented = previous is not None and (
                previous[0] == "#" or (previous[1] and key.split("_")[:2] == previous[0].split("_")[:2])
            )
            entries.append((key, value.strip(), documented))
            previous = (key, documented)
    return entries


def strings(node: Any) -> list[str]:
    """Every string value in the file (keys are not interpolated by compose)."""
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings(value)]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return [node] if isinstance(node, str) else []


def variables(text: str) -> list[str]:
    return [m["braced"] or m["bare"] for m in VAR.finditer(text) if m["braced"] or m["bare"]]


def interpolate(text: str, env: dict[str, str] | None = None) -> str:
    """Compose interpolation with the values of .env.example ($$ is a literal $)."""
    env = env_example() if env is None else env

    def value(m: re.Match[str]) -> str:
        name = m["braced"] or m["bare"]
        if name is None:
            return "$"
        op, set_value = m["op"] or "", env.get(name)
        if op in (":-", "-"):
            return set_value if (set_value if op == ":-" else set_value is not None) else m["arg"]
        return set_value or ""

    return VAR.sub(value, text)


def argv(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def built_images() -> dict[str, dict[str, Any]]:
    """The build of each image a service of the file builds, by image name."""
    return {s["image"]: s["build"] for s in services().values() if "build" in s and "image" in s}


def runs_project_image(service: dict[str, Any]) -> bool:
    """The service builds or runs the image the project is installed into."""
    return "build" in service or service.get("image") in built_images()


def image_family(service: dict[str, Any]) -> str:
    build = service.get("build") or built_images().get(service.get("image", ""))
    if build is not None:
        base = re.search(r"^FROM\s+(\S+)", build["dockerfile_inline"], re.M)
        assert base, "the build has no FROM"
        image = base[1]
    else:
        image = service["image"]
    return image.split(":")[0]


def run_argv(service: dict[str, Any]) -> list[str]:
    """What the container executes, after its entrypoint (the Airflow image turns `x` into `airflow x`)."""
    entrypoint, command = argv(service.get("entrypoint")), argv(service.get("command"))
    if entrypoint:
        assert entrypoint == INIT_WRAPPER, f"unexpected entrypoint {entrypoint}"
        return [interpolate(a) for a in command]
    command = [interpolate(a) for a in command]
    if image_family(service) in IMAGE_PROGRAMS:
        return [IMAGE_PROGRAMS[image_family(service)], *command]
    if image_family(service) == "apache/airflow" and command and command[0] not in AIRFLOW_IMAGE_ENTRYPOINT_PASSTHROUGH:
        return ["airflow", *command]
    return command


def healthcheck_argv(service: dict[str, Any]) -> list[str] | None:
    test = service.get("healthcheck", {}).get("test")
    if test is None:
        return None
    test = argv(test)
    kind, rest = test[0], test[1:]
    assert kind in ("CMD", "CMD-SHELL"), f"healthcheck kind {kind}"
    rest = [interpolate(a) for a in rest]
    return shlex.split(rest[0]) if kind == "CMD-SHELL" else rest


def all_argvs() -> list[tuple[str, str, list[str]]]:
    """(service, "command" | "healthcheck", argv) for every command the file runs."""
    found = []
    for name, service in services().items():
        if command := run_argv(service):
            found.append((name, "command", command))
        if (check := healthcheck_argv(service)) is not None:
            found.append((name, "healthcheck", check))
    return found


@functools.cache
def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def console_scripts() -> dict[str, str]:
    return pyproject()["project"]["scripts"]


# --- what Airflow and the console scripts accept (subprocesses, run once, in parallel) -------------------

AIRFLOW_PROBE = textwrap.dedent(
    """
    import contextlib, io, json, sys
    request = json.loads(sys.argv[1])
    from airflow.configuration import conf
    from airflow.cli import cli_parser
    parser = cli_parser.get_parser()
    result = {"commands": [], "options": []}
    for args in request["commands"]:
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                parser.parse_args(args)
            result["commands"].append(None)
        except SystemExit as stop:
            result["commands"].append(err.getvalue().strip() or f"exit {stop.code}")
    for section, key in request["options"]:
        described = key in conf.configuration_description.get(section, {}).get("options", {})
        result["options"].append(conf.has_option(section, key) or described)
    with open(request["out"], "w") as out:
        json.dump(result, out)
    """
)


def celery_provider_installed() -> bool:
    """Asked of the installed distributions: importing airflow here would set it up for the whole session."""
    try:
        metadata.distribution("apache-airflow-providers-celery")
    except metadata.PackageNotFoundError:
        return False
    return True


def airflow_config_keys() -> list[tuple[str, str]]:
    keys = {
        tuple(key.lower().split("__")[1:3])
        for service in services().values()
        for key in (service.get("environment") or {})
        if key.startswith("AIRFLOW__")
    }
    return sorted(keys)


def probe_airflow(commands: list[list[str]], options: list[tuple[str, str]], home: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["AIRFLOW_HOME"] = str(home)
    if celery_provider_installed():
        env["AIRFLOW__CORE__EXECUTOR"] = "CeleryExecutor"
    out = home / "probe.json"
    request = json.dumps({"commands": commands, "options": options, "out": str(out)})
    done = subprocess.run(
        [sys.executable, "-c", AIRFLOW_PROBE, request], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"Airflow probe failed:\n{done.stderr[-3000:]}"
    return json.loads(out.read_text())


def script_help(args: list[str]) -> tuple[int, str]:
    done = subprocess.run([str(BIN / args[0]), *args[1:], "--help"], capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout + done.stderr


@pytest.fixture(scope="module")
def probes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Airflow's verdict on every airflow command and option, and the --help of every console script call."""
    airflow_commands = [a[1:] for _, _, a in all_argvs() if a[0] == "airflow"]
    script_calls = [a for _, _, a in all_argvs() if a[0] in console_scripts()]
    with ThreadPoolExecutor(max_workers=8) as pool:
        airflow = pool.submit(probe_airflow, airflow_commands, airflow_config_keys(), tmp_path_factory.mktemp("af"))
        jobs = {}
        for call in script_calls:
            positional = []
            for token in call[1:]:
                if token.startswith("-"):
                    break
                positional.append(token)
            for args in ([call[0]], [call[0], *positional], call):
                jobs[tuple(args)] = pool.submit(script_help, args)
        helps = {args: job.result() for args, job in jobs.items()}
        verdict = airflow.result()
    return {
        "airflow_commands": dict(zip(map(tuple, airflow_commands), verdict["commands"], strict=True)),
        "airflow_options": dict(zip(airflow_config_keys(), verdict["options"], strict=True)),
        "helps": helps,
    }


# --- services and their commands ----------------------------------------------------------------------


def test_expected_services_exist() -> None:
    missing = EXPECTED_SERVICES - set(services())
    assert not missing, f"services missing from docker-compose.yml: {sorted(missing)}"


@pytest.mark.parametrize("name", sorted(AIRFLOW_SUBCOMMANDS))
def test_airflow_service_runs_its_subcommand(name: str) -> None:
    service = services()[name]
    assert image_family(service) == "apache/airflow", f"{name} does not run the Airflow image"
    assert run_argv(service) == ["airflow", *AIRFLOW_SUBCOMMANDS[name]], f"{name} runs {run_argv(service)}"


def test_airflow_init_migrates_and_creates_the_admin() -> None:
    init = services()["airflow-init"]
    env = init["environment"]
    assert run_argv(init)[0] == "airflow"
    assert env.get("_AIRFLOW_DB_MIGRATE") == "true", "airflow-init must migrate the metadata database"
    assert env.get("_AIRFLOW_WWW_USER_CREATE") == "true", "airflow-init must create the admin user"


def test_project_services_run_their_console_scripts() -> None:
    for name, script in PROJECT_SERVICES.items():
        command = run_argv(services()[name])
        assert command and command[0] == script, f"{name} runs {command}, not {script}"
        assert runs_project_image(services()[name]), f"{name} must run the image the project is installed into"
    migration = run_argv(services()["warehouse-init"])
    assert migration[1:] in (["migrate"], ["prepare"]), f"warehouse-init runs {migration}"


def test_every_executable_is_real() -> None:
    scripts = console_scripts()
    for name, where, args in all_argvs():
        family, exe = image_family(services()[name]), args[0]
        if exe == "airflow":
            assert family == "apache/airflow", f"{name}: airflow outside the Airflow image"
        elif exe in scripts:
            assert runs_project_image(services()[name]), f"{name}: {exe} needs the project's image"
            module = scripts[exe].split(":")[0]
            assert find_spec(module) is not None, f"{exe} -> {module} is not importable"
            assert (BIN / exe).exists(), f"{exe} is not installed in the venv (pip install -e .)"
        elif exe in ("python", "python3") and args[1:2] == ["-m"]:
            assert find_spec(args[2]) is not None, f"{name} {where}: python -m {args[2]}: no such module"
        else:
            assert exe in IMAGE_TOOLS.get(family, set()), f"{name} {where}: {exe!r} is not known to exist"


def test_airflow_commands_parse(probes: dict[str, Any]) -> None:
    celery = services()["airflow-worker"]["environment"]["AIRFLOW__CORE__EXECUTOR"]
    for args, error in probes["airflow_commands"].items():
        if args[0] == "celery" and not celery_provider_installed():
            assert celery == "CeleryExecutor", "`airflow celery` exists only under the CeleryExecutor"
            assert len(args) == 2 and args[1] in CELERY_PROVIDER_SUBCOMMANDS, f"airflow {' '.join(args)}"
            continue
        assert error is None, f"`airflow {' '.join(args)}` is refused by Airflow's CLI: {error}"


def test_console_script_calls_are_accepted(probes: dict[str, Any]) -> None:
    for args, (code, text) in probes["helps"].items():
        assert code == 0, f"`{' '.join(args)} --help` exits {code}:\n{text}"
    for _, _, call in all_argvs():
        if call[0] not in console_scripts():
            continue
        known = "\n".join(text for args, (_, text) in probes["helps"].items() if args[0] == call[0])
        for token in call[1:]:
            if token.startswith("--"):
                flag = token.split("=", 1)[0]
                assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", known), f"{call[0]}: unknown {flag}"


def test_image_is_the_pinned_airflow_with_the_project_installed() -> None:
    deps = pyproject()["project"]["optional-dependencies"]["airflow"]
    airflow = next(d.split("==")[1] for d in deps if d.startswith("apache-airflow=="))
    python = re.search(r">=(\d+\.\d+)", pyproject()["project"]["requires-python"])[1]
    builds = {json.dumps(s["build"], sort_keys=True) for s in services().values() if "build" in s}
    assert len(builds) == 1, "every service built from this repository must share one build"
    build = json.loads(builds.pop())
    dockerfile = build["dockerfile_inline"]
    assert re.search(rf"^FROM apache/airflow:{re.escape(airflow)}-python{re.escape(python)}$", dockerfile, re.M)
    assert re.search(r"pip install .*-c \S*\.ci/constraints\.txt -e \"/opt/telemetry\[all\]\"", dockerfile)
    context = (COMPOSE_FILE.parent / build["context"]).resolve()
    for line in dockerfile.splitlines():
        if line.startswith("COPY"):
            sources = [a for a in line.split()[1:-1] if not a.startswith("--")]
            for source in sources:
                assert (context / source).exists(), f"COPY {source}: not in the repository"


# --- mounts and paths ---------------------------------------------------------------------------------


def mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    parsed = []
    for volume in service.get("volumes", []):
        source, target = interpolate(volume).split(":")[:2]
        parsed.append((source, target))
    return parsed


def test_bind_mounts_exist_and_named_volumes_are_declared() -> None:
    declared = set(compose().get("volumes") or {})
    for name, service in services().items():
        for source, target in mounts(service):
            assert target.startswith("/"), f"{name}: {target} is not an absolute container path"
            if source.startswith((".", "/")):
                host = (COMPOSE_FILE.parent / source).resolve()
                assert host.exists(), f"{name}: {source} does not exist in the repository"
                assert host.is_relative_to(ROOT), f"{name}: {source} is outside the repository"
            else:
                assert source in declared, f"{name}: volume {source} is not declared under volumes:"


def container_paths(service: dict[str, Any]) -> list[str]:
    values = [interpolate(str(v)) for v in (service.get("environment") or {}).values()]
    values += run_argv(service)
    return [v for v in values if v.startswith("/")]


def test_container_paths_lie_under_mounts() -> None:
    for name, service in services().items():
        targets = mounts(service)
        for path in container_paths(service):
            under = [(s, t) for s, t in targets if PurePosixPath(path).is_relative_to(t)]
            assert under, f"{name}: {path} is under no mounted volume"
            source, target = max(under, key=lambda st: len(st[1]))
            if source.startswith((".", "/")):
                host = COMPOSE_FILE.parent / source / PurePosixPath(path).relative_to(target)
                assert host.exists(), f"{name}: {path} is {host.relative_to(ROOT)}, which does not exist"


def test_airflow_services_share_folders_and_settings() -> None:
    settings = None
    for name in sorted(AIRFLOW_SERVICES | set(PROFILE_SERVICES)):
        env = services()[name]["environment"]
        assert env.get("AIRFLOW__CORE__DAGS_FOLDER") == "/opt/telemetry/dags", name
        assert env.get("AIRFLOW__CORE__PLUGINS_FOLDER") == "/opt/telemetry/plugins", name
        mine = {k: v for k, v in env.items() if k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "TELEMETRY_"))}
        settings = settings or mine
        assert mine == settings, f"{name}'s Airflow or warehouse settings differ from the other Airflow services'"


def test_the_dags_find_the_warehouse() -> None:
    conn_id = WAREHOUSE_CONN_ID
    env = services()["airflow-worker"]["environment"]
    url = env.get(f"AIRFLOW_CONN_{conn_id.upper()}")
    assert url, f"the workers have no connection {conn_id} (AIRFLOW_CONN_{conn_id.upper()})"
    assert url == env.get("TELEMETRY_DATABASE_URL"), "connection and TELEMETRY_DATABASE_URL name different databases"
    assert interpolate(url).startswith("postgresql://") and "@warehouse:" in url


# --- environment --------------------------------------------------------------------------------------


def test_every_variable_is_documented_in_env_example() -> None:
    used = {v for s in strings(compose()) for v in variables(s)}
    defined = env_example()
    missing = used - set(defined)
    assert not missing, f"used in docker-compose.yml, missing from .env.example: {sorted(missing)}"
    # .env only fills ${VAR} of the compose file (no service has env_file), so anything else there does nothing
    assert not set(defined) - used, f"in .env.example but used nowhere: {sorted(set(defined) - used)}"
    keys = [key for key, _, _ in env_example_lines()]
    assert len(keys) == len(set(keys)), ".env.example defines a variable twice"
    undocumented = [key for key, _, documented in env_example_lines() if not documented]
    assert not undocumented, f"no comment above {undocumented} in .env.example"


def settings_env_names() -> set[str]:
    from collectors.config import Settings

    def names(model: type[BaseSettings]) -> set[str]:
        prefix, found = model.model_config.get("env_prefix", ""), set()
        for field, info in model.model_fields.items():
            kind = info.annotation
            if isinstance(kind, type) and issubclass(kind, BaseSettings):
                found |= names(kind)  # built by its default_factory: it reads its own prefix
            found.add((prefix + (info.alias or field)).upper())
        return found

    return names(Settings)


def env_read_by_the_code() -> set[str]:
    pattern = re.compile(r"""(?:environ\.get\(|environ\[|getenv\()\s*["'](TELEMETRY_\w+)["']""")
    found = set()
    for folder in ("collectors", "plugins", "dags"):
        for path in (ROOT / folder).rglob("*.py"):
            found.update(pattern.findall(path.read_text()))
    return found


def test_telemetry_keys_are_real_settings() -> None:
    known = settings_env_names() | env_read_by_the_code()
    for name, service in services().items():
        for key in service.get("environment") or {}:
            if key.startswith("TELEMETRY_"):
                assert key in known, f"{name}: {key} is neither a setting of collectors.config nor read by the code"


def test_telemetry_values_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    from collectors.config import Settings

    for name, service in services().items():
        env = {k: interpolate(str(v)) for k, v in (service.get("environment") or {}).items()}
        if not any(k in settings_env_names() for k in env):
            continue
        for key in list(os.environ):
            if key.startswith("TELEMETRY_"):
                monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        try:
            Settings()  # a malformed URL, number, boolean or date is refused
        except ValidationError as error:
            pytest.fail(f"{name}: invalid TELEMETRY_* values: {error}")


def test_other_environment_keys_are_known() -> None:
    for name, service in services().items():
        family = image_family(service)
        for key in service.get("environment") or {}:
            if key.startswith(("TELEMETRY_", "AIRFLOW__", "AIRFLOW_CONN_")):
                continue
            assert key in IMAGE_ENV[family], f"{name}: {key} is read by nothing in the {family} image"


def test_airflow_options_exist(probes: dict[str, Any]) -> None:
    for (section, key), exists in probes["airflow_options"].items():
        if (section, key) in PROVIDER_OPTIONS and not celery_provider_installed():
            continue
        assert exists, f"AIRFLOW__{section.upper()}__{key.upper()} is not an Airflow option"


def test_no_literal_secrets() -> None:
    for name, service in services().items():
        for key, value in (service.get("environment") or {}).items():
            if any(word in key for word in SECRET_WORDS):
                assert REFERENCE.fullmatch(str(value)), f"{name}: {key} must be a ${{VAR}} from .env, not a value"
    for text in strings(compose()):
        for password in re.findall(r"://[^:/@\s]*:([^@\s]*)@", text):  # user:password@ in URLs
            assert not password or REFERENCE.fullmatch(password), f"literal password in {text!r}"
        for password in re.findall(r"PASSWORD\s+'([^']*)'", text, re.I):  # SQL
            assert REFERENCE.fullmatch(password), f"literal password in {text!r}"


# --- start order --------------------------------------------------------------------------------------


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {target: spec.get("condition", "service_started") for target, spec in deps.items()}


def test_depends_on_conditions_hold() -> None:
    for name, service in services().items():
        for target, condition in depends_on(service).items():
            assert target in services(), f"{name} depends on unknown {target}"
            other = services()[target]
            if condition == "service_healthy":
                assert "healthcheck" in other, f"{name} waits for {target} to be healthy; it has no healthcheck"
            elif condition == "service_completed_successfully":
                assert other.get("restart", "no") in ("no", "on-failure"), f"{target} is not a one-shot"
            else:
                pytest.fail(f"{name} -> {target}: condition {condition} does not wait for readiness")


def test_long_running_services_have_healthchecks() -> None:
    for name, service in services().items():
        if service.get("restart") in ("always", "unless-stopped"):
            assert "healthcheck" in service, f"{name} restarts forever but has no healthcheck"


def test_start_order() -> None:
    def needs(name: str, target: str, condition: str) -> None:
        assert depends_on(services()[name]).get(target) == condition, f"{name} must wait for {target} ({condition})"

    for name in AIRFLOW_SUBCOMMANDS:
        needs(name, "airflow-init", "service_completed_successfully")
        needs(name, "postgres", "service_healthy")
        needs(name, "redis", "service_healthy")
    needs("airflow-init", "postgres", "service_healthy")
    needs("warehouse-init", "warehouse", "service_healthy")
    needs("receiver", "warehouse-init", "service_completed_successfully")
    needs("airflow-worker", "warehouse-init", "service_completed_successfully")
    needs("host-collector", "receiver", "service_healthy")


def test_the_receiver_and_the_host_collector_serve_metrics_to_the_compose_network() -> None:
    """/metrics bound to 127.0.0.1 inside a container cannot be scraped by anything else."""
    for name in ("receiver", "host-collector"):
        env = services()[name]["environment"]
        assert env.get("TELEMETRY_METRICS_ADDR") == "0.0.0.0", name


# --- monitoring ---------------------------------------------------------------------------------------


def prometheus_flags() -> dict[str, str]:
    command = run_argv(services()["prometheus"])
    assert command[0] == "prometheus", command
    return dict(token.removeprefix("--").split("=", 1) for token in command[1:])


def test_prometheus_runs_the_checked_config_and_keeps_its_data_in_a_volume() -> None:
    """The config Prometheus reads is collectors/monitoring/prometheus.yml (promtool-checked in tests/monitoring),
    its alert rules beside it; its samples outlive the container."""
    flags = prometheus_flags()
    targets = {target: source for source, target in mounts(services()["prometheus"])}
    config = PurePosixPath(flags["config.file"])
    source = targets.get(str(config.parent))
    assert source is not None, f"{config.parent} is not a mount"
    assert (COMPOSE_FILE.parent / source / config.name).resolve() == PROMETHEUS_CONFIG
    rule_files = yaml.safe_load(PROMETHEUS_CONFIG.read_text())["rule_files"]
    assert rule_files and all((PROMETHEUS_CONFIG.parent / rules).is_file() for rules in rule_files)
    assert targets.get(flags["storage.tsdb.path"]) in (compose().get("volumes") or {}), "TSDB on a named volume"


def test_prometheus_flags_exist() -> None:
    """Every flag is one Debian's prometheus (the one tests/monitoring runs, `make promtool`) accepts."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is missing: run `make promtool` (as root; `make test` does it)", pytrace=False)
    done = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30)
    known = done.stdout + done.stderr  # kingpin prints its help on stderr
    for flag in prometheus_flags():
        assert re.search(rf"--{re.escape(flag)}=", known), f"prometheus has no --{flag}"


def test_prometheus_scrapes_the_receiver_and_the_host_collector_where_they_listen() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    jobs = {
        job["job_name"]: [t for s in job["static_configs"] for t in s["targets"]] for job in config["scrape_configs"]
    }
    receiver_port = services()["receiver"]["environment"]["TELEMETRY_METRICS_PORT"]
    collector = run_argv(services()["host-collector"])
    collector_port = collector[collector.index("--metrics-port") + 1]
    assert jobs["receiver"] == [f"receiver:{receiver_port}"]
    assert jobs["host-collector"] == [f"host-collector:{collector_port}"]


def test_no_two_services_publish_the_same_host_port() -> None:
    published: dict[str, str] = {}
    for name, service in services().items():
        for mapping in service.get("ports", ()):
            host = interpolate(str(mapping)).rsplit(":", 1)[0].rsplit(":", 1)[-1]
            assert host not in published, f"{name} and {published.get(host)} both publish host port {host}"
            published[host] = name


# --- one image, the Compose version, profiles -----------------------------------------------------------


def test_the_image_is_built_once_and_run_by_name() -> None:
    """One service builds the project's image (and names it); the others run it by that name, so `docker compose
    build` builds it once instead of once per service."""
    building = [name for name, service in services().items() if "build" in service]
    assert len(building) == 1, f"services with a build: {building}"
    image = services()[building[0]].get("image")
    assert image, f"{building[0]} builds an image without naming it: the others could not run it"
    users = {name for name, service in services().items() if service.get("image") == image}
    assert users >= set(PROJECT_SERVICES) | AIRFLOW_SERVICES | set(PROFILE_SERVICES), sorted(users)
    assert building[0] == "airflow-init", "the README's first step, `docker compose up airflow-init`, builds it"


def version(text: str) -> tuple[int, ...]:
    assert re.fullmatch(r"\d+\.\d+\.\d+", text), f"{text!r} is not a version"
    return tuple(int(part) for part in text.split("."))


def test_the_file_names_the_compose_version_its_features_need() -> None:
    minimum = compose().get("x-compose-minimum-version")
    assert minimum, "x-compose-minimum-version is missing"
    used = {
        "build.dockerfile_inline": any("dockerfile_inline" in (s.get("build") or {}) for s in services().values()),
        "profiles": any("profiles" in s for s in services().values()),
        "depends_on condition service_completed_successfully": any(
            "service_completed_successfully" in depends_on(s).values() for s in services().values()
        ),
    }
    assert set(used) == set(COMPOSE_FEATURES)
    needed = max(COMPOSE_FEATURES[feature] for feature, present in used.items() if present)
    assert version(minimum) >= needed, f"the file needs Compose {needed}, it says {minimum}"
    assert version(minimum) == needed, f"Compose {minimum} is more than the features need ({needed})"
    header = COMPOSE_FILE.read_text().split("\nx-", 1)[0]
    short = ".".join(map(str, version(minimum)[:2]))
    assert re.search(rf"^# Needs Docker Compose {re.escape(short)} or later", header, re.M), "the header comment"


def test_the_official_profiles_are_there() -> None:
    for name, profile in PROFILE_SERVICES.items():
        assert services()[name].get("profiles") == [profile], f"{name} must be in profile {profile} only"
    others = {name for name, service in services().items() if "profiles" in service} - set(PROFILE_SERVICES)
    assert not others, f"`docker compose up` would not start {sorted(others)}"
    cli = services()["airflow-cli"]
    assert run_argv(cli) == ["bash", "-c", "airflow"], "`docker compose run airflow-cli <args>`: airflow <args>"
    assert cli["environment"].get("CONNECTION_CHECK_MAX_COUNT") == "0"
    assert run_argv(services()["flower"]) == ["airflow", "celery", "flower"]
    flower_port = next(p for p in services()["flower"]["ports"] if str(p).endswith(":5555"))
    assert str(flower_port).startswith("127.0.0.1:"), "Flower has no login: this machine only"


# --- Celery: what tests/e2e/test_celery_backfill.py runs ---------------------------------------------


def test_the_celery_settings_are_those_the_end_to_end_test_proves() -> None:
    """collectors.dev.local_airflow.CELERY_SETTINGS, which the CeleryExecutor end-to-end test runs with, hold for
    every Airflow service; the broker and the result backend have the harness's form, on compose's hosts."""
    for name in sorted(AIRFLOW_SERVICES | set(PROFILE_SERVICES)):
        env = services()[name]["environment"]
        assert {key: env.get(key) for key in CELERY_SETTINGS} == CELERY_SETTINGS, name
        broker = env["AIRFLOW__CELERY__BROKER_URL"]
        assert re.fullmatch(r"redis://redis:6379/\d+", broker), f"{name}: broker {broker}"
        metadata_url = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace("postgresql+psycopg2://", "postgresql://")
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == celery_result_backend(metadata_url), name
        # the queue: the harness's default, which is Airflow's ([operators] default_queue unset here)
        assert "AIRFLOW__OPERATORS__DEFAULT_QUEUE" not in env, name
    assert CeleryWorkers(broker_url="redis://redis:6379/0").queue == "default"
    worker = run_argv(services()["airflow-worker"])
    assert worker == ["airflow", "celery", "worker"], f"options beyond the settings: {worker}"
