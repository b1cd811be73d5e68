"""The pure core stays pure: no I/O, clock, randomness, database or logging, checked with ``ast``.

Every pure module (and every notifier module it imports, transitively) is parsed, never imported,
so a violation is caught even on a code path no test runs.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import notifier

PACKAGE_DIR = Path(notifier.__file__).parent
PURE_MODULES = (
    "diff",
    "rules",
    "pricing",
    "retry",
    "render",
    "phones",
    "signatures",
    "webhook_parse",
    "inbound",
    "wix_parse",
    "quiet",
    "ratelimit",
    "labels",
)

FORBIDDEN_MODULES = frozenset(
    {
        "httpx",
        "sqlalchemy",
        "structlog",
        "logging",
        "os",
        "time",
        "socket",
        "random",
        "secrets",
        "pathlib",
        "shutil",
        "subprocess",
        "importlib",
        "urllib.request",
        "asyncio",
    }
)
CLOCK_CALLS = frozenset({"now", "utcnow", "today"})
IO_BUILTINS = frozenset({"open", "input", "print"})
# ``from random import Random`` only as a type annotation, and only in retry.
RANDOM_TYPE_ALLOWED_IN = frozenset({"retry"})


def _forbidden(name: str) -> bool:
    return any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN_MODULES)


def _import_problems(node: ast.AST, module: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [f"import {a.name}" for a in node.names if _forbidden(a.name)]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        names = [a.name for a in node.names]
        if node.module == "random" and names == ["Random"] and module in RANDOM_TYPE_ALLOWED_IN:
            return []
        if _forbidden(node.module):
            return [f"from {node.module} import {', '.join(names)}"]
        return [f"from {node.module} import {n}" for n in names if _forbidden(f"{node.module}.{n}")]
    return []


def _call_problems(node: ast.AST) -> list[str]:
    if not isinstance(node, ast.Call):
        return []
    if isinstance(node.func, ast.Attribute) and node.func.attr in CLOCK_CALLS:
        return [f"clock call .{node.func.attr}()"]
    if isinstance(node.func, ast.Name) and node.func.id in IO_BUILTINS:
        return [f"I/O call {node.func.id}()"]
    return []


def impurities(source: str, module: str) -> list[str]:
    """Every impure import or call in ``source`` (the module's short name picks exceptions)."""
    problems: list[str] = []
    for node in ast.walk(ast.parse(source)):
        problems.extend(_import_problems(node, module))
        problems.extend(_call_problems(node))
    return problems


def notifier_imports(source: str) -> set[str]:
    """Short names of the notifier modules ``source`` imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("notifier."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.ImportFrom) and node.module == "notifier":
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("notifier."))
    return found


def module_closure(start: str) -> list[str]:
    """``start`` and every notifier module reachable from it through imports."""
    seen: list[str] = []
    pending = [start]
    while pending:
        name = pending.pop()
        path = PACKAGE_DIR / f"{name}.py"
        if name in seen or not path.exists():
            continue
        seen.append(name)
        pending.extend(notifier_imports(path.read_text(encoding="utf-8")))
    return seen


EXISTING_PURE = [name for name in PURE_MODULES if (PACKAGE_DIR / f"{name}.py").exists()]


@pytest.mark.parametrize("module", EXISTING_PURE)
def test_pure_module_and_its_notifier_imports_are_pure(module: str) -> None:
    """A pure module and the notifier modules it imports do no I/O, clock, random or logging."""
    problems = {
        name: found
        for name in module_closure(module)
        if (found := impurities((PACKAGE_DIR / f"{name}.py").read_text(encoding="utf-8"), name))
    }
    assert problems == {}


def test_pure_modules_of_this_helper_exist() -> None:
    """diff, rules, pricing and retry are on disk, so the parametrised check really runs on them."""
    assert {"diff", "rules", "pricing", "retry"} <= set(EXISTING_PURE)


IMPURE_SAMPLE = """
import os, time
import sqlalchemy.orm
from httpx import Client
from structlog import get_logger
import logging
from random import Random, choice
from datetime import datetime, date
from urllib import request
x = datetime.now()
y = date.today()
z = datetime.utcnow()
open("f")
"""


def test_checker_flags_every_kind_of_impurity() -> None:
    """The checker itself finds each forbidden import and call in a deliberately impure sample."""
    assert impurities(IMPURE_SAMPLE, "diff") == [
        "import os",
        "import time",
        "import sqlalchemy.orm",
        "from httpx import Client",
        "from structlog import get_logger",
        "import logging",
        "from random import Random, choice",
        "from urllib import request",
        "clock call .now()",
        "clock call .today()",
        "clock call .utcnow()",
        "I/O call open()",
    ]


def test_checker_allows_random_type_only_in_retry() -> None:
    """``from random import Random`` passes only in retry; harmless imports pass everywhere."""
    source = "from random import Random\nfrom datetime import datetime\nimport hmac, re\n"
    assert impurities(source, "retry") == []
    assert impurities(source, "rules") == ["from random import Random"]


def test_closure_follows_notifier_imports() -> None:
    """The walk reaches notifier modules imported by a pure module (rules → domain)."""
    assert {"rules", "domain"} <= set(module_closure("rules"))
