"""Find images like this one: an Encoder and a saved index, nothing else (pip install hashsdk).

    python examples/find_similar.py model.onnx db.hidx query.jpg [-k 10]

Prints one line per result: id, Hamming distance, and the image path where the index was
built with `hashsdk index build --model` (which writes db.hidx.paths.txt).
"""

import argparse

from hashsdk import Encoder, HammingIndex
from hashsdk.index.index_file import read_paths

parser = argparse.ArgumentParser(description="find images like this one")
parser.add_argument("model", help="model.onnx or model.engine from hashsdk-export")
parser.add_argument("index", help="db.hidx")
parser.add_argument("image", help="the query image")
parser.add_argument("-k", type=int, default=10)
args = parser.parse_args()

encoder = Encoder(args.model)
index = HammingIndex.load(args.index, mmap=True)
distances, ids = index.search(encoder.encode(args.image), args.k)

paths = read_paths(args.index, index.ntotal)  # None where the index has no paths file
path_of = dict(zip(index.ids.tolist(), paths or [], strict=False))
for i, d in zip(ids[0], distances[0], strict=True):
    if i >= 0:
        print(i, d, path_of.get(int(i), ""))
