import subprocess
import sys
from pathlib import Path

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
