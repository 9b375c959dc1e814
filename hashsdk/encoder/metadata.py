"""The metadata an exported model carries, so that the Encoder needs nothing but the file.

ONNX models hold it in ``metadata_props`` (string keys and values, prefixed ``hashsdk.``);
TensorRT engines in a sidecar ``<engine>.json`` with the same keys.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import cached_property

from hashsdk.codes import check_bits
from hashsdk.encoder.contract import (
    DEFAULT_INTERPOLATION,
    METADATA_FIELDS,
    SQUASH,
    InputContract,
)
from hashsdk.errors import HashsdkError

FORMAT_VERSION = 1
# version 2: a file whose input contract trims borders (hashsdk.encoder.contract), which a
# version-1 reader would encode untrimmed; so it refuses the file instead
TRIM_VERSION = 2
READABLE = (FORMAT_VERSION, TRIM_VERSION)
PREFIX = "hashsdk."
BIT_CONVENTION = "bit i = 1 where output i > 0; packed MSB-first as np.packbits"
PRECISIONS = ("fp32", "int8")


def _parse(raw: str):
    """A JSON value, or the string itself where it is not JSON."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


@dataclass(frozen=True)
class ModelMetadata:
    """What the Encoder needs to turn images into codes.

    input_size, channels, resize_size, interpolation, mean, std, trim: the input contract's
        fields under their metadata names (``contract`` gives the object; see
        hashsdk.encoder.contract); the defaults are those of files written before a field was
        recorded (resize_size 0: the image squashed to the input size).
    input_name, output_name: the graph's tensors; the output is float (N, bits) in (-1, 1).
    precision: "fp32", or "int8" for a model from ``hashsdk-export --int8`` (its input and
        output stay float32; see hashsdk.export.quantize).
    extra: keys this version has no field for, kept as read (JSON values parsed): a TensorRT
        sidecar's ``engine`` (precision, TensorRT version, batch profile), or a later version's.
    """

    bits: int
    input_size: int
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    backbone: str = "unknown"
    dataset: str = "unknown"
    checkpoint_sha256: str = ""
    resize_size: int = SQUASH
    interpolation: str = DEFAULT_INTERPOLATION
    trim: bool = False
    input_name: str = "images"
    output_name: str = "outputs"
    precision: str = "fp32"
    bit_convention: str = BIT_CONVENTION
    format_version: int = FORMAT_VERSION
    extra: dict = field(default_factory=dict)

    @classmethod
    def of(cls, contract: InputContract, bits: int, **fields) -> ModelMetadata:
        """The metadata of a model with this contract; ``fields``: the other fields. A contract
        that trims is written as TRIM_VERSION."""
        if contract.trim:
            fields = dict(fields, format_version=TRIM_VERSION)
        return cls(bits=bits, **contract.metadata_fields(), **fields)

    @cached_property
    def contract(self) -> InputContract:
        """The input contract these fields carry."""
        return InputContract.from_metadata_fields(
            {k: getattr(self, k) for k in METADATA_FIELDS})

    def to_props(self) -> dict[str, str]:
        """String key-value pairs for ONNX metadata_props or a JSON sidecar; each ``extra``
        entry is a key of its own."""
        fields = asdict(self)
        out = {}
        for key, value in (fields | fields.pop("extra")).items():
            out[PREFIX + key] = value if isinstance(value, str) else json.dumps(value)
        return out

    @classmethod
    def from_props(cls, props: dict[str, str], where: str) -> ModelMetadata:
        """Parses ``to_props``'s output; raises naming ``where`` when it is not ours."""
        ours = {k[len(PREFIX):]: v for k, v in props.items() if k.startswith(PREFIX)}
        if "bits" not in ours:
            raise HashsdkError(f"{where}: no hashsdk metadata; export the model with "
                               "hashsdk-export, which writes it")
        try:
            version = int(ours.get("format_version", "0"))
            if version not in READABLE:
                raise HashsdkError(f"{where}: hashsdk metadata version {version}; this hashsdk "
                                   f"reads {' and '.join(map(str, READABLE))}")
            kwargs = {}
            for name in cls.__dataclass_fields__:
                if name in ours and name != "extra":
                    raw = ours[name]
                    kind = cls.__dataclass_fields__[name].type
                    kwargs[name] = raw if kind == "str" else json.loads(raw)
            # keys of later versions or of other writers (a TensorRT sidecar's "engine"): kept
            # (files of earlier versions hold them in one "extra" key)
            kwargs["extra"] = json.loads(ours.get("extra", "{}")) | {
                k: _parse(v) for k, v in ours.items() if k not in cls.__dataclass_fields__}
            kwargs["mean"], kwargs["std"] = tuple(kwargs["mean"]), tuple(kwargs["std"])
            meta = cls(**kwargs)
        except (KeyError, ValueError, TypeError) as exc:
            raise HashsdkError(f"{where}: corrupt hashsdk metadata ({exc})") from None
        try:
            check_bits(meta.bits)
        except HashsdkError as exc:
            raise HashsdkError(f"{where}: corrupt hashsdk metadata ({exc})") from None
        try:
            meta.contract  # noqa: B018  (made to be checked)
        except (HashsdkError, TypeError) as exc:
            raise HashsdkError(f"{where}: inconsistent hashsdk metadata {meta} ({exc})") from None
        if meta.precision not in PRECISIONS:
            raise HashsdkError(f"{where}: inconsistent hashsdk metadata {meta}")
        return meta
