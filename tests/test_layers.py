"""The layering rules of docs/design.md, checked on the source (an import graph read with `ast`).

- Imports point one way: entry points (cli.py, train.py, convert_weights/__main__.py) ->
  commands -> library; the library and the converters never import the commands.
- No import cycle between the project's modules, imports inside functions included.
- Imports sit at the top of modules. A function-local import is only for an optional extra
  (torch, dlib, imageio-ffmpeg, gradio, TFDS, scipy, tensorboardX), and each extra is imported
  in one home, where its feature begins.
- `stylemask --help` and every `stylemask SUB --help` import neither JAX nor Flax.
- Every jitted function of the library is made by `compiling.jit` (its XLA options), never by
  `jax.jit` directly.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("stylemask_jax", "convert_weights", "configs")
ENTRY_POINTS = {"stylemask_jax.cli", "convert_weights.__main__", "train"}

# optional extra (top-level module name) -> the modules allowed to import it
EXTRA_HOMES = {
    "torch": ("stylemask_jax.reference.",),
    "dlib": ("stylemask_jax.photos.landmarks",),
    "face_recognition_models": ("stylemask_jax.photos.landmarks",),
    "imageio_ffmpeg": ("stylemask_jax.photos.video",),
    "gradio": ("stylemask_jax.demo.app",),
    "tensorflow_datasets": ("stylemask_jax.datasets.builder",),
    "array_record": ("stylemask_jax.datasets.builder",),
    "scipy": ("stylemask_jax.photos.align",),
    "tensorboardX": ("stylemask_jax.training.logs",),
}


def _modules() -> dict[str, str]:
    """module name -> file, for every module of the project's packages and train.py."""
    found = {"train": os.path.join(ROOT, "train.py")}
    for package in PACKAGES:
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if name.endswith(".py"):
                    rel = os.path.relpath(os.path.join(folder, name), ROOT)[:-3]
                    module = rel.replace(os.sep, ".").removesuffix(".__init__")
                    found[module] = os.path.join(folder, name)
    return found


MODULES = _modules()


def _imports(path: str, module: str):
    """Yields (imported module name, local: inside a function, line) of one file."""
    tree = ast.parse(open(path).read())
    local = {id(node) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef,
                                                                   ast.AsyncFunctionDef))
             for node in ast.walk(fn) if isinstance(node, (ast.Import, ast.ImportFrom))}
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, id(node) in local, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:  # `from package import module` imports the module
                name = f"{base}.{alias.name}"
                yield (name if name in MODULES else base), id(node) in local, node.lineno
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "library":
            if node.args and isinstance(node.args[0], ast.Constant):  # commands' lazy modules
                yield node.args[0].value, False, node.lineno


def _project(name: str) -> str | None:
    """The project module an import refers to (a module, or the package holding a name)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


GRAPH = {module: sorted({(_project(name), local, line) for name, local, line in
                         _imports(path, module) if _project(name)} - {(module, False, 0)})
         for module, path in MODULES.items()}


def _is_command_layer(module: str) -> bool:
    return module in ENTRY_POINTS or module.startswith("stylemask_jax.commands")


def test_the_library_never_imports_the_commands():
    wrong = [f"{module} imports {target}" for module, edges in GRAPH.items()
             if not _is_command_layer(module) for target, _, _ in edges
             if _is_command_layer(target)]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle():
    edges = {m: {t for t, _, _ in e if t != m and not MODULES[t].endswith("__init__.py")}
             for m, e in GRAPH.items()}
    state, cycles = {}, []

    def visit(node, stack):
        state[node] = "open"
        for target in sorted(edges[node]):
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


def test_function_local_imports_are_optional_extras_in_their_homes():
    wrong = []
    for module, path in MODULES.items():
        for name, local, line in _imports(path, module):
            top = name.split(".")[0]
            homes = EXTRA_HOMES.get(top)
            if homes is not None and not any(module == h or module.startswith(h) for h in homes):
                wrong.append(f"{path}:{line}: {name} outside its home {homes}")
            if local and homes is None and not module.startswith("stylemask_jax.reference."):
                wrong.append(f"{path}:{line}: function-local import of {name}")
    assert not wrong, "\n".join(wrong)


def test_the_library_jits_only_through_compiling():
    wrong = []
    for module, path in MODULES.items():
        if not module.startswith("stylemask_jax.") or module == "stylemask_jax.compiling":
            continue
        for node in ast.walk(ast.parse(open(path).read())):
            if (isinstance(node, ast.Attribute) and node.attr == "jit"
                    and getattr(node.value, "id", None) == "jax"):
                wrong.append(f"{path}:{node.lineno}: jax.jit (use stylemask_jax.compiling.jit)")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("argv", [[]] + [[name] for name in (
    "convert", "generate", "invert", "reenact", "train", "evaluate", "export", "dataset", "demo",
    "compare")])
def test_help_imports_neither_jax_nor_flax(argv):
    script = (
        "import importlib.util, sys\n"
        "from stylemask_jax.cli import main\n"
        f"try:\n    main({argv + ['--help']!r})\nexcept SystemExit:\n    pass\n"
        "loaded = sorted(m for m, mod in sys.modules.items() if m.split('.')[0] in "
        "('jax', 'jaxlib', 'flax', 'torch', 'orbax') and not isinstance(mod, "
        "importlib.util._LazyModule))\n"
        "print('LOADED', loaded)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout, result.stdout[-500:]
