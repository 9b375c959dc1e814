"""``hashsdk-train``: placeholder until the training pipeline lands."""

import sys


def main() -> None:
    print("hashsdk-train: not built yet", file=sys.stderr)
    sys.exit(2)
