import subprocess
import sys
from pathlib import Path

from conftest import blocking_imports

HEAVY = ("torch", "torchvision", "onnx", "onnxruntime")


def test_import_hashsdk_loads_no_heavy_framework():
    code = (
        "import sys, hashsdk\n"
        "idx = hashsdk.HammingIndex(12)\n"
        f"heavy = [m for m in sys.modules if m.split('.')[0] in {HEAVY!r}]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_subpackages_install_from_their_folders():
    code = ("import hashsdk.train, hashsdk.export, pathlib; "
            "print(pathlib.Path(hashsdk.train.__file__).parent.name, "
            "pathlib.Path(hashsdk.export.__file__).parent.name)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd="/")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["train", "export"]


def test_console_scripts_are_installed():
    for name in ("hashsdk", "hashsdk-train", "hashsdk-export"):
        assert (Path(sys.executable).parent / name).exists(), name


def test_numpy_fallback_when_the_kernel_cannot_import():
    # what a machine without a C compiler gets: the same results through np.bitwise_count
    code = blocking_imports("hashsdk.index._kernel") + (
        "import numpy as np, hashsdk\n"
        "from hashsdk.index import _search\n"
        "assert not _search.has_kernel()\n"
        "idx = hashsdk.HammingIndex(12)\n"
        "assert idx.backend == 'numpy'\n"
        "idx.add(np.array([[1] * 12, [0] * 12, [1] * 6 + [0] * 6]))\n"
        "d, i = idx.search(np.array([1] * 12), 3)\n"
        "assert i.tolist() == [[0, 2, 1]] and d.tolist() == [[0, 6, 12]], (d, i)\n"
        "try:\n"
        "    hashsdk.HammingIndex(12, backend='c')\n"
        "except hashsdk.HashsdkError as e:\n"
        "    assert 'did not build' in str(e)\n"
        "else:\n"
        "    raise AssertionError('backend=c should fail without the kernel')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_export_loads_nothing_of_the_training_loop():
    # hashsdk.export needs the model module only; the loop and the GAN stay unloaded
    code = ("import sys, hashsdk.export, hashsdk.export.cli, hashsdk.export.onnx_export, "
            "hashsdk.export.verify, hashsdk.export.tensorrt_build\n"
            "loaded = [m for m in ('hashsdk.train.loop', 'hashsdk.train.gan', "
            "'hashsdk.train.stages', 'hashsdk.train.ship') if m in sys.modules]\n"
            "assert not loaded, loaded\n"
            "assert 'hashsdk.train.model' in sys.modules\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_public_api_is_typed():
    # py.typed ships: every parameter and return of what `import hashsdk` exports is annotated
    import inspect

    import hashsdk

    untyped = []

    def check(fn, name):
        sig = inspect.signature(fn)
        untyped.extend(f"{name}({p.name})" for p in sig.parameters.values()
                       if p.name not in ("self", "cls") and p.annotation is p.empty)
        if sig.return_annotation is sig.empty and not name.endswith("__init__"):
            untyped.append(f"{name} -> ?")

    for name in hashsdk.__all__:
        obj = getattr(hashsdk, name)
        if not inspect.isclass(obj):
            check(obj, name)
            continue
        for member, fn in vars(obj).items():
            fn = getattr(fn, "__func__", fn)
            if inspect.isfunction(fn) and (not member.startswith("_") or member == "__init__"):
                check(fn, f"{name}.{member}")
    assert not untyped, untyped
