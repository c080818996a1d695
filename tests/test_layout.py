"""The house's rules, kept by a machine: sizes, one-way imports in layers, the model
directory's file names in one module, no repeated blocks, the public names importable.

docs/architecture.md draws the layers that LAYERS below declares; this test keeps the
picture true.
"""

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "seq2seq_shared"
MAX_FUNCTION, MAX_CLASS, MAX_MODULE = 50, 200, 400

# Lower layers never import higher ones (function-level imports included).
LAYERS = [
    ["_version", "config"],
    ["backend", "data"],
    ["model"],
    ["model_dir"],
    ["decoding", "runtime"],
    ["training"],
    ["console"],
    ["serve"],
    ["commands", "cli", "__main__", "__init__"],
]


def modules() -> dict[str, Path]:
    """{dotted name inside the package: path}, e.g. "data.files"."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path) -> set[str]:
    """The package's modules that `name` imports, at any depth of its code."""
    if name == "__init__":
        package = []
    elif path.name == "__init__.py":
        package = name.split(".")
    else:
        package = name.split(".")[:-1]
    known, found = modules(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - node.level + 1]
            stem = [*base, *(node.module.split(".") if node.module else [])]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("seq2seq_shared"):
            stem = node.module.split(".")[1:]
        else:
            continue
        # `from . import a, b` imports modules a and b; `from .a import f`, module a.
        named = {".".join([*stem, alias.name]) for alias in node.names} & set(known)
        found |= named or ({".".join(stem)} & set(known))
    return found - {name}


def layer(name: str) -> int:
    top = name.split(".")[0]
    return next(i for i, names in enumerate(LAYERS) if top in names)


def test_the_documented_picture_is_these_layers():
    """docs/architecture.md draws LAYERS: the same names, layer by layer."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    drawn = {
        int(number): sorted(re.sub(r"\.py$|/$", "", name.strip()) for name in names.split(","))
        for number, names in re.findall(r'L(\d+)\["\d+ · ([^<]+)<br/>', text)
    }
    assert drawn == {i: sorted(names) for i, names in enumerate(LAYERS)}


def test_every_module_has_a_layer_and_imports_run_one_way():
    wrong = []
    for name, path in modules().items():
        for target in imports_of(name, path):
            if layer(target) > layer(name):
                wrong.append(f"{name} (layer {layer(name)}) imports {target} ({layer(target)})")
    assert not wrong, "\n".join(wrong)


def test_no_import_circles():
    graph = {name: imports_of(name, path) for name, path in modules().items()}
    state: dict[str, int] = {}
    circles = []

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            if state.get(target) == 1:
                circles.append(" -> ".join([*trail[trail.index(target) :], target]))
            elif target not in state:
                visit(target, [*trail, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not circles, "\n".join(circles)


def oversized(source: str, label: str) -> list[str]:
    found = []
    lines = len(source.splitlines())
    if lines > MAX_MODULE:
        found.append(f"{label}: {lines} lines (> {MAX_MODULE})")
    for node in ast.walk(ast.parse(source)):
        size = getattr(node, "end_lineno", 0) - getattr(node, "lineno", 0) + 1
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and size > MAX_FUNCTION:
            found.append(f"{label}:{node.lineno} {node.name}() {size} lines")
        elif isinstance(node, ast.ClassDef) and size > MAX_CLASS:
            found.append(f"{label}:{node.lineno} class {node.name} {size} lines")
    return found


def test_no_function_class_or_module_over_its_limit():
    found = [f for name, path in modules().items() for f in oversized(path.read_text(), name)]
    assert not found, "\n".join(found)


def test_the_scripts_functions_and_classes_within_their_limits_too():
    """Scripts are read as often as the package; their modules may run long (one script,
    one tool), their functions and classes may not."""
    scripts = sorted((ROOT / "scripts").rglob("*.py"))
    found = [
        f
        for path in scripts
        for f in oversized(path.read_text(), str(path.relative_to(ROOT)))
        if "lines (>" not in f
    ]
    assert scripts and not found, "\n".join(found)


def test_the_size_check_catches_what_it_guards():
    long_function = "def f():\n" + "    x = 1\n" * MAX_FUNCTION
    long_class = "class C:\n" + "    x = 1\n" * MAX_CLASS
    assert oversized(long_function, "f") and oversized(long_class, "c")
    assert not oversized("def f():\n" + "    x = 1\n" * (MAX_FUNCTION - 1), "ok")


LAYOUT_NAMES = (
    "config.json",
    "model.weights.h5",
    "checksums.json",
    "training_state.json",
    "metrics.csv",
    "train.log",
    ".lock",
    "prepared-corpus",
    "compile_cache",
)


def test_the_model_directory_s_file_names_live_in_model_dir_only():
    found = []
    for name, path in modules().items():
        if name == "model_dir":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
                if text in LAYOUT_NAMES or re.fullmatch(r"step-.*\.npz|step-\{.*", text):
                    found.append(f"{name}:{node.lineno} {text!r}")
    assert not found, "use model_dir's names:\n" + "\n".join(found)


def pylint_duplicates(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pylint",
            "--disable=all",
            "--enable=duplicate-code",
            "--min-similarity-lines=4",
            "--ignore-imports=y",
            "--ignore-signatures=y",
            "--score=n",
            str(folder),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.skipif(
    shutil.which("pylint") is None
    and not (
        subprocess.run([sys.executable, "-c", "import pylint"], capture_output=True).returncode == 0
    ),
    reason="pylint is not installed (pip install -e '.[lint]')",
)
@pytest.mark.slow
def test_no_repeated_blocks_of_four_lines(tmp_path):
    result = pylint_duplicates(PACKAGE)
    assert result.returncode == 0, result.stdout
    # The check finds a block written twice (so a pass above means something).
    copy = tmp_path / "copy"
    copy.mkdir()
    block = (
        "def {}(items):\n    total = 0\n    for item in items:\n        total += item * 2\n"
        "    seen = sorted(items)\n    return total, seen\n"
    )
    (copy / "a.py").write_text(block.format("first"))
    (copy / "b.py").write_text(block.format("second"))
    assert pylint_duplicates(copy).returncode != 0


def documented_imports() -> list[str]:
    """Every `from seq2seq_shared... import ...` line in the README and the docs."""
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    found = set()
    for path in texts:
        if path.exists():
            found.update(
                re.findall(
                    r"^\s*(from seq2seq_shared[\w.]* import [\w, ]+)",
                    path.read_text(),
                    flags=re.MULTILINE,
                )
            )
    return sorted(found)


def test_the_names_the_manual_uses_import_and_the_package_stays_light():
    statements = documented_imports()
    assert "from seq2seq_shared import Translator" in statements
    code = "\n".join(statements)
    # The package itself imports no framework (its public names load Keras when used).
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import seq2seq_shared, sys; "
            "print([m for m in ('tensorflow', 'keras') if m in sys.modules])",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.stdout.strip() == "[]", result.stderr
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
