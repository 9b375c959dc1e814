"""The ``hashsdk`` command line: encode, index and search (training is ``hashsdk-train``,
export ``hashsdk-export``).

    hashsdk index build CODES.npy -o db.hidx [--bits N] [--ids IDS.npy]
    hashsdk index build --model model.onnx IMAGES_OR_DIR... -o db.hidx
    hashsdk index push db.hidx --milvus URI --collection NAME [--index-type BIN_IVF_FLAT]
    hashsdk encode model.onnx IMAGES_OR_DIR... -o codes.npy [--float]
    hashsdk search db.hidx QUERIES.npy -k 10 [--json]
    hashsdk search db.hidx --model model.onnx QUERY_IMAGES... -k 10 [--json]
    hashsdk info db.hidx
    hashsdk dedup IMAGE_DIR --model model.onnx --precision 0.99 [-o duplicates.json]
    hashsdk dedup db.hidx --radius 3 [--sheet groups.png]
    hashsdk serve db.hidx --model model.onnx [--host 127.0.0.1] [--port 8000]   (serve extra)

The commands that run a model take ``--device``, ``--threads`` and ``--quiet``. ``search
--json`` prints one schema with and without ``--model``: a list with one record per query,
``{"query", "results": [{"id", "distance", "path"}]}``, where ``query`` is the image's path or
the row of QUERIES.npy and ``path`` is the indexed image (null where the index has no paths).

User mistakes (a missing or corrupt file, a wrong shape) print one line to stderr and exit
with status 1, without a traceback.
"""

from __future__ import annotations

import json
import os
import sys

import click
import numpy as np

from hashsdk._atomic import atomic_write
from hashsdk._cli_errors import CONTEXT, user_errors, version_option
from hashsdk.codes import infer_bits
from hashsdk.encoder.preprocess import IMAGE_SUFFIXES
from hashsdk.errors import HashsdkError
from hashsdk.index import INDEX_KINDS, HammingIndex, index_file, index_kind, kinds_help
from hashsdk.index.writer_lock import WriterLock
from hashsdk.serve.command import serve


def _load_npy(path: str, what: str) -> np.ndarray:
    """np.load that never unpickles, and names the file when it fails."""
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise HashsdkError(f"{what} file not found: {path}") from None
    except (ValueError, EOFError, OSError) as exc:
        raise HashsdkError(f"{path}: not a readable .npy array ({exc})") from None


ENCODER_OPTIONS = [
    click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
                 help="Where the model runs; auto: CUDA where onnxruntime has it (hashsdk-gpu)."),
    click.option("--threads", type=click.IntRange(min=1), default=None,
                 help="Model and search threads.  [default: every core]"),
    click.option("--quiet", is_flag=True, help="No progress bar."),
    click.option("--batch-size", type=click.IntRange(min=1), default=256),
]


kind_option = click.option("--kind", type=click.Choice(sorted(INDEX_KINDS)), default="flat",
                           show_default=True, help=f"The index kind: {kinds_help()}")


def encoder_options(fn):
    for option in reversed(ENCODER_OPTIONS):
        fn = option(fn)
    return fn


@click.group(context_settings=CONTEXT)
@version_option()
def main() -> None:
    """hashsdk: encode images with an exported model, build Hamming indexes and search them.

    Training is hashsdk-train (the train extra); export to ONNX, INT8 and TensorRT is
    hashsdk-export (the export extra). An extra installs from a checkout of hashsdk, which is
    not on the package index yet: pip install '.[train]'."""


@main.group()
def index() -> None:
    """Build and inspect Hamming indexes."""


@index.command("build")
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Index file to write (.hidx).")
@click.option("--model", type=click.Path(dir_okay=False), default=None,
              help="Encode INPUTS (images or folders) with this .onnx / .engine model.")
@click.option("--bits", type=int, default=None,
              help="Code length. Default: 8 x width for packed uint8 codes, else the width; "
                   "with --model, the model's (a different value is refused).")
@click.option("--ids", "ids_path", type=click.Path(dir_okay=False), default=None,
              help="int64 .npy of one unique id per code (not with --model).  "
                   "[default: 0, 1, 2, ...]")
@kind_option
@encoder_options
@user_errors()
def index_build(inputs: tuple[str, ...], output: str, model: str | None, bits: int | None,
                ids_path: str | None, kind: str, device: str, threads: int | None, quiet: bool,
                batch_size: int) -> None:
    """Build an index from CODES.npy (packed uint8 codes, or (n, bits) network outputs), or,
    with --model, from images and folders of images. With --model, ids are 0, 1, 2, ... in
    the order of OUTPUT.paths.txt, which lists the image of each id."""
    if model is None:
        if len(inputs) != 1:
            raise HashsdkError("expected one CODES.npy, or --model MODEL with images/folders")
        array = _load_npy(inputs[0], "codes")
        ids = None if ids_path is None else _load_npy(ids_path, "ids")
        idx = index_kind(kind).create(infer_bits(array) if bits is None else bits, threads)
        idx.add(array, ids)
        with WriterLock(output, "hashsdk index build"):
            idx.save(output)
        click.echo(f"wrote {output}: {idx.ntotal} codes of {idx.bits} bits{_kind_note(kind)}")
        return
    if ids_path is not None:
        raise HashsdkError("--ids applies to CODES.npy; with --model the ids are 0, 1, 2, ... "
                           f"in the order of {index_file.paths_path(output)}")
    encoder = _encoder(model, device, threads)
    codes, paths = _encode_paths(encoder, inputs, batch_size, expect_bits=bits,
                                 show_progress=not quiet)
    idx = index_kind(kind).create(encoder.bits, threads)
    idx.add(codes)
    with WriterLock(output, "hashsdk index build"):
        idx.save(output, paths=[index_file.relative_to_index(output, p) for p in paths])
    click.echo(f"wrote {output}: {idx.ntotal} images, {idx.bits} bits; paths in "
               f"{index_file.paths_path(output)}{_kind_note(kind)}")


def _kind_note(kind: str) -> str:
    # every file kind saves the same .hidx format: the kind is chosen again when it is read
    return "" if kind == "flat" else f"; search it with --kind {kind}"


@index.command("push")
@click.argument("index_path", type=click.Path(dir_okay=False))
@click.option("--milvus", "uri", required=True,
              help="A local Milvus Lite file (codes.db) or a server, http://host:19530.")
@click.option("--collection", required=True, help="Created if missing; must be empty or new.")
@click.option("--index-type", type=click.Choice(["BIN_FLAT", "BIN_IVF_FLAT"]),
              default="BIN_FLAT", show_default=True)
@click.option("--nlist", type=int, default=128, show_default=True, help="BIN_IVF_FLAT lists.")
@click.option("--batch-size", type=int, default=10_000, show_default=True)
@user_errors("milvus")
def index_push(index_path: str, uri: str, collection: str, index_type: str, nlist: int,
               batch_size: int) -> None:
    """Copy an index's codes and ids into a Milvus collection."""
    from hashsdk.index.milvus import push

    source = HammingIndex.load(index_path, mmap=True)
    target = push(source, uri, collection, batch_size, index_type=index_type, nlist=nlist)
    click.echo(f"pushed {source.ntotal} codes of {source.bits} bits to {uri} "
               f"collection {collection!r} ({target.ntotal} there now)")


@main.command()
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="codes.npy to write; OUTPUT.paths.txt lists the image of each row.")
@click.option("--float", "as_float", is_flag=True, help="Write float outputs, not packed codes.")
@encoder_options
@user_errors()
def encode(model: str, inputs: tuple[str, ...], output: str, as_float: bool, device: str,
           threads: int | None, quiet: bool, batch_size: int) -> None:
    """Encode images and folders of images with MODEL (.onnx or .engine) into codes.npy."""
    codes, paths = _encode_paths(_encoder(model, device, threads), inputs, batch_size,
                                 packed=not as_float, show_progress=not quiet)
    with atomic_write(output) as f:
        np.save(f, codes)
    _write_lines(output + ".paths.txt", paths)
    click.echo(f"wrote {output}: {codes.shape[0]} rows of {codes.shape[1]} "
               f"{'outputs' if as_float else 'bytes'}")


def _encoder(model: str, device: str, threads: int | None):
    from hashsdk.encoder import Encoder

    return Encoder(model, device=None if device == "auto" else device, threads=threads)


def _encode_paths(encoder, inputs: tuple[str, ...], batch_size: int,
                  packed: bool = True, expect_bits: int | None = None,
                  show_progress: bool = True) -> tuple[np.ndarray, list[str]]:
    """Encodes every image under ``inputs`` with ``encoder``; unreadable files are reported
    and left out. ``expect_bits`` (a user's --bits), where given, must be the model's code
    length.

    Returns the codes and the path of each row."""
    from hashsdk.encoder.preprocess import list_images

    missing = [p for p in inputs if not os.path.exists(p)]
    if missing:
        raise HashsdkError(f"not found: {', '.join(missing)}")
    paths = list_images(inputs)
    if not paths:
        raise HashsdkError(f"no images found in {', '.join(inputs)}")
    if expect_bits is not None and expect_bits != encoder.bits:
        raise HashsdkError(f"--bits {expect_bits} disagrees with {encoder.path}, which makes "
                           f"{encoder.bits}-bit codes; leave --bits out with --model")
    rows, kept = [], []
    for batch in encoder.encode_iter(paths, batch_size, packed, show_progress):
        rows.append(batch.codes)
        kept += [str(paths[i]) for i in batch.index]
        for path in batch.skipped:
            click.echo(f"skipped unreadable image: {path}", err=True)
    if not kept:
        raise HashsdkError("no image could be read")
    return np.concatenate(rows), kept


def _write_lines(path: str, lines: list[str]) -> None:
    with atomic_write(path) as f:
        f.write(("\n".join(lines) + "\n").encode())


@main.command()
@click.argument("index_path", type=click.Path(dir_okay=False))
@click.argument("queries", nargs=-1, required=True, type=click.Path())
@click.option("--model", type=click.Path(dir_okay=False), default=None,
              help="Encode QUERIES (images or folders) with this .onnx / .engine model.")
@click.option("-k", type=click.IntRange(min=1), default=10, help="Results per query.")
@click.option("--json", "as_json", is_flag=True,
              help="Print JSON: one {query, results: [{id, distance, path}]} per query.")
@kind_option
@encoder_options
@user_errors()
def search(index_path: str, queries: tuple[str, ...], model: str | None, k: int,
           as_json: bool, kind: str, device: str, threads: int | None, quiet: bool,
           batch_size: int) -> None:
    """Search INDEX_PATH for the k nearest codes of each row of QUERIES.npy, or, with --model,
    of each query image; results name the images of INDEX_PATH.paths.txt where it has one."""
    if model is None and len(queries) != 1:
        raise HashsdkError("expected one QUERIES.npy, or --model MODEL with query images")
    if not os.path.isfile(index_path):
        raise HashsdkError(f"{index_path}: no such index file (hashsdk index build writes one)")
    idx = index_kind(kind).load(index_path, threads, mmap=True)
    paths = index_file.read_paths(index_path, idx.ntotal)
    if paths is not None:  # stored relative to the index's folder: shown as paths from here
        paths = [index_file.resolve_path(index_path, p) if p else p for p in paths]
    if model is None:
        if queries[0].lower().endswith(IMAGE_SUFFIXES) or os.path.isdir(queries[0]):
            raise HashsdkError(f"{queries[0]} is an image or a folder: searching by image "
                               "needs the model that built the index, --model MODEL.onnx")
        codes = _load_npy(queries[0], "queries")
        names: list[str | int] = list(range(len(codes) if codes.ndim == 2 else 1))
    else:
        encoder = _encoder(model, device, threads)
        if encoder.bits != idx.bits:
            raise HashsdkError(f"{model} makes {encoder.bits}-bit codes but {index_path} holds "
                               f"{idx.bits}-bit codes: search with the model that built it")
        codes, query_paths = _encode_paths(encoder, queries, batch_size,
                                           show_progress=not quiet and not as_json)
        names = list(query_paths)
    dist, ids = idx.search(codes, k)
    _print_results(names, dist, ids, _id_paths(idx, paths), as_json)


def _id_paths(idx: HammingIndex, paths: list[str] | None) -> dict[int, str]:
    """id -> image path (line i of the paths file is the i-th id in ascending order)."""
    return {} if paths is None else dict(zip(idx.ids.tolist(), paths, strict=True))


def _print_results(queries: list, dist: np.ndarray, ids: np.ndarray,
                   id_paths: dict[int, str], as_json: bool) -> None:
    """One record per query (its path, or its row of QUERIES.npy), the same with and without
    --model; as JSON, or as text: the query, then a line per result."""
    records = [{"query": q, "results": [{"id": int(j), "distance": int(d),
                                         "path": id_paths.get(int(j))}
                                        for j, d in zip(id_row, d_row, strict=True) if j >= 0]}
               for q, d_row, id_row in zip(queries, dist, ids, strict=True)]
    if as_json:
        json.dump(records, sys.stdout, indent=1)
        click.echo()
        return
    for record in records:
        query = record["query"]
        click.echo(f"query {query}" if isinstance(query, int) else query)
        for hit in record["results"]:
            where = hit["path"] or f"id {hit['id']}"
            click.echo(f"  {hit['distance']:4d}  {where}")


@main.command()
@click.argument("source", type=click.Path(exists=True))
@click.option("--model", type=click.Path(dir_okay=False), default=None,
              help="Encode the images of SOURCE (a folder) with this .onnx / .engine model.")
@click.option("--radius", type=click.IntRange(min=0), default=None,
              help="Two images are duplicates within this Hamming distance (groups join "
                   "chains of them).")
@click.option("--precision", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Instead of --radius: the largest radius whose precision reaches this on "
                   "edited copies of a sample of SOURCE's images (a folder only).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="duplicates.json",
              show_default=True, help="The groups as JSON; the same as CSV beside it (.csv).")
@click.option("--search", type=click.Choice(["auto", "flat", "mih"]), default="auto",
              show_default=True, help="What the range searches run on: a flat scan, multi-index "
                                      "hashing, or auto (by the codes' count and the radius).")
@click.option("--sheet", type=click.Path(dir_okay=False), default=None,
              help="Also a picture of the groups (PNG): a row a group, largest first, each "
                   "image with its distance to the group's first. Needs the images' paths.")
@click.option("--sheet-groups", type=click.IntRange(min=1), default=20, show_default=True,
              help="With --sheet: how many groups it pictures.")
@encoder_options
@user_errors()
def dedup(source: str, model: str | None, radius: int | None, precision: float | None,
          output: str, search: str, sheet: str | None, sheet_groups: int, device: str,
          threads: int | None, quiet: bool, batch_size: int) -> None:
    """Groups of near-duplicates in SOURCE: a folder of images (with --model) or an index
    file. Writes OUTPUT (JSON) and its CSV; never compares all pairs (range searches)."""
    from hashsdk import dedup as dd

    if (radius is None) == (precision is None):
        raise HashsdkError("give one of --radius R and --precision P")
    about: dict = {"source": source}
    if os.path.isdir(source):
        if model is None:
            raise HashsdkError(f"{source} is a folder: encoding it needs --model MODEL.onnx")
        encoder = _encoder(model, device, threads)
        codes, paths = _encode_paths(encoder, (source,), batch_size, show_progress=not quiet)
        ids, bits = np.arange(len(codes)), encoder.bits
        if precision is not None:
            radius, curve = _calibrate(dd, encoder, paths, precision, batch_size)
            about |= {"precision_target": precision, "calibration": curve}
    else:
        if precision is not None:
            raise HashsdkError("--precision edits images, and an index holds codes: give the "
                               "folder of images (with --model), or --radius")
        idx = HammingIndex.load(source, threads=threads)
        codes, ids, bits = idx.codes, idx.ids, idx.bits
        stored = index_file.read_paths(source, idx.ntotal)
        paths = None if stored is None else [index_file.resolve_path(source, p) if p else p
                                             for p in stored]
        if sheet is not None and paths is None:  # refused before the search, not after it
            from hashsdk.dedup_sheet import NO_PATHS

            raise HashsdkError(NO_PATHS)
    from tqdm import tqdm

    bar = None if quiet else tqdm(total=len(codes), desc="range search", unit="code")
    pairs, _ = dd.find_pairs(codes, bits, radius, kind=search, threads=threads,
                             progress=None if bar is None else
                             lambda done, n: bar.update(done - bar.n))
    if bar is not None:
        bar.close()
    groups = dd.group(len(codes), pairs)
    doc = dd.report(groups, codes, ids, paths, **about, bits=bits, radius=radius,
                    images=len(codes), pairs=len(pairs))
    with atomic_write(output) as f:
        f.write((json.dumps(doc, indent=1) + "\n").encode())
    csv_path = os.path.splitext(output)[0] + ".csv"
    _write_lines(csv_path, dd.csv_lines(doc))
    click.echo(f"{doc['groups']} groups, {doc['duplicates']} duplicates among {len(codes)} "
               f"images at radius {radius}; wrote {output} and {csv_path}")
    if sheet is not None:
        from hashsdk.dedup_sheet import write_sheet
        from hashsdk.encoder.preprocess import decode

        if not doc["groups"]:
            click.echo(f"no groups to picture; {sheet} not written")
            return
        rows = write_sheet(sheet, doc, lambda path: decode(path, "RGB"), sheet_groups)
        click.echo(f"wrote {sheet}: {rows} of {doc['groups']} groups")


def _calibrate(dd, encoder, paths: list[str], precision: float, batch_size: int
               ) -> tuple[int, dict]:
    """--precision: the radius from edited copies of a sample of ``paths``' images."""
    from hashsdk.encoder.preprocess import decode

    rng = np.random.default_rng(0)
    sample = rng.choice(len(paths), min(dd.CALIBRATION_SAMPLE, len(paths)), replace=False)
    images = [decode(paths[i], "RGB") for i in sample]
    radius, curve = dd.radius_for_precision(
        lambda ims: encoder.encode(ims, batch_size, packed=False), images, encoder.bits,
        precision)
    if radius < 0:
        raise HashsdkError(f"no radius reaches precision {precision} on edited copies of "
                           f"{len(images)} of the images (radius 0: "
                           f"{curve['precision'][0]:.3f}); lower --precision or give --radius")
    click.echo(f"radius {radius}: precision {curve['precision'][radius]:.3f}, recall "
               f"{curve['recall'][radius]:.3f} on {curve['copies']} edited copies of "
               f"{curve['originals']} images", err=True)
    return radius, curve


@main.command()
@click.argument("index_path", type=click.Path(dir_okay=False))
@user_errors()
def info(index_path: str) -> None:
    """Describe an index file without reading its codes."""
    head = index_file.read_header(index_path)
    click.echo(f"file:      {index_path}")
    click.echo(f"format:    hashsdk index v{index_file.VERSION}")
    click.echo(f"bits:      {head.bits} ({head.code_size} bytes a code, MSB-first)")
    click.echo(f"codes:     {head.count}")
    click.echo(f"next id:   {head.next_id}")


main.add_command(serve)

if __name__ == "__main__":
    main()
