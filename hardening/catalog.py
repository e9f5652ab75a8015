"""The control catalog: YAML data under hardening/data/controls, one file per
area, parsed once into frozen Control records (hardening.control), each read by
hardening.control_reader.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from hardening.control import Control
from hardening.control_reader import parse_control
from hardening.errors import ProfileError
from hardening.mechanisms.parameters import ParamSpec
from hardening.strictdata import DataError, loads_yaml, read_regular


class Catalog(Mapping[str, Control]):
    """Controls by id, in catalog order (file name, then position)."""

    def __init__(self, controls: Mapping[str, Control]) -> None:
        self._controls = dict(controls)

    def __getitem__(self, key: str) -> Control:
        return self._controls[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._controls)

    def __len__(self) -> int:
        return len(self._controls)

    def parameter_types(self) -> dict[str, ParamSpec]:
        """Every tunable any control reads (one declaration per name: the
        catalog refuses two that differ)."""
        types: dict[str, ParamSpec] = {}
        for control in self._controls.values():
            types.update(control.parameter_types)
        return types


def loads_document(path: Path | str, data: bytes | str) -> Any:
    """A catalog or profile file's YAML, read strictly; anything wrong with
    it is a ProfileError naming the file."""
    try:
        return loads_yaml(data)
    except DataError as exc:
        raise ProfileError(path, None, str(exc)) from None


def _catalog_files() -> list[tuple[str, bytes]]:
    files = sorted(catalog_dir().glob("*.yaml"))
    out = []
    for entry in files:
        name = f"hardening/data/controls/{entry.name}"
        try:
            out.append((name, read_regular(entry)))
        except DataError as exc:
            raise ProfileError(name, None, str(exc)) from None
    return out


def parse_catalog(sources: Sequence[tuple[str, str | bytes]]) -> Catalog:
    controls: dict[str, Control] = {}
    types: dict[str, tuple[ParamSpec, str]] = {}
    for path, text in sources:
        data = loads_document(path, text)
        if (
            not isinstance(data, Mapping)
            or set(data) != {"controls"}
            or not isinstance(data["controls"], list)
        ):
            raise ProfileError(path, None, "a mapping with one key, controls: a list")
        for index, item in enumerate(data["controls"]):
            control = parse_control(item, path, f"controls[{index}]")
            if control.id in controls:
                raise ProfileError(
                    path,
                    f"controls[{index}].id",
                    f"unique; {control.id} is also in {controls[control.id].source}",
                )
            for name, spec in control.parameter_types.items():
                known = types.setdefault(name, (spec, control.id))
                if known[0] != spec:
                    raise ProfileError(
                        path,
                        f"controls[{index}].parameters.{name}",
                        f"the same type and default as in {known[1]}",
                    )
            controls[control.id] = control
    return Catalog(controls)


@functools.cache
def load_catalog() -> Catalog:
    """Every control goldsmith ships, parsed and validated."""
    return parse_catalog(_catalog_files())


def catalog_dir() -> Path:
    return Path(str(resources.files("hardening") / "data" / "controls"))
