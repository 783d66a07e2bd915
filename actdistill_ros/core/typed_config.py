"""Typed configuration: pydantic dataclasses, loaded from YAML/JSON files plus ``key=value`` overrides.

The machinery every package's ``config.py`` (core, ingest, sim, distill_job) and the policy
node's parameters build on; it holds no config of its own.

Every config is a ``pydantic.dataclasses.dataclass`` (:data:`config_dataclass`): a real dataclass
(``dataclasses.replace``/``asdict``, field access, checkpoints that store configs as plain dicts
keep working) whose values pydantic validates and coerces to the annotated types, so ``--set
epochs=3`` is an int and ``keep_ratio=0.5`` a float, and whose unknown keys are errors (a typo in
a config must not silently fall back to a default). Bounds are ``Field(gt=..., le=...)``, checked
however a config is made (the policy node announces its fields' bounds as parameter ranges).
Pydantic's own messages are multi-line and generic; :func:`problems` turns them into one
``key: problem`` line each. Rules that involve several fields stay in each class's
``validate()``, which :func:`from_dict` runs after pydantic.

What pydantic does not do is left here: a ``--set`` value is text until the field's type says
otherwise (:func:`parse_value` only unpacks bracketed lists/mappings and quotes), and
:func:`deep_merge` / :func:`unflatten` layer defaults, files, overrides and ROS's dotted names.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import typing
from pathlib import Path
from typing import Annotated, Any, TypeVar

import annotated_types
import pydantic
import yaml
from pydantic import BeforeValidator, ConfigDict, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message names the key."""


# Unknown keys are errors; a number where text is expected is that text (`instruction: 3`).
CONFIG = ConfigDict(extra="forbid", coerce_numbers_to_str=True)


def config_dataclass(cls: type[T]) -> type[T]:
    """``cls`` as a pydantic dataclass with :data:`CONFIG` whose direct construction (and
    ``dataclasses.replace``) reports a bad value as a one-line :class:`ConfigError` too."""
    cls = pydantic.dataclasses.dataclass(cls, config=CONFIG)
    init = cls.__init__

    @functools.wraps(init)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        try:
            init(self, *args, **kwargs)
        except ValidationError as exc:
            raise ConfigError(one_line(problems(exc, type(self)))) from None

    cls.__init__ = __init__
    return cls


def _not_bool(kind: str):
    def check(value: Any) -> Any:
        if isinstance(value, bool):  # pydantic's lax mode takes true as 1
            raise PydanticCustomError(kind, "a bool is not a number")
        return value
    return BeforeValidator(check)


Int = Annotated[int, _not_bool("int_type")]
Float = Annotated[float, _not_bool("float_type")]

_PHRASES = {
    "int_type": "must be an integer", "int_parsing": "must be an integer", "int_from_float": "must be an integer",
    "float_type": "must be a number", "float_parsing": "must be a number", "finite_number": "must be finite",
    "bool_type": "must be true or false", "bool_parsing": "must be true or false", "string_type": "must be text",
    "list_type": "must be a list", "tuple_type": "must be a list", "dict_type": "must be a mapping",
    "dataclass_type": "must be a mapping", "dataclass_args_type": "must be a mapping", "none_required": "must be null",
}
_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
_UNKNOWN = ("unexpected_keyword_argument", "extra_forbidden")


def _key(cls: Any, loc: tuple, prefix: str) -> str:
    """The dotted key of a pydantic error location (list indices as [i], union member tags dropped)."""
    key = prefix.rstrip(".")
    for part in loc:
        if isinstance(part, int):
            key += f"[{part}]"
        elif cls is not None:  # a field (or an unknown key) of config dataclass cls
            key = f"{key}.{part}" if key else str(part)
            known = part in cls.__dataclass_fields__
            cls = _dataclass_of(typing.get_type_hints(cls, include_extras=True)[part]) if known else None
        # else: a union member's tag (flow_noise_seed.int), not a key
    return key


def _dataclass_of(annotation: Any) -> type | None:
    if typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation if dataclasses.is_dataclass(annotation) else None


def problems(exc: ValidationError, cls: Any, prefix: str = "") -> list[tuple[str, str]]:
    """``(key, problem)`` per problem of ``exc`` (validating ``cls``); the unknown keys of one
    mapping are one problem that lists them and the valid keys."""
    out: list[tuple[str, str]] = []
    unknown: dict[tuple, list[str]] = {}
    for err in exc.errors():
        loc = tuple(err["loc"])
        if err["type"] in _UNKNOWN:
            unknown.setdefault(loc[:-1], []).append(_key(cls, loc, prefix))
            continue
        if err["type"] == "value_error":
            phrase = str(err["ctx"]["error"])
        elif err["type"] in _BOUNDS:
            bound = next(iter(err["ctx"].values()))
            phrase = f"must be {_BOUNDS[err['type']]} {bound:g}, got {err['input']!r}"
        else:
            phrase = _PHRASES.get(err["type"], err["msg"][:1].lower() + err["msg"][1:])
            phrase += f", got {err['input']!r}"
        out.append((_key(cls, loc, prefix), phrase))
    for parent, keys in unknown.items():
        owner = cls
        for part in parent:
            known = owner is not None and part in owner.__dataclass_fields__
            owner = _dataclass_of(typing.get_type_hints(owner, include_extras=True)[part]) if known else None
        valid = sorted(f"{_key(cls, parent, prefix)}.{n}".lstrip(".") for n in owner.__dataclass_fields__) \
            if owner else []
        out.insert(0, ("", f"unknown config key(s) {', '.join(keys)}" + (f"; valid keys: {', '.join(valid)}"
                                                                           if valid else "")))
    return out


def field_range(info: FieldInfo) -> tuple[float, float] | None:
    """A field's bounds ``(low, high)`` from ``Field(ge/gt, le/lt)``, or None unless it has both
    (what a ROS ParameterDescriptor's range can announce)."""
    bounds = {name: getattr(m, name) for m in info.metadata for name in ("ge", "gt", "le", "lt")
              if isinstance(m, annotated_types.BaseMetadata) and hasattr(m, name)}
    low, high = bounds.get("ge", bounds.get("gt")), bounds.get("le", bounds.get("lt"))
    return None if low is None or high is None else (low, high)


def one_line(found: list[tuple[str, str]]) -> str:
    """``key: problem; key: problem`` (a problem without a key stands alone)."""
    return "; ".join(f"{key}: {text}" if key else text for key, text in found)


@functools.cache
def _adapter(cls: type) -> TypeAdapter:
    return TypeAdapter(cls)


def from_dict(cls: type[T], data: Any, prefix: str = "") -> T:
    """Build config dataclass ``cls`` from ``data`` and run every ``validate()`` in it (nested first);
    a problem is a :class:`ConfigError` of one line naming the key (``prefix`` + its dotted path)."""
    try:
        obj = _adapter(cls).validate_python(data)
    except ValidationError as exc:
        raise ConfigError(one_line(problems(exc, cls, prefix))) from None
    _validate_tree(obj)
    return obj


def _validate_tree(obj: Any) -> None:
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            _validate_tree(value)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate()


def to_dict(obj: Any) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(obj)))


def parse_value(raw: str, key: str) -> Any:
    """A ``--set`` value, kept as text for pydantic to convert to the field's type (so ``#`` and
    brackets inside text survive: 'pick the cube # red', '[red] cube'), except a bracketed
    list/mapping (YAML), ``null``, and quotes, which force text ('"0.5"' stays '0.5' even where
    the field could hold a number). A malformed list is a ConfigError naming the key."""
    text = raw.strip()
    if text[:1] + text[-1:] in ("[]", "{}"):
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            problem = getattr(exc, "problem", None) or type(exc).__name__
            raise ConfigError(f"{key}: {text!r} is not a valid list/mapping ({problem})") from None
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return None if text.lower() in ("null", "~") else text


def parse_overrides(pairs: list[str]) -> dict:
    """Turn ``["a=1", "b.c=x"]`` into a nested dict (values: :func:`parse_value`)."""
    out: dict = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"override {pair!r} is not key=value")
        key, raw = pair.split("=", 1)
        if not key.strip() or any(not part for part in key.strip().split(".")):
            raise ConfigError(f"override {pair!r}: empty key")
        out = deep_merge(out, unflatten({key.strip(): parse_value(raw, key.strip())}))
    return out


def deep_merge(base: dict, extra: dict) -> dict:
    merged = dict(base)
    for k, v in extra.items():
        merged[k] = deep_merge(merged[k], v) if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
    return merged


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{'a': {'b': 1}}`` -> ``{'a.b': 1}`` (what ROS makes of nested parameters)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def unflatten(data: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys -> nested mappings, merged with nested mappings already there."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            value = unflatten(value)
        parts = str(key).split(".")
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{key}: {part!r} is both a value and a mapping")
            node = child
        last = parts[-1]
        if isinstance(node.get(last), dict) and isinstance(value, dict):
            node[last] = deep_merge(node[last], value)
        else:
            node[last] = value
    return out


def read_yaml_mapping(path: str | Path) -> dict:
    """A YAML (or JSON) file whose top level is a mapping; a missing file, bad YAML or another
    top level is a one-line ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return loaded


def load_config(cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None,
                base: dict | None = None) -> T:
    """Config of type ``cls`` from ``base`` dict, then a YAML/JSON file, then ``key=value`` overrides."""
    data: dict = dict(base or {})
    if path is not None:
        data = deep_merge(data, read_yaml_mapping(path))
    if overrides:
        data = deep_merge(data, parse_overrides(overrides))
    return from_dict(cls, data)
