"""The structure the package promises (docs/architecture.md): no import circle among its
modules, lazy imports included; the registries, each with a written contract; the test
harness out of the wheel."""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# source folder -> installed name (setup.py's SOURCE_FOLDERS)
FOLDERS = {"hashsdk": "hashsdk", "train": "hashsdk.train", "export": "hashsdk.export"}


def modules() -> dict[str, Path]:
    out = {}
    for folder, name in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join((name, *parts))] = path
        for path in (ROOT / folder).rglob("*.c"):  # the C extensions: modules without imports
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            out[".".join((name, *parts))] = path
    return out


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The package's modules that ``path`` imports anywhere in it (in functions too):
    ``from P import n`` counts as P.n where that is a module, else as P."""
    if path.suffix == ".c":
        return set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {m for m in found if m in known and m != name}


def circles() -> list[list[str]]:
    mods = modules()
    graph = {name: imports(path, name, set(mods)) for name, path in mods.items()}
    # Tarjan's strongly connected components: a component of two or more is a circle
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_circle_among_the_packages_modules_lazy_imports_included():
    assert circles() == []


def test_the_circle_finder_finds_a_circle(tmp_path, monkeypatch):
    # the check itself: two modules that import each other inside functions
    pkg = tmp_path / "hashsdk"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from hashsdk import b\n")
    (pkg / "b.py").write_text("def g():\n    from hashsdk.a import f\n")
    module = sys.modules[__name__]
    monkeypatch.setattr(module, "ROOT", tmp_path)
    monkeypatch.setattr(module, "FOLDERS", {"hashsdk": "hashsdk"})
    assert circles() == [["hashsdk.a", "hashsdk.b"]]


def test_the_test_harness_is_not_in_the_package():
    assert "hashsdk.serve.process" not in modules()


def test_index_kinds_satisfy_the_protocol_and_register_once():
    from hashsdk import HammingIndex, HashsdkError, MultiIndexHammingIndex
    from hashsdk.index import INDEX_KINDS, CodeIndex, index_kind, register_index_kind

    assert {k: v.cls for k, v in INDEX_KINDS.items()} == {
        "flat": HammingIndex, "mih": MultiIndexHammingIndex}
    for kind in INDEX_KINDS.values():
        assert isinstance(kind.create(16), CodeIndex)
    with pytest.raises(HashsdkError, match="already registered"):
        register_index_kind("flat", HammingIndex, "again")
    with pytest.raises(HashsdkError, match=r"expected one of \['flat', 'mih'\]"):
        index_kind("ivf")

    class NoSave:
        def add(self): ...

    with pytest.raises(HashsdkError, match="has no save"):
        register_index_kind("nosave", NoSave, "x")


def test_the_milvus_adapter_satisfies_the_index_protocol():
    pytest.importorskip("pymilvus")
    from hashsdk.index import CodeIndex
    from hashsdk.index.milvus import MilvusIndex

    # every member of the protocol, of the same kind (a method or a property)
    members = {name for name in dir(CodeIndex) if not name.startswith("_")}
    assert members == {"add", "remove", "search", "range_search", "bits", "code_size", "ntotal"}
    for name in members:
        assert isinstance(getattr(MilvusIndex, name), type(getattr(CodeIndex, name))), name


def test_encoder_backends_are_picked_by_suffix_from_the_registry(tmp_path):
    from hashsdk import HashsdkError
    from hashsdk.encoder.backends import ENCODER_BACKENDS, backend_for, choices, open_backend

    assert choices() == ("auto", *ENCODER_BACKENDS)
    assert backend_for("m.onnx") == "onnxruntime" and backend_for("m.engine") == "tensorrt"
    with pytest.raises(HashsdkError, match="backend must be one of"):
        open_backend(tmp_path / "m.onnx", "openvino")


def test_losses_registry_feeds_the_config_and_the_cli():
    from click.testing import CliRunner

    from hashsdk import HashsdkError
    from hashsdk.train import cli, config
    from hashsdk.train.losses import FAKE_LOSSES, REAL_LOSSES, lookup

    assert config.CHOICES[("hash", "loss")] == tuple(REAL_LOSSES)
    assert config.CHOICES[("hash", "fake_loss")] == tuple(FAKE_LOSSES)
    assert lookup("ce").needs_classifier and not lookup("pairwise").needs_classifier
    help_text = " ".join(CliRunner().invoke(cli.main, ["hash", "--help"],
                                            terminal_width=1000).output.split())
    for entry in (*REAL_LOSSES.values(), *FAKE_LOSSES.values()):
        assert f"{entry.name}: {entry.about}" in help_text
        assert callable(entry.load())
    with pytest.raises(HashsdkError, match="loss: expected one of"):
        config.from_dict({"hash": {"loss": "nope"}})


def test_export_targets_registry():
    from hashsdk.export.targets import EXPORT_TARGETS

    assert list(EXPORT_TARGETS) == ["onnx", "int8", "tensorrt"]
    assert EXPORT_TARGETS["int8"].fp32_path(Path("m.int8.onnx")) == Path("m.onnx")
    assert EXPORT_TARGETS["tensorrt"].fp32_path(Path("m.engine")) == Path("m.onnx")
