"""The search kernels never read outside the codes they are given (tests/bounds_check.py)."""

import subprocess
import sys
from pathlib import Path

import pytest

from hashsdk.index import _search


@pytest.mark.skipif(not _search.has_kernel(), reason="the C kernel did not build")
@pytest.mark.skipif(sys.platform != "linux", reason="guard pages via mprotect: Linux")
def test_no_search_path_reads_past_the_end_of_its_buffers():
    # in a subprocess: an over-read is a segmentation fault, which would end the test run
    script = Path(__file__).with_name("bounds_check.py")
    done = subprocess.run([sys.executable, "-X", "faulthandler", str(script)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "checked" in done.stdout and " 0 cases" not in done.stdout
