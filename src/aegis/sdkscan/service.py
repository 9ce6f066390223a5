"""Parse Python files and report imports of cloud-provider SDKs.

Aegis reaches object storage only through ``aegis.storage`` (obstore); a provider SDK in runtime
code is a finding. Detected forms: ``import boto3``, ``from google.cloud import storage``,
``importlib.import_module("boto3")``, ``__import__("azure.storage.blob")`` and
``import_module`` called through an alias, each when the module name is a string literal.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

# Top-level packages (or dotted prefixes) that are provider SDKs.
SDK_PREFIXES: tuple[str, ...] = (
    "boto3",
    "botocore",
    "aiobotocore",
    "aioboto3",
    "s3transfer",
    "google.cloud",
    "google.api_core",
    "google.auth",
    "googleapiclient",
    "azure",
    "oci",
    "ibm_boto3",
    "ibm_botocore",
    "alibabacloud",
    "aliyunsdkcore",
    "oss2",
    "tencentcloud",
)
SKIP_DIRS = {
    ".git",
    ".venv",
    "venv",
    "node_modules",
    "__pycache__",
    ".tox",
    ".mypy_cache",
    "build",
    "dist",
}


@dataclass(frozen=True)
class Finding:
    path: Path
    line: int
    module: str
    how: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.how} {self.module}"


class ScanError(Exception):
    pass


def is_sdk(module: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in SDK_PREFIXES)


class _Visitor(ast.NodeVisitor):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.findings: list[Finding] = []
        self.importlib_aliases = {"importlib"}
        self.import_module_names = {"import_module"}

    def _add(self, node: ast.AST, module: str, how: str) -> None:
        if is_sdk(module):
            self.findings.append(Finding(self.path, getattr(node, "lineno", 0), module, how))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name == "importlib":
                self.importlib_aliases.add(alias.asname or "importlib")
            self._add(node, alias.name, "import")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and node.module:
            if node.module == "importlib":
                for alias in node.names:
                    if alias.name == "import_module":
                        self.import_module_names.add(alias.asname or "import_module")
            self._add(node, node.module, "from-import")
            for alias in node.names:  # from google import cloud
                self._add(node, f"{node.module}.{alias.name}", "from-import")

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        dynamic = (
            isinstance(func, ast.Name) and func.id in {"__import__", *self.import_module_names}
        ) or (
            isinstance(func, ast.Attribute)
            and func.attr == "import_module"
            and isinstance(func.value, ast.Name)
            and func.value.id in self.importlib_aliases
        )
        if dynamic and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                self._add(node, first.value, "dynamic import")
        self.generic_visit(node)


def scan_file(path: Path) -> list[Finding]:
    try:
        source = path.read_bytes()
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as exc:
        where = f"{path}:{exc.lineno}" if exc.lineno else str(path)
        raise ScanError(f"{where}: cannot parse: {exc.msg}") from None
    except ValueError as exc:  # a NUL byte in the source, on Pythons before 3.12
        raise ScanError(f"{path}: cannot parse: {exc}") from None
    except OSError as exc:
        raise ScanError(f"{path}: cannot read: {exc.strerror}") from None
    visitor = _Visitor(path)
    visitor.visit(tree)
    # One finding per module per line: `from google.cloud import storage` also matches
    # google.cloud.storage; keep the shortest name.
    seen: dict[tuple[int, str], Finding] = {}
    for finding in visitor.findings:
        key = (finding.line, finding.how)
        if key not in seen or len(finding.module) < len(seen[key].module):
            seen[key] = finding
    return sorted(seen.values(), key=lambda f: f.line)


def iter_python_files(paths: Iterable[Path]) -> Iterator[Path]:
    for root in paths:
        if root.is_file():
            yield root
            continue
        if not root.exists():
            raise ScanError(f"{root}: no such file or directory")
        for path in sorted(root.rglob("*.py")):
            if not SKIP_DIRS.intersection(path.relative_to(root).parts):
                yield path


def scan(paths: Iterable[Path]) -> list[Finding]:
    findings: list[Finding] = []
    for path in iter_python_files(paths):
        findings.extend(scan_file(path))
    return findings
