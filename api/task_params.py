"""A marshmallow schema generated from a task's luigi parameters, to validate a submission."""

from __future__ import annotations

from typing import Any

import marshmallow as ma

from nectar.discovery import TaskInfo
from nectar.errors import InvalidParameters
from nectar.params import ParamInfo


class ParamField(ma.fields.Field):
    """One luigi parameter; deserializing parses the wire value as luigi would."""

    def __init__(self, info: ParamInfo) -> None:
        self.info = info
        super().__init__(
            data_key=info.name,
            required=info.required,
            allow_none=info.optional,
            metadata={"description": info.description, "kind": info.kind, "choices": info.choices},
            error_messages={"required": "missing required parameter", "null": "must not be null"},
        )

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        try:
            return self.info.parse(value)
        except ValueError as exc:
            raise ma.ValidationError(str(exc)) from exc


def load_params(info: TaskInfo, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` parsed by :func:`params_schema`, by parameter name; InvalidParameters per field."""
    schema = params_schema(info)
    try:
        loaded = schema.load(values)
    except ma.ValidationError as exc:
        errors = exc.normalized_messages()
        raise InvalidParameters({str(k): v if isinstance(v, list) else [str(v)] for k, v in errors.items()}) from exc
    return {schema.fields[attr].data_key or attr: value for attr, value in loaded.items()}


#: id(TaskInfo) -> (that TaskInfo, its schema): a schema is built once per task as the catalog last imported it
_SCHEMAS: dict[int, tuple[TaskInfo, ma.Schema]] = {}


def params_schema(info: TaskInfo) -> ma.Schema:
    """The schema of ``info``'s parameters, built once per TaskInfo; unknown ones are rejected, naming the known."""
    cached = _SCHEMAS.get(id(info))
    if cached is None or cached[0] is not info:
        if len(_SCHEMAS) >= 1024:  # chains edited many times: start over rather than grow
            _SCHEMAS.clear()
        cached = _SCHEMAS[id(info)] = (info, _build_schema(info))
    return cached[1]


def _build_schema(info: TaskInfo) -> ma.Schema:
    known = ", ".join(p.name for p in info.params) or "none"
    # attribute names stay internal (a parameter may be called ``load`` or ``fields``)
    attrs: dict[str, Any] = {f"param_{i}": ParamField(p) for i, p in enumerate(info.params)}
    schema_cls = ma.Schema.from_dict(attrs, name=f"{info.name}Params")
    schema_cls.error_messages = {"unknown": f"unknown parameter (known: {known})"}
    return schema_cls(unknown=ma.RAISE)
