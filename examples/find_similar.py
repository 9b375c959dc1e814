"""Find images like this one: an Encoder and a saved index, nothing else (pip install hashsdk).

    python examples/find_similar.py model.onnx db.hidx query.jpg [-k 10]

Prints one line per result: id, Hamming distance, and the image path where the index was
built with `hashsdk index build --model` (which writes db.hidx.paths.txt).
"""

import argparse
from pathlib import Path

from hashsdk import Encoder, HammingIndex

parser = argparse.ArgumentParser(description="find images like this one")
parser.add_argument("model", help="model.onnx or model.engine from hashsdk-export")
parser.add_argument("index", help="db.hidx")
parser.add_argument("image", help="the query image")
parser.add_argument("-k", type=int, default=10)
args = parser.parse_args()

encoder = Encoder(args.model)
index = HammingIndex.load(args.index, mmap=True)
distances, ids = index.search(encoder.encode(args.image), args.k)

paths_file = Path(args.index + ".paths.txt")
paths = paths_file.read_text().splitlines() if paths_file.exists() else None
for i, d in zip(ids[0], distances[0], strict=True):
    if i >= 0:
        print(i, d, paths[i] if paths else "")
