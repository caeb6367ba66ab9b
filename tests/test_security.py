"""Nothing from QEMU's text is ever evaluated or handed to a shell (issue 6, security).

A static check over every module of the ``qmirror`` package (its syntax tree, so
comments and strings do not count): no ``eval``/``exec``/``compile``/``__import__``,
no ``os.system``/``os.popen``/``os.exec*``/``os.spawn*``, no ``shell=True``, no
``create_subprocess_shell``, no unpickling. Processes are started from argument
lists only. Cheap: it parses the sources once.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest


PACKAGE = Path(__file__).resolve().parent.parent / "qmirror"

FORBIDDEN_NAMES = {"eval", "exec", "compile", "__import__", "breakpoint"}
FORBIDDEN_ATTRIBUTES = {
    ("os", "system"),
    ("os", "popen"),
    ("os", "execl"),
    ("os", "execle"),
    ("os", "execlp"),
    ("os", "execv"),
    ("os", "execve"),
    ("os", "execvp"),
    ("os", "execvpe"),
    ("os", "spawnl"),
    ("os", "spawnv"),
    ("os", "spawnve"),
    ("os", "spawnlp"),
    ("os", "spawnvp"),
    ("os", "posix_spawn"),
    ("os", "posix_spawnp"),
    ("subprocess", "getoutput"),
    ("subprocess", "getstatusoutput"),
    ("asyncio", "create_subprocess_shell"),
    ("pickle", "load"),
    ("pickle", "loads"),
    ("marshal", "loads"),
    ("shelve", "open"),
}
FORBIDDEN_MODULES = {"pickle", "marshal", "shelve", "commands", "pty"}


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def problems(source: str, filename: str) -> list[str]:
    """Every forbidden construct in ``source``, as ``file:line: what``."""
    out: list[str] = []
    tree = ast.parse(source, filename)
    for node in ast.walk(tree):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            out += [
                f"{where}: imports {a.name}"
                for a in node.names
                if a.name.split(".")[0] in FORBIDDEN_MODULES
            ]
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module.split(".")[0] in FORBIDDEN_MODULES:
                out.append(f"{where}: imports {module}")
            out += [
                f"{where}: imports {module}.{a.name}"
                for a in node.names
                if (module, a.name) in FORBIDDEN_ATTRIBUTES or a.name in FORBIDDEN_NAMES
            ]
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = _dotted(func)
        if isinstance(func, ast.Name) and func.id in FORBIDDEN_NAMES:
            out.append(f"{where}: calls {func.id}()")
        if (
            isinstance(func, ast.Attribute)
            and (_dotted(func.value), func.attr) in FORBIDDEN_ATTRIBUTES
        ):
            out.append(f"{where}: calls {name}()")
        for kw in node.keywords:
            if kw.arg == "shell" and not (
                isinstance(kw.value, ast.Constant) and kw.value.value is False
            ):
                out.append(f"{where}: {name}(shell=...)")
    return out


def test_the_package_never_evaluates_or_shells_out() -> None:
    found: list[str] = []
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 10
    for path in files:
        found += problems(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE)))
    assert found == []


@pytest.mark.parametrize(
    "snippet",
    [
        "eval(text)",
        "exec(code)",
        "import os\nos.system('qemu ' + name)",
        "import subprocess\nsubprocess.run(cmd, shell=True)",
        "import subprocess\nsubprocess.Popen(cmd, shell=flag)",
        "import asyncio\nasyncio.create_subprocess_shell(line)",
        "import pickle\npickle.loads(blob)",
        "from os import system\nsystem(x)",
        "__import__(name)",
    ],
)
def test_the_check_catches(snippet: str) -> None:
    """The scan is not vacuous: each construct it forbids is found."""
    assert problems(snippet, "x.py")


def test_the_check_allows_argument_lists() -> None:
    ok = (
        "import subprocess, asyncio\n"
        "subprocess.run(['qemu-system-x86_64', '-S'], shell=False)\n"
        "asyncio.create_subprocess_exec('qemu', '-S')\n"
        "'eval(x)'  # a string, not a call\n"
    )
    assert problems(ok, "x.py") == []
