"""Settings: command line > QMIRROR_* environment > [tool.qmirror] file > defaults."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from qmirror.cli import main
from qmirror.errors import QmirrorError
from qmirror.live import config
from qmirror.live.launcher import DEFAULT_BINARY
from qmirror.verify.check import check
from qmirror.verify.ignore import IgnoreRules, apply_to_check


FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "qemu-7.2" / "x86_64"

PYPROJECT = """
[project]
name = "my-device"

[tool.qmirror]
qemu = "/opt/qemu/bin/qemu-system-x86_64"
machine-args = ["-machine", "q35", "-m", "2G"]
command-timeout = 12.5
boot-seconds = 3

[tool.qmirror.ignore]
regions = ["^kvm-"]
fields = ["accel"]
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    sub = tmp_path / "tests" / "deep"
    sub.mkdir(parents=True)
    return sub


def test_defaults_without_a_file(tmp_path: Path) -> None:
    c = config.load(env={}, cwd=tmp_path)
    assert (c.qemu, c.machine_args, c.connect_timeout, c.boot_seconds) == (
        DEFAULT_BINARY,
        (),
        30.0,
        None,
    )
    assert c.file is None and c.origin("qemu") == "default"
    assert not c.ignore


def test_the_file_is_found_walking_up(project: Path) -> None:
    c = config.load(env={}, cwd=project)
    assert c.file == project.parent.parent / "pyproject.toml"
    assert c.qemu == "/opt/qemu/bin/qemu-system-x86_64"
    assert c.machine_args == ("-machine", "q35", "-m", "2G")
    assert (c.command_timeout, c.connect_timeout, c.boot_seconds) == (12.5, 30.0, 3.0)
    assert c.ignore.region("kvm-apic-msi") and not c.ignore.region("apic-msi")
    assert c.ignore.fields == {"accel"}
    assert c.origin("qemu") == f"file {c.file}"


def test_a_pyproject_without_our_table_is_passed_by(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(PYPROJECT)
    inner = tmp_path / "inner"
    inner.mkdir()
    (inner / "pyproject.toml").write_text('[project]\nname = "other"\n')
    assert config.load(env={}, cwd=inner).file == tmp_path / "pyproject.toml"


def test_precedence_cli_over_env_over_file(project: Path) -> None:
    env = {
        "QMIRROR_QEMU": "/env/qemu",
        "QMIRROR_MACHINE_ARGS": "-machine pc -m '1G'",
        "QMIRROR_IGNORE_FIELDS": "priority, offset",
    }
    c = config.load(env=env, cwd=project)
    assert c.qemu == "/env/qemu" and c.origin("qemu") == "env QMIRROR_QEMU"
    assert c.machine_args == ("-machine", "pc", "-m", "1G")
    assert c.ignore.fields == {"priority", "offset"}
    assert c.ignore.region("kvm-x")  # still from the file
    c = config.load(cli={"qemu": "/cli/qemu", "boot_seconds": None}, env=env, cwd=project)
    assert c.qemu == "/cli/qemu" and c.origin("qemu") == "command line"
    assert c.boot_seconds == 3.0  # None: not given on the command line


def test_explicit_file_and_top_level_keys(tmp_path: Path, project: Path) -> None:
    own = tmp_path / "qmirror.toml"
    own.write_text('qemu = "/own/qemu"\n[ignore]\nfields = ["owner"]\n')
    c = config.load(config_file=own, env={}, cwd=project)
    assert c.file == own and c.qemu == "/own/qemu" and c.ignore.fields == {"owner"}
    c = config.load(env={"QMIRROR_CONFIG": str(own)}, cwd=project)
    assert c.qemu == "/own/qemu"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[tool.qmirror]\nqemu-binary = 'x'\n", "unknown key 'qemu-binary'"),
        (
            "[tool.qmirror]\ncommand-timeout = 'soon'\n",
            "command-timeout must be a number of seconds > 0",
        ),
        (
            "[tool.qmirror]\nmachine-args = '-machine q35'\n",
            "machine-args must be a list of strings",
        ),
        ("[tool.qmirror.ignore]\nregions = ['(unclosed']\n", "ignore regex '(unclosed'"),
        ("[tool.qmirror.ignore]\nfields = ['colour']\n", "unknown field 'colour'"),
        ("[tool.qmirror\n", "not valid TOML"),
    ],
)
def test_mistakes_name_the_file_and_key(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "settings.toml"
    path.write_text(content)
    with pytest.raises(QmirrorError, match=re.escape(message)) as err:
        config.load(config_file=path, env={}, cwd=tmp_path)
    assert str(path) in str(err.value)


def test_bad_environment_values(tmp_path: Path) -> None:
    with pytest.raises(QmirrorError, match=r"\$QMIRROR_CONNECT_TIMEOUT: cannot read 'x'"):
        config.load(env={"QMIRROR_CONNECT_TIMEOUT": "x"}, cwd=tmp_path)
    with pytest.raises(QmirrorError, match="must be a number of seconds > 0"):
        config.load(env={"QMIRROR_COMMAND_TIMEOUT": "-1"}, cwd=tmp_path)


def test_config_command(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    monkeypatch.setenv("QMIRROR_BOOT_SECONDS", "5")
    monkeypatch.delenv("QMIRROR_QEMU", raising=False)
    monkeypatch.delenv("QMIRROR_CONFIG", raising=False)
    assert main(["--color", "never", "config"]) == 0
    out = capsys.readouterr().out
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.strip()}
    assert "/opt/qemu/bin/qemu-system-x86_64" in lines["qemu"] and "file" in lines["qemu"]
    assert "5.0" in lines["boot-seconds"] and "env QMIRROR_BOOT_SECONDS" in lines["boot-seconds"]
    assert "default" in lines["connect-timeout"]


def test_ignore_hook_for_check(tmp_path: Path) -> None:
    """The hook check-like commands call: ignored fields and regions leave the verdict."""
    d = FIXTURES / "q35"
    tree = (d / "info-mtree-o-D.txt").read_bytes().decode()
    perturbed = tree.replace("(prio 4096, i/o): apic-msi", "(prio 4095, i/o): apic-msi")
    flat = (d / "info-mtree-f-o.txt").read_bytes().decode()
    result = check(perturbed, flat)
    assert not result.ok
    assert apply_to_check(result, IgnoreRules.parse(fields=["priority"])) == 2  # two views
    assert result.ok
    result = check(perturbed, flat)
    assert apply_to_check(result, IgnoreRules.parse(regions=["^apic-"])) == 2
    assert result.ok
    result = check(perturbed, flat)
    assert apply_to_check(result, IgnoreRules.parse(fields=["offset"])) == 0
    assert not result.ok
