"""The package's dependency rules, checked on its source (so a newcomer's map stays true).

- Nothing under ``bpr_numba/_kernels/`` imports anything but numpy, numba,
  numba's llvmlite, the standard library's math and types, and its sibling kernel
  modules.
- No module imports another module's private (underscore) name.
- Dependencies run one way: the layers below never import the layers above.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bpr_numba"

# Lower layers first; a module may import only from its own layer or below.
LAYERS = [
    {"_kernels"},
    {"_runtime", "data", "_csv", "_sparse", "_validation"},
    {"_scoring", "persistence"},
    {"_model", "_training", "_foldin"},
    {"estimator", "baselines", "metrics", "datasets", "split", "export", "implicit",
     "distributed"},
    {"cli", "__main__", "__init__"},
]


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        yield path, rel.parts


def _layer(top):
    for index, names in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"bpr_numba/{top} has no layer in tests/test_layout.py: add it.")


def _imports(path, parts):
    """(target top-level module inside bpr_numba or None, imported names, line) per import."""
    tree = ast.parse(path.read_text())
    package = list(parts[:-1]) if parts[-1] != "__init__" else list(parts[:-1])
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "bpr_numba":
                target = node.module.split(".")[1:]
            else:
                yield None, node.module, [a.name for a in node.names], node.lineno
                continue
            names = [a.name for a in node.names]
            if not target:  # "from . import x": x is the module
                for name in names:
                    yield [name], None, [], node.lineno
            else:
                yield target, None, names, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "bpr_numba":
                    yield alias.name.split(".")[1:] or ["__init__"], None, [], node.lineno
                else:
                    yield None, alias.name, [], node.lineno


def test_kernels_import_nothing_above_themselves():
    bad = []
    for path, parts in _modules():
        if parts[0] != "_kernels":
            continue
        for target, external, _, line in _imports(path, parts):
            if target is not None and target[0] != "_kernels":
                bad.append(f"{path.name}:{line} imports bpr_numba.{'.'.join(target)}")
            if external is not None and external.split(".")[0] not in (
                    "numpy", "numba", "llvmlite", "math", "types", "__future__"):
                bad.append(f"{path.name}:{line} imports {external}")
    assert not bad, bad


def test_no_module_imports_another_modules_private_name():
    bad = [f"{'/'.join(parts)}.py:{line} imports {name} from bpr_numba.{'.'.join(target)}"
           for path, parts in _modules()
           for target, _, names, line in _imports(path, parts)
           if target is not None for name in names if name.startswith("_")
           and not name.startswith("__")]
    assert not bad, bad


def test_dependencies_run_one_way():
    bad = []
    for path, parts in _modules():
        here = _layer(parts[0])
        for target, _, _, line in _imports(path, parts):
            if target is not None and target[0] != parts[0] and _layer(target[0]) > here:
                bad.append(f"{'/'.join(parts)}.py:{line} imports bpr_numba.{target[0]}, "
                           "a layer above it")
    assert not bad, bad


@pytest.mark.parametrize("rule", [test_no_module_imports_another_modules_private_name,
                                  test_dependencies_run_one_way])
def test_the_rules_can_fail(rule, tmp_path, monkeypatch):
    # A module that breaks both rules, put where the checks look.
    fake = tmp_path / "bpr_numba"
    (fake / "_kernels").mkdir(parents=True)
    (fake / "_kernels" / "hogwild.py").write_text("from ..estimator import _secret\n")
    (fake / "estimator.py").write_text("_secret = 1\n")
    monkeypatch.setitem(globals(), "PACKAGE", fake)
    with pytest.raises(AssertionError):
        rule()
