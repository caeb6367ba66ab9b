"""Settings: ``[tool.qmirror]`` in pyproject.toml, ``QMIRROR_*`` variables, the command line.

Precedence, highest first: command-line options, environment variables, the
configuration file, built-in defaults. The file is ``--config FILE`` (or
``$QMIRROR_CONFIG``) when given, otherwise the first ``pyproject.toml`` with a
``[tool.qmirror]`` table found walking up from the current directory (as ruff and
mypy look for theirs). A file given explicitly may also hold the keys at its top level
(a ``qmirror.toml``)::

    [tool.qmirror]
    qemu = "qemu-system-x86_64"          # QMIRROR_QEMU
    machine-args = ["-machine", "q35"]   # QMIRROR_MACHINE_ARGS (shell words)
    connect-timeout = 30                 # QMIRROR_CONNECT_TIMEOUT (seconds)
    command-timeout = 30                 # QMIRROR_COMMAND_TIMEOUT (seconds)
    boot-seconds = 3                     # QMIRROR_BOOT_SECONDS: let firmware run first

    [tool.qmirror.ignore]
    regions = ["^kvm-"]                  # QMIRROR_IGNORE_REGIONS (shell words)
    fields = ["accel"]                   # QMIRROR_IGNORE_FIELDS (comma-separated)

Unknown keys and values of the wrong type are errors that name the file and key.
:func:`parse_table` and :func:`from_environment` are pure; :func:`load` reads the file.
"""

from __future__ import annotations

import argparse
import os
import shlex
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from qmirror.errors import ConfigError, QmirrorError
from qmirror.live.options import DEFAULT_BINARY
from qmirror.verify.ignore import IgnoreRules


__all__ = [
    "SETTINGS",
    "Config",
    "describe",
    "find_pyproject",
    "from_args",
    "from_environment",
    "load",
    "parse_table",
]


@dataclass(frozen=True, slots=True)
class Config:
    """Effective settings, with where each came from (:attr:`origins`)."""

    qemu: str = DEFAULT_BINARY
    machine_args: tuple[str, ...] = ()
    connect_timeout: float = 30.0
    command_timeout: float = 30.0
    boot_seconds: float | None = None
    ignore_regions: tuple[str, ...] = ()
    ignore_fields: tuple[str, ...] = ()
    #: Setting name → ``default``, ``file PATH``, ``env QMIRROR_X`` or ``command line``.
    origins: Mapping[str, str] = field(default_factory=dict)
    #: The configuration file that was read, if any.
    file: Path | None = None

    @property
    def ignore(self) -> IgnoreRules:
        """The ignore rules, compiled."""
        return IgnoreRules.parse(
            self.ignore_regions, self.ignore_fields, origin=self.origins.get("ignore_regions", "")
        )

    def origin(self, name: str) -> str:
        return self.origins.get(name, "default")


#: The settings: (file key, attribute, environment variable).
SETTINGS = (
    ("qemu", "qemu", "QMIRROR_QEMU"),
    ("machine-args", "machine_args", "QMIRROR_MACHINE_ARGS"),
    ("connect-timeout", "connect_timeout", "QMIRROR_CONNECT_TIMEOUT"),
    ("command-timeout", "command_timeout", "QMIRROR_COMMAND_TIMEOUT"),
    ("boot-seconds", "boot_seconds", "QMIRROR_BOOT_SECONDS"),
    ("ignore.regions", "ignore_regions", "QMIRROR_IGNORE_REGIONS"),
    ("ignore.fields", "ignore_fields", "QMIRROR_IGNORE_FIELDS"),
)
_ATTRS = {attr for _, attr, _ in SETTINGS}


def _string(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError("a non-empty string")
    return value


def _strings(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError("a list of strings")
    return tuple(value)


def _seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise TypeError("a number of seconds > 0")
    return float(value)


def _boot(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise TypeError("a number of seconds >= 0")
    return float(value) if value else None


_CHECKS: dict[str, Callable[[object], Any]] = {
    "qemu": _string,
    "machine_args": _strings,
    "connect_timeout": _seconds,
    "command_timeout": _seconds,
    "boot_seconds": _boot,
    "ignore_regions": _strings,
    "ignore_fields": _strings,
}


def _checked(attr: str, value: object, where: str, key: str) -> Any:
    try:
        return _CHECKS[attr](value)
    except TypeError as err:
        raise ConfigError(f"{where}: {key} must be {err}, not {value!r}") from err


def parse_table(table: Mapping[str, object], *, origin: str) -> dict[str, Any]:
    """The settings in one ``[tool.qmirror]`` table, checked.

    :param origin: the file, for messages and :attr:`Config.origins`.
    :raise ConfigError: an unknown key or a value of the wrong type.
    """
    out: dict[str, Any] = {}
    known = {k for k, _, _ in SETTINGS if "." not in k} | {"ignore"}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(
                f"{origin}: unknown key {key!r} in [tool.qmirror] "
                f"(known: {', '.join(k for k, _, _ in SETTINGS)})"
            )
        if key == "ignore":
            if not isinstance(value, dict):
                raise ConfigError(f"{origin}: ignore must be a table ([tool.qmirror.ignore])")
            for sub, subvalue in value.items():
                if sub not in ("regions", "fields"):
                    raise ConfigError(
                        f"{origin}: unknown key {sub!r} in [tool.qmirror.ignore]"
                        " (known: regions, fields)"
                    )
                attr = f"ignore_{sub}"
                out[attr] = _checked(attr, subvalue, origin, f"ignore.{sub}")
            continue
        attr = next(a for k, a, _ in SETTINGS if k == key)
        out[attr] = _checked(attr, value, origin, key)
    if "ignore_regions" in out or "ignore_fields" in out:
        IgnoreRules.parse(
            out.get("ignore_regions", ()), out.get("ignore_fields", ()), origin=origin
        )
    return out


def from_environment(env: Mapping[str, str]) -> dict[str, tuple[Any, str]]:
    """The settings given as ``QMIRROR_*`` variables: attribute → (value, variable).

    Lists are shell words (``QMIRROR_MACHINE_ARGS="-machine q35 -m 2G"``), except
    ``QMIRROR_IGNORE_FIELDS``, which is comma-separated. Empty variables are unset.

    :raise ConfigError: a value that does not parse.
    """
    out: dict[str, tuple[Any, str]] = {}
    for _, attr, var in SETTINGS:
        raw = env.get(var, "")
        if not raw.strip():
            continue
        value: object
        try:
            if attr in ("machine_args", "ignore_regions"):
                value = shlex.split(raw)
            elif attr == "ignore_fields":
                value = [f.strip() for f in raw.split(",") if f.strip()]
            elif attr in ("connect_timeout", "command_timeout", "boot_seconds"):
                value = float(raw)
            else:
                value = raw
        except ValueError as err:
            raise ConfigError(f"${var}: cannot read {raw!r}: {err}") from err
        out[attr] = (_checked(attr, value, f"${var}", var), f"env {var}")
    if "ignore_regions" in out or "ignore_fields" in out:
        regions = out["ignore_regions"][0] if "ignore_regions" in out else ()
        names = out["ignore_fields"][0] if "ignore_fields" in out else ()
        IgnoreRules.parse(regions, names, origin="$QMIRROR_IGNORE_*")
    return out


def find_pyproject(start: Path) -> Path | None:
    """The first ``pyproject.toml`` with a ``[tool.qmirror]`` table, from ``start`` up."""
    for directory in (start, *start.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            try:
                doc = _read_toml(candidate)
            except QmirrorError:
                continue  # not ours to complain about unless it has our table
            if isinstance(doc.get("tool"), dict) and "qmirror" in doc["tool"]:
                return candidate
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror or err}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: not UTF-8 text (byte {err.start})") from err


def table_of(path: Path, doc: Mapping[str, Any], *, explicit: bool) -> Mapping[str, object]:
    """The qmirror table of a TOML document: ``[tool.qmirror]``, or for a file named
    explicitly without one, its top level."""
    tool = doc.get("tool")
    if isinstance(tool, dict) and "qmirror" in tool:
        table = tool["qmirror"]
        if not isinstance(table, dict):
            raise ConfigError(f"{path}: tool.qmirror must be a table")
        return table
    if explicit and path.name != "pyproject.toml":
        return doc
    return {}


def load(
    *,
    cli: Mapping[str, object] | None = None,
    config_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Config:
    """The effective settings.

    :param cli: settings given on the command line (attribute names; ``None`` values
        are not given).
    :param config_file: ``--config FILE``; default ``$QMIRROR_CONFIG``, else the
        nearest ``pyproject.toml`` with ``[tool.qmirror]``.
    :param env: the environment (default ``os.environ``).
    :param cwd: where to start looking for pyproject.toml (default the current directory).
    :raise ConfigError: the file cannot be read, or a setting is wrong.
    """
    env = os.environ if env is None else env
    explicit = config_file or env.get("QMIRROR_CONFIG") or None
    path = Path(explicit) if explicit else find_pyproject(cwd or Path.cwd())
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    if path is not None:
        if explicit and not path.exists():
            raise ConfigError(f"configuration file {path} does not exist")
        if path.is_dir():  # /dev/null and other readable non-files are fine: empty
            raise ConfigError(f"configuration file {path} is a directory")
        table = table_of(path, _read_toml(path), explicit=bool(explicit))
        for attr, value in parse_table(table, origin=str(path)).items():
            values[attr], origins[attr] = value, f"file {path}"
    for attr, (value, origin) in from_environment(env).items():
        values[attr], origins[attr] = value, origin
    for attr, value in (cli or {}).items():
        if value is None:
            continue
        if attr not in _ATTRS:
            raise ValueError(f"unknown setting {attr!r}")
        values[attr] = _checked(
            attr,
            list(value) if isinstance(value, tuple) else value,
            "command line",
            attr.replace("_", "-"),
        )
        origins[attr] = "command line"
    config = replace(Config(), **values, origins=origins, file=path)
    config.ignore  # noqa: B018 - compile now, so a bad combination fails early
    return config


def from_args(args: argparse.Namespace, **cli: object) -> Config:
    """The hook for commands: settings for a parsed command line.

    Reads the global ``--config FILE`` from ``args``; ``cli`` carries the command's own
    options that override settings (``qemu=args.qemu``, ``ignore_fields=...``), ``None``
    meaning "not given".
    """
    return load(cli=cli, config_file=getattr(args, "config", None))


def describe(config: Config) -> list[tuple[str, str, str]]:
    """(setting, value, origin) rows for ``qmirror config``."""
    rows = []
    for key, attr, _ in SETTINGS:
        value = getattr(config, attr)
        shown = (
            shlex.join(value)
            if isinstance(value, tuple)
            else ("none" if value is None else str(value))
        )
        rows.append((key, shown, config.origin(attr)))
    return rows
