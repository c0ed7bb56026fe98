"""The package's rooms, read from the source text alone (no import, no JAX): `evaluation`
never imports `training`; project imports sit at module top (a function-level one says why
in a comment); module-level imports of project modules form no cycle; nothing imports the
entry points in experiments/; `checkpoint_steps`, once written twice, has one home."""
import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = "backmix_jax"
SCANNED = (PACKAGE, "experiments")  # the library and its entry points


def _module_name(path: pathlib.Path) -> str:
  parts = list(path.relative_to(ROOT).with_suffix("").parts)
  if parts[-1] == "__init__":
    parts.pop()
  return ".".join(parts)


def _modules(*roots: str) -> dict[str, pathlib.Path]:
  """{dotted module name: path} of every .py file under `roots`."""
  return {_module_name(p): p for root in roots for p in sorted((ROOT / root).rglob("*.py"))}


MODULES = _modules(*SCANNED)
PROJECT = _modules(PACKAGE)


def _resolve(name: str) -> str | None:
  """The project module an imported dotted name lives in (its longest known prefix)."""
  parts = name.split(".")
  for i in range(len(parts), 0, -1):
    if ".".join(parts[:i]) in PROJECT:
      return ".".join(parts[:i])
  return None


def _targets(node, module: str) -> list[str]:
  """Project modules an import statement loads: `from a.b import c` loads a.b.c when c is a
  module, else a.b; relative imports are resolved against `module`."""
  if isinstance(node, ast.Import):
    names = [a.name for a in node.names]
  else:
    base = node.module or ""
    if node.level:
      package = module.split(".")
      if not MODULES.get(module, pathlib.Path("x")).name == "__init__.py":
        package = package[:-1]
      package = package[:len(package) - node.level + 1]
      base = ".".join(package + ([base] if base else []))
    names = [f"{base}.{a.name}" if f"{base}.{a.name}" in PROJECT else base for a in node.names]
  return sorted({t for t in map(_resolve, names) if t})


def _imports(module: str):
  """(line, project modules, at module level?) of each import statement in `module`; an
  import under `if`/`try` at module level counts as module level, one in a def or class body
  as function level."""
  tree = ast.parse(MODULES[module].read_text())
  out = []

  def visit(node, nested: bool):
    for child in ast.iter_child_nodes(node):
      if isinstance(child, (ast.Import, ast.ImportFrom)):
        targets = _targets(child, module)
        if targets:
          out.append((child.lineno, targets, not nested))
      visit(child, nested or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                ast.Lambda, ast.ClassDef)))

  visit(tree, False)
  return out


def _has_comment(lines: list[str], lineno: int) -> bool:
  """A `#` comment on the import's line or on the line above it."""
  here = lines[lineno - 1]
  above = lines[lineno - 2].strip() if lineno >= 2 else ""
  return "#" in here.split("import", 1)[-1] or above.startswith("#")


def test_evaluation_imports_nothing_from_training():
  """Evaluation reads trained states; training calls evaluation, never the other way."""
  found = [f"{MODULES[m].relative_to(ROOT)}:{line} imports {t}"
           for m in MODULES if m.startswith(f"{PACKAGE}.evaluation")
           for line, targets, _ in _imports(m) for t in targets
           if t.startswith(f"{PACKAGE}.training")]
  assert not found, "evaluation must not import training: " + "; ".join(found)


def test_function_level_project_imports_say_why():
  """A project import inside a function hides a dependency (and, often, a cycle): allowed
  only with a comment saying why (an optional dependency such as matplotlib or tensorflow,
  start-up cost before a command's flags are parsed)."""
  found = []
  for m, path in MODULES.items():
    lines = path.read_text().splitlines()
    for line, targets, top in _imports(m):
      if not top and not _has_comment(lines, line):
        found.append(f"{path.relative_to(ROOT)}:{line}: {lines[line - 1].strip()}")
  assert not found, ("function-level project imports without a comment saying why (move them "
                     "to the module top): " + "; ".join(found))


def _graph() -> dict[str, set[str]]:
  """{module: project modules it imports at module level}; importing a.b.c also runs the
  __init__ of a.b, so a module depends on the packages above what it imports."""
  graph = {}
  for m in PROJECT:
    deps = set()
    for _, targets, top in _imports(m):
      if top:
        for t in targets:
          parts = t.split(".")
          deps.update(".".join(parts[:i]) for i in range(2, len(parts) + 1))
    deps.discard(m)
    # A package's own __init__ runs before its modules: not a dependency of them on it.
    graph[m] = {d for d in deps if d in PROJECT and not m.startswith(d + ".")}
  return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
  """One cycle of `graph` as [a, b, ..., a], or None."""
  state: dict[str, int] = {}  # 1 on the current path, 2 done
  path: list[str] = []

  def visit(node):
    state[node] = 1
    path.append(node)
    for dep in sorted(graph.get(node, ())):
      if state.get(dep) == 1:
        return path[path.index(dep):] + [dep]
      if dep not in state:
        found = visit(dep)
        if found:
          return found
    path.pop()
    state[node] = 2
    return None

  for node in sorted(graph):
    if node not in state:
      found = visit(node)
      if found:
        return found
  return None


def test_module_level_imports_have_no_cycle():
  """Modules import one another in one direction: a cycle makes import order matter (and
  invites the function-level imports that hide it)."""
  cycle = _cycle(_graph())
  assert cycle is None, "import cycle among project modules: " + " -> ".join(cycle)


def test_nothing_imports_the_entry_points():
  """experiments/*.py are flags plus one library call, run as `python -m experiments.<name>`;
  what they share lives in backmix_jax/commands/, so no module imports `experiments`."""
  found = []
  for path in sorted(p for root in (PACKAGE, "experiments", "tools", "tests", "configs")
                     for p in (ROOT / root).rglob("*.py")):
    for node in ast.walk(ast.parse(path.read_text())):
      names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
               [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
      if any(n == "experiments" or n.startswith("experiments.") for n in names):
        found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
  assert not found, "modules importing experiments (import backmix_jax.commands instead): " + \
      "; ".join(found)


def test_the_scanner_sees_cycles_and_hidden_imports():
  """The checks above can fail: a hand-made cycle is found, and a function-level import
  without a comment is told from one with a comment."""
  assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
  assert _cycle({"a": {"b"}, "b": set()}) is None
  lines = ["def f():", "  from backmix_jax import backmix", "  # matplotlib is optional",
           "  from backmix_jax.evaluation import plots", "  import x  # optional: tensorflow"]
  assert not _has_comment(lines, 2)
  assert _has_comment(lines, 4) and _has_comment(lines, 5)


def test_checkpoint_steps_has_one_home():
  """One function lists a workdir's checkpoint steps; every caller uses it (it existed twice,
  one listing folders, one opening Orbax)."""
  homes = [f"{path.relative_to(ROOT)}:{node.lineno}" for m, path in PROJECT.items()
           for node in ast.parse(path.read_text()).body
           if isinstance(node, ast.FunctionDef) and node.name == "checkpoint_steps"]
  assert len(homes) == 1 and homes[0].startswith("backmix_jax/training/workdir.py:"), (
      f"checkpoint_steps is defined at {homes}; want one home, backmix_jax/training/"
      "workdir.py, imported by its callers")
