"""ModelSpec: a model described once, as data, that both engines build.

    >>> spec = ModelSpec(layers=[Flatten(), Dense(256), ReLU(), Dense(10)])
    >>> spec.output_shapes()[-1], spec.num_params()
    ((10,), 203530)
    >>> ModelSpec.from_dict(spec.to_dict()) == spec
    True
    >>> parse_shorthand("mlp:256-128-64").num_params()
    242762

Shapes are (C, H, W) for images and (D,) after Flatten. Layer kinds and their fields
mirror torch.nn (Dense = nn.Linear, BatchNorm = BatchNorm1d/2d by input rank). The loss
is softmax cross-entropy on the last layer's logits; no Softmax layer is stored.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace

from digitlab.errors import DigitlabError

MAX_PARAMS = 200_000_000  # 800 MB of float32 weights: refused before anything is allocated
MAX_SIDE = 4096  # the largest input side or channel count a spec may declare
MAX_CLASSES = 100_000
INITS = ("default", "he_uniform", "he_normal", "glorot_uniform", "glorot_normal")


class SpecError(DigitlabError):
    """A model description that cannot be built; the message names the layer."""


@dataclass(frozen=True)
class Flatten:
    pass


@dataclass(frozen=True)
class Dense:
    units: int
    bias: bool = True
    init: str = "default"  # "default" = torch.nn.Linear's own initialisation


@dataclass(frozen=True)
class Conv2D:
    filters: int
    kernel_size: int = 3
    stride: int = 1
    padding: int = 0
    bias: bool = True
    init: str = "default"


@dataclass(frozen=True)
class MaxPool2D:
    size: int = 2
    stride: int | None = None  # None = size, as in torch


@dataclass(frozen=True)
class BatchNorm:
    momentum: float = 0.1
    eps: float = 1e-5


@dataclass(frozen=True)
class Dropout:
    p: float = 0.5


@dataclass(frozen=True)
class ReLU:
    pass


@dataclass(frozen=True)
class LeakyReLU:
    negative_slope: float = 0.01


@dataclass(frozen=True)
class Sigmoid:
    pass


@dataclass(frozen=True)
class Tanh:
    pass


Layer = (
    Flatten | Dense | Conv2D | MaxPool2D | BatchNorm | Dropout | ReLU | LeakyReLU | Sigmoid | Tanh
)
LAYERS: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        Flatten,
        Dense,
        Conv2D,
        MaxPool2D,
        BatchNorm,
        Dropout,
        ReLU,
        LeakyReLU,
        Sigmoid,
        Tanh,
    )
}


def run_order(layers: list[Layer]) -> list[int]:
    """The order the engines run `layers` in: a ReLU directly followed by a MaxPool2D runs after
    it. The max of a window commutes with a non-decreasing function, so the output is the same,
    and so is every gradient but at exact ties; the ReLU then touches a quarter of the values
    (a `cnn-small` training step about 20% faster on the CPU). Parameters keep their layers'
    indices: the two swapped layers have none."""
    order = list(range(len(layers)))
    i = 0
    while i < len(layers) - 1:
        if isinstance(layers[i], ReLU) and isinstance(layers[i + 1], MaxPool2D):
            order[i], order[i + 1] = i + 1, i
            i += 2
        else:
            i += 1
    return order


def _positive(where: str, name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise SpecError(f"{where}: {name} must be a whole number ≥ 1, got {value!r}")


def output_shape(layer: Layer, shape: tuple[int, ...], where: str) -> tuple[int, ...]:
    """The shape `layer` produces from `shape`, or SpecError saying what is wrong."""
    match layer:
        case Flatten():
            size = 1
            for d in shape:
                size *= d
            return (size,)
        case Dense(units=units, init=init):
            _positive(where, "units", units)
            if init not in INITS:
                raise SpecError(f"{where}: init {init!r} is not one of {', '.join(INITS)}")
            if len(shape) != 1:
                raise SpecError(
                    f"{where}: needs a flat input, got shape {shape}; add Flatten() before it"
                )
            return (units,)
        case Conv2D(filters=f, kernel_size=k, stride=s, padding=p, init=init):
            for name, value in (("filters", f), ("kernel_size", k), ("stride", s)):
                _positive(where, name, value)
            if not isinstance(p, int) or p < 0:
                raise SpecError(f"{where}: padding must be a whole number ≥ 0, got {p!r}")
            if init not in INITS:
                raise SpecError(f"{where}: init {init!r} is not one of {', '.join(INITS)}")
            if len(shape) != 3:
                raise SpecError(f"{where}: needs an image input (C, H, W), got shape {shape}")
            c, h, w = shape
            ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
            if ho < 1 or wo < 1:
                raise SpecError(
                    f"{where}: a {k}x{k} kernel does not fit the {h}x{w} input "
                    f"(padding {p}); the output would be {ho}x{wo}"
                )
            return (f, ho, wo)
        case MaxPool2D(size=k, stride=s):
            _positive(where, "size", k)
            s = k if s is None else s
            _positive(where, "stride", s)
            if len(shape) != 3:
                raise SpecError(f"{where}: needs an image input (C, H, W), got shape {shape}")
            c, h, w = shape
            ho, wo = (h - k) // s + 1, (w - k) // s + 1
            if ho < 1 or wo < 1:
                raise SpecError(f"{where}: pooling {k}x{k} shrinks the {h}x{w} input below 1x1")
            return (c, ho, wo)
        case BatchNorm(momentum=m, eps=eps):
            if not 0 <= m <= 1 or eps <= 0:
                raise SpecError(f"{where}: momentum must be in [0, 1] and eps > 0")
            if len(shape) not in (1, 3):
                raise SpecError(f"{where}: needs (D,) or (C, H, W) input, got {shape}")
            return shape
        case Dropout(p=p):
            if not 0 <= p < 1:
                raise SpecError(f"{where}: p must be in [0, 1), got {p!r}")
            return shape
        case ReLU() | LeakyReLU() | Sigmoid() | Tanh():
            return shape
    raise SpecError(f"{where}: unknown layer {layer!r}")


def _check_type(where: str, name: str, value, annotation: str) -> None:
    """Field values from JSON/TOML must have the field's type (bool is not a number here)."""
    kinds = {
        "int": (int,),
        "float": (int, float),
        "bool": (bool,),
        "str": (str,),
        "int | None": (int, type(None)),
    }
    allowed = kinds.get(annotation)
    if allowed is None:
        return
    if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
        raise SpecError(
            f"{where}: {name} = {value!r} is not {annotation.replace(' | None', ' or null')}"
        )


@dataclass(frozen=True)
class ModelSpec:
    """Input shape, number of classes and the layers, in order."""

    layers: tuple[Layer, ...]  # a tuple: appending to a preset's layers changed it for all
    input_shape: tuple[int, int, int] = (1, 28, 28)
    num_classes: int = 10
    name: str = ""
    extra: dict = field(default_factory=dict, compare=False)  # free-form notes, kept in JSON

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "input_shape", tuple(self.input_shape))

    def output_shapes(self) -> list[tuple[int, ...]]:
        """The output shape of every layer; raises SpecError on the first impossible layer."""
        if not self.layers:
            raise SpecError("the model has no layers")
        shape, shapes = self.input_shape, []
        for i, layer in enumerate(self.layers):
            shape = output_shape(layer, shape, f"layer {i} ({type(layer).__name__})")
            shapes.append(shape)
        if shape != (self.num_classes,):
            raise SpecError(
                f"layer {len(self.layers) - 1} ({type(self.layers[-1]).__name__}): the model "
                f"ends with shape {shape}, expected ({self.num_classes},) logits, one per class"
            )
        return shapes

    def validate(self) -> ModelSpec:
        """Raise SpecError naming the first bad layer, or a model too large to allocate; return
        self when the spec is buildable."""
        if len(self.input_shape) != 3 or not all(
            isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= MAX_SIDE
            for d in self.input_shape
        ):
            raise SpecError(
                f"input_shape {self.input_shape}: expected three sizes in 1..{MAX_SIDE}"
            )
        if not isinstance(self.num_classes, int) or not 2 <= self.num_classes <= MAX_CLASSES:
            raise SpecError(f"num_classes {self.num_classes!r}: expected 2..{MAX_CLASSES}")
        self.output_shapes()
        n = self.num_params()
        if n > MAX_PARAMS:
            raise SpecError(
                f"the model has {n:,} parameters, more than the {MAX_PARAMS:,} digitlab builds "
                "(MNIST's best networks have a few million)"
            )
        return self

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """Trainable parameter and buffer shapes under PyTorch's state_dict names."""
        out, shape = {}, self.input_shape
        for i, (layer, after) in enumerate(zip(self.layers, self.output_shapes(), strict=True)):
            match layer:
                case Dense(units=units, bias=bias):
                    out[f"layers.{i}.weight"] = (units, shape[0])
                    if bias:
                        out[f"layers.{i}.bias"] = (units,)
                case Conv2D(filters=f, kernel_size=k, bias=bias):
                    out[f"layers.{i}.weight"] = (f, shape[0], k, k)
                    if bias:
                        out[f"layers.{i}.bias"] = (f,)
                case BatchNorm():
                    for name in ("weight", "bias", "running_mean", "running_var"):
                        out[f"layers.{i}.{name}"] = (shape[0],)
            shape = after
        return out

    def with_classes(self, k: int) -> ModelSpec:
        """The same layers ending in a Dense of `k` units, for a folder of `k` classes (ten
        outputs for two classes spread the probabilities over eight that never occur)."""
        last, n = self.layers[-1], self.num_classes
        if k == n:
            return self
        if not isinstance(last, Dense) or last.units != n:
            raise SpecError(f"the model gives {n} outputs for {k} classes: end it with Dense({k})")
        return replace(self, layers=(*self.layers[:-1], replace(last, units=k)), num_classes=k)

    def num_params(self) -> int:
        """Trainable parameters (BatchNorm running statistics excluded)."""
        total = 0
        for name, shape in self.param_shapes().items():
            if not name.endswith(("running_mean", "running_var")):
                n = 1
                for d in shape:
                    n *= d
                total += n
        return total

    def to_dict(self) -> dict:
        layers = [{"type": type(layer).__name__, **asdict(layer)} for layer in self.layers]
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "layers": layers,
            **({"extra": self.extra} if self.extra else {}),
        }

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        """Rebuild from to_dict() output; unknown layer types or fields raise SpecError."""
        if not isinstance(d, dict):
            raise SpecError(
                f"model spec: expected an object with 'layers', got a {type(d).__name__}"
            )
        unknown = sorted(set(d) - {"name", "input_shape", "num_classes", "layers", "extra"})
        if unknown:
            raise SpecError(f"model spec: unknown key {unknown[0]!r}")
        if not isinstance(d.get("name", ""), str):
            raise SpecError(f"model spec: name must be text, got {d['name']!r}")
        if not isinstance(d.get("layers"), list):
            raise SpecError("model spec: 'layers' must be a list of layers")
        try:
            layers = []
            for i, entry in enumerate(d["layers"]):
                if not isinstance(entry, dict):  # "Flatten" alone read as a dict's items
                    raise SpecError(
                        f'layer {i}: expected a table like {{type = "Flatten"}}, got {entry!r:.40}'
                    )
                entry = dict(entry)
                kind = entry.pop("type", None)
                if kind not in LAYERS:
                    raise SpecError(f"layer {i}: unknown type {kind!r}; known: {', '.join(LAYERS)}")
                allowed = {f.name: f for f in fields(LAYERS[kind])}
                unknown = set(entry) - set(allowed)
                if unknown:
                    raise SpecError(f"layer {i} ({kind}): unknown field {sorted(unknown)[0]!r}")
                for name, value in entry.items():
                    _check_type(f"layer {i} ({kind})", name, value, str(allowed[name].type))
                layers.append(LAYERS[kind](**entry))
            spec = cls(
                layers=layers,
                input_shape=tuple(d.get("input_shape", (1, 28, 28))),
                num_classes=d.get("num_classes", 10),  # validate refuses 10.7 and "10"
                name=d.get("name", ""),
                extra=d.get("extra", {}),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise SpecError(f"model spec: {str(e)[:200]}") from None
        return spec.validate()

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as e:
            raise SpecError(f"model spec is not valid JSON: {e}") from None
        except (ValueError, RecursionError) as e:  # a 5000-digit integer; 100k-deep nesting
            raise SpecError(f"model spec is not usable JSON: {str(e)[:120]}") from None


def mlp(hidden: list[int], num_classes: int = 10, name: str = "", **dense) -> ModelSpec:
    """Flatten, then Dense+ReLU for each hidden size, then Dense(num_classes)."""
    layers: list[Layer] = [Flatten()]
    for units in hidden:
        layers += [Dense(units, **dense), ReLU()]
    layers.append(Dense(num_classes, **dense))
    return ModelSpec(layers=layers, num_classes=num_classes, name=name).validate()


def parse_shorthand(text: str, num_classes: int = 10) -> ModelSpec:
    """'mlp:256-128-64' or 'mlp:' (softmax regression); 'cnn:32-64/128' = conv blocks / dense."""
    kind, sep, body = text.partition(":")
    try:
        if not body.isascii():  # int() reads "٣٢" as 32: a size must be written in 0-9
            raise ValueError(body)
        if kind == "mlp" and sep:
            hidden = [int(u) for u in body.split("-")] if body else []
            return mlp(hidden, num_classes, name=text).validate()
        if kind == "cnn" and sep:
            convs, _, dense = body.partition("/")
            layers: list[Layer] = []
            for filters in (int(f) for f in convs.split("-")):
                layers += [Conv2D(filters, 3, padding=1), ReLU(), MaxPool2D(2)]
            layers.append(Flatten())
            for units in (int(u) for u in dense.split("-") if u):
                layers += [Dense(units), ReLU()]
            layers.append(Dense(num_classes))
            return ModelSpec(layers=layers, num_classes=num_classes, name=text).validate()
    except ValueError:
        pass
    raise SpecError(f"model {text!r}: expected a shorthand like mlp:256-128-64 or cnn:32-64/128")
