"""Export a self-contained "remote code" flavour of a pipeline: plain diffusers loads it with
``trust_remote_code=True`` and no ``vaebm_hub`` install.

Layout (diffusers' custom-code convention): ``model_index.json`` with ``_class_name: ["pipeline_vaebm",
"VAEBMPipeline"]`` and each component as ``["<file stem>", "<class>"]``; ``pipeline_vaebm.py`` at the root and
``<component>/<file stem>.py`` beside each component's config and weights.

The code files are generated from our source, never hand-copied: a class's module and every ``vaebm_hub`` module it
imports (transitively) are concatenated in dependency order with the package imports removed (a ``from .m import a
as b`` becomes ``b = a``). That is exact as long as no name is bound to two different objects in two inlined modules,
which is checked. The pipeline file imports the component classes it needs with one-dot relative imports
(``from .scheduler.scheduling_vaebm_langevin import LangevinScheduler``), the only form diffusers follows.

Pitfalls (``diffusers_integration.md`` §2): every local folder's code is copied into the shared
``HF_MODULES_CACHE/diffusers_modules/local``, where a file named like its folder (``vae/vae.py``) breaks the import
and equal names from different exports overwrite each other — so file stems are unique and derived from the defining
module (``modeling_vae`` → ``modeling_vaebm_vae``, ``modeling_vae_mlp`` → ``modeling_vaebm_vae_mlp``). diffusers
loads a component file twice (as ``local.<stem>`` for the component and ``local.<folder>.<stem>`` for the
pipeline's import), so classes exist twice: the pipeline never ``isinstance``-checks its components, but user code
comparing classes across the two will see different types. Local folders, too, need ``trust_remote_code=True``.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import os
import re
import shutil
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

from ..constants import LIBRARY_NAME
from .files import component_entries, pipeline_files, read_model_index, remote_code_files, stage_pipeline

PACKAGE = LIBRARY_NAME


def _package():
    """The package being exported, looked up by name at call time (as diffusers' loader resolves a library), so that
    this low-level module imports nothing above it."""
    return importlib.import_module(PACKAGE)


RELATIVE_IMPORT = re.compile(r"^\s*from\s+\.(\S+)\s+import", re.MULTILINE)  # what diffusers' loader follows


@dataclass(frozen=True)
class SourceModule:
    """A ``vaebm_hub`` module's source with its package imports as ``(node, absolute target)``: module-level ones
    (inlined) and lazy ones inside functions (package-only features, see :func:`_render_body`)."""

    name: str
    path: Path
    lines: tuple[str, ...]
    tree: ast.Module
    package_imports: tuple[tuple[ast.ImportFrom, str], ...]
    lazy_imports: tuple[tuple[ast.Import | ast.ImportFrom, str], ...]

    @property
    def has_future_annotations(self) -> bool:
        futures = [n for n in self.tree.body if isinstance(n, ast.ImportFrom) and n.module == "__future__"]
        return any(alias.name == "annotations" for node in futures for alias in node.names)


def _is_package_name(name: str | None) -> bool:
    return name is not None and (name == PACKAGE or name.startswith(PACKAGE + "."))


def _import_target(importer: str, node: ast.AST) -> str | None:
    """The package module an import statement names, or ``None`` if it is not a package import."""
    if isinstance(node, ast.Import):
        return next((alias.name for alias in node.names if _is_package_name(alias.name)), None)
    if not isinstance(node, ast.ImportFrom):
        return None
    if node.level == 0:
        return node.module if _is_package_name(node.module) else None
    base = importer.rsplit(".", node.level)[0]
    return f"{base}.{node.module}" if node.module else base


def read_source_module(name: str) -> SourceModule:
    """Parse a package module and check that its module-level package imports can be inlined."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None or spec.submodule_search_locations is not None:
        raise ValueError(f"{name} is not a module file; import classes from their defining module, not a package")
    path = Path(spec.origin)
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    top_level = {id(node) for node in tree.body}
    inlined, lazy = [], []
    lines = source.splitlines()
    for node in ast.walk(tree):
        if (target := _import_target(name, node)) is None:
            continue
        before, after = lines[node.lineno - 1][: node.col_offset], lines[node.end_lineno - 1][node.end_col_offset :]
        if before.strip() or after.split("#")[0].strip():
            raise ValueError(f"{path}:{node.lineno} shares its line with other code; put the import on its own line")
        if id(node) not in top_level:
            lazy.append((node, target))
            continue
        where = f"{path}:{node.lineno}"
        if isinstance(node, ast.Import) or node.module is None:
            raise ValueError(
                f"{where} imports the module {target} itself; the remote-code exporter can only inline "
                "`from .module import name` at module level"
            )
        if any(alias.name == "*" for alias in node.names):
            raise ValueError(f"{where} does a star import from {target}; import the names explicitly")
        inlined.append((node, target))
    return SourceModule(name, path, tuple(lines), tree, tuple(inlined), tuple(lazy))


def module_closure(roots: list[str], provided: dict[str, str] | None = None) -> list[str]:
    """``roots`` and every package module they import, dependencies first (depth-first, in import order); modules
    in ``provided`` are not followed (they are imported from another file instead)."""
    provided = provided or {}
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order or name in provided:
            return
        if name in visiting:
            raise ValueError(f"circular import through {name}; the exporter needs an acyclic module graph")
        visiting.add(name)
        for _, target in read_source_module(name).package_imports:
            visit(target)
        visiting.discard(name)
        order.append(name)

    for root in roots:
        visit(root)
    return order


def check_no_name_clashes(namespaces: dict[str, dict]) -> None:
    """Concatenating modules is exact only if no global name is bound to different objects in two of them
    (equal immutable constants count as the same). ``namespaces``: module name -> its globals, in file order."""
    seen: dict[str, tuple[str, object]] = {}
    for module, namespace in namespaces.items():
        for key, value in namespace.items():
            if key.startswith("__") and key.endswith("__"):
                continue
            if key in seen and not _same_binding(seen[key][1], value):
                raise ValueError(
                    f"{key!r} means different things in {seen[key][0]} and {module}; the remote-code exporter puts "
                    "both in one file, so rename one of them"
                )
            seen.setdefault(key, (module, value))


def _same_binding(a: object, b: object) -> bool:
    constant = (int, float, complex, str, bytes, bool, tuple, frozenset, type(None))
    return a is b or (type(a) is type(b) and isinstance(a, constant) and a == b)


def _lazy_replacement(node: ast.stmt, target: str, bundle: set[str], provided: dict[str, str]) -> str:
    """What a package import inside a function becomes: nothing (``pass``, or ``b = a`` for ``as``) when the module
    is in this file; the relative import when another component's file provides it; otherwise the feature needs
    the installed package (e.g. pushing to the Hub) and the statement becomes ``raise ImportError(...)``."""
    if isinstance(node, ast.ImportFrom) and target in bundle:
        aliases = [f"{a.asname} = {a.name}" for a in node.names if a.asname and a.asname != a.name]
        return "; ".join(aliases) or "pass"
    if isinstance(node, ast.ImportFrom) and target in provided:
        names = ", ".join(alias.name + (f" as {alias.asname}" if alias.asname else "") for alias in node.names)
        return f"from {provided[target]} import {names}"
    message = f"{target} is not part of this remote-code export; it needs `pip install vaebm-hub`"
    return f"raise ImportError({message!r})"


def _render_body(
    module: SourceModule, bundle: set[str], provided: dict[str, str], relative: dict[str, set[str]]
) -> str:
    """The module's source without its docstring, ``__future__`` imports and ``__all__``, with package imports
    rewritten: module-level ones from ``bundle`` are dropped (``as`` becomes an assignment), ones from ``provided``
    modules are collected into ``relative`` (import path -> names); lazy ones see :func:`_lazy_replacement`."""
    replaced: dict[int, list[str]] = {}  # first line of a rewritten statement -> its replacement lines
    dropped: set[int] = set()
    imports = {id(node): target for node, target in module.package_imports}
    for i, node in enumerate(module.tree.body):
        is_docstring = i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        is_future = isinstance(node, ast.ImportFrom) and node.module == "__future__"
        is_all = isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == ["__all__"]
        if not (is_docstring or is_future or is_all or id(node) in imports):
            continue
        replacement = []
        if id(node) in imports and imports[id(node)] in provided:
            names = {alias.name + (f" as {alias.asname}" if alias.asname else "") for alias in node.names}
            relative.setdefault(provided[imports[id(node)]], set()).update(names)
        elif id(node) in imports:
            replacement = [f"{a.asname} = {a.name}" for a in node.names if a.asname and a.asname != a.name]
        dropped.update(range(node.lineno, node.end_lineno + 1))
        replaced[node.lineno] = replacement
    for node, target in module.lazy_imports:
        dropped.update(range(node.lineno, node.end_lineno + 1))
        replaced[node.lineno] = [" " * node.col_offset + _lazy_replacement(node, target, bundle, provided)]
    kept = []
    for number, line in enumerate(module.lines, start=1):
        kept.extend(replaced.get(number, []) if number in dropped else [line])
    return re.sub(r"\n{3,}", "\n\n\n", "\n".join(kept).strip("\n"))


def render_bundle(modules: list[str], provided: dict[str, str] | None = None) -> str:
    """One self-contained Python file from ``modules`` (dependencies first); imports from ``provided`` modules
    become ``from .<folder>.<stem> import ...`` lines."""
    package = _package()
    provided = provided or {}
    check_no_name_clashes({name: vars(importlib.import_module(name)) for name in modules})
    sources = [read_source_module(name) for name in modules]
    relative: dict[str, set[str]] = {}
    bodies = []
    for source in sources:
        rel = source.path.relative_to(Path(package.__file__).parent).as_posix()
        body = _render_body(source, set(modules), provided, relative)
        bodies.append(f"# {'-' * 20} {PACKAGE}/{rel} {'-' * 20}\n\n{body}")
    listing = textwrap.fill(", ".join(modules), width=112, initial_indent="    ", subsequent_indent="    ")
    header = [
        f'"""Generated by `{PACKAGE}.hub.export_remote_code` from {PACKAGE} {package.__version__} (Apache-2.0); '
        "do not edit, re-export.\n\nSelf-contained copy of these modules, in dependency order, for "
        "`DiffusionPipeline.from_pretrained(..., trust_remote_code=True)`\nwithout installing "
        f'{PACKAGE}:\n\n{listing}\n"""',
    ]
    if any(source.has_future_annotations for source in sources):
        header.append("from __future__ import annotations")
    header += [f"from {path} import {', '.join(sorted(names))}" for path, names in sorted(relative.items())]
    return "\n\n".join(["\n\n".join(header), *bodies]) + "\n"


def module_file_stem(module_name: str) -> str:
    """Unique file stem for a defining module: ``modeling_vae`` → ``modeling_vaebm_vae``; kept if it says vaebm."""
    base = module_name.rsplit(".", 1)[-1]
    if "vaebm" in base:
        return base
    prefix, sep, rest = base.partition("_")
    return f"{prefix}_vaebm_{rest}" if sep else f"vaebm_{base}"


def _package_class(class_name: str) -> type:
    cls = getattr(_package(), class_name, None)
    if not isinstance(cls, type):
        raise ValueError(f"model_index.json names {class_name!r}, which {PACKAGE} does not export")
    return cls


def _write_export(source: Path, out: Path) -> None:
    index = read_model_index(source)
    if remote_code_files(index):
        raise ValueError(f"{source} is already a remote-code export (its _class_name is a list)")
    pipeline_module = _package_class(index["_class_name"]).__module__
    components = {
        name: _package_class(class_name).__module__
        for name, (library, class_name) in sorted(component_entries(index).items())
        if library == PACKAGE
    }
    stems = {name: module_file_stem(module) for name, module in components.items()}
    pipeline_stem = module_file_stem(pipeline_module)
    clashes = set(stems.values()) & (set(component_entries(index)) | {pipeline_stem})
    if clashes:
        raise ValueError(f"generated file names {sorted(clashes)} clash with folder or pipeline names")
    bundles = {name: module_closure([module]) for name, module in components.items()}
    provided: dict[str, str] = {}
    for name, module in components.items():  # a component's own module first, then what its file also inlines
        provided.setdefault(module, f".{name}.{stems[name]}")
    for name, modules in bundles.items():
        for module in modules:
            provided.setdefault(module, f".{name}.{stems[name]}")

    out.mkdir(parents=True, exist_ok=True)
    for rel in pipeline_files(source) if out.resolve() != source.resolve() else []:
        if "/" in rel:  # component configs and weights; the root README (usage of the package) stays behind
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / rel, out / rel)
    for name, modules in bundles.items():
        (out / name / f"{stems[name]}.py").write_text(render_bundle(modules), encoding="utf-8")
    pipeline_code = render_bundle(module_closure([pipeline_module], provided), provided)
    (out / f"{pipeline_stem}.py").write_text(pipeline_code, encoding="utf-8")

    index["_class_name"] = [pipeline_stem, index["_class_name"]]
    for name, stem in stems.items():
        index[name] = [stem, index[name][1]]
    staged_index = out / "model_index.json.tmp"  # replaced last and atomically: an interrupted in-place export
    staged_index.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(staged_index, out / "model_index.json")  # leaves the package layout, which still loads

    # diffusers copies exactly the files named by `from .x.y import` lines (found by regex) into its module cache
    imported = RELATIVE_IMPORT.findall(pipeline_code)
    unresolved = [module for module in imported if not (out / f"{module.replace('.', '/')}.py").is_file()]
    if unresolved or any(RELATIVE_IMPORT.search((out / n / f"{s}.py").read_text()) for n, s in stems.items()):
        raise RuntimeError(f"generated code has relative imports diffusers cannot follow ({unresolved}); a bug")


def export_remote_code(pipeline_or_dir, output_dir: str | Path) -> Path:
    """Write the remote-code flavour of a pipeline (object or saved folder) into the new or empty ``output_dir``.

    Load it without ``vaebm_hub`` with ``DiffusionPipeline.from_pretrained(output_dir, trust_remote_code=True)``;
    push it to its own repository with :func:`~vaebm_hub.hub.push_pipeline` (the code files go with it).
    """
    out = Path(output_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"output_dir {out} exists and is not an empty folder; choose a new folder")
    if isinstance(pipeline_or_dir, (str, os.PathLike)):
        _write_export(Path(pipeline_or_dir), out)
    else:
        with tempfile.TemporaryDirectory(prefix="vaebm_export_") as staging:
            stage_pipeline(pipeline_or_dir, staging)
            _write_export(Path(staging), out)
    return out


def add_remote_code(folder: str | Path) -> Path:
    """Turn a saved pipeline folder into the published layout in place: the generated code files are added and
    ``model_index.json`` is rewritten last, so an interrupted call leaves the package layout. Both
    ``VAEBMPipeline.from_pretrained(folder)`` (with this package) and ``DiffusionPipeline.from_pretrained(folder,
    trust_remote_code=True)`` (without it) load the result. A folder already in that layout is left as it is."""
    folder = Path(folder)
    if not remote_code_files(read_model_index(folder)):
        _write_export(folder, folder)
    return folder
