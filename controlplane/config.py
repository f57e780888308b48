"""Flotilla's configuration tree and its loader.

Every section forbids unknown keys. A setting is declared once, in the frozen dataclass of the
lowest layer that uses it (`EngineConfig`, `TransferSettings`, `ControllerSettings`, the plugins'
settings of `registry.PLUGIN_SETTINGS`): the tree validates those dataclasses as they are (their
bounds are `annotated_types` metadata), or builds its section from their fields (`engine`,
`plugins`); the sections only this edge has are pydantic models. `load_config` deep-merges a YAML
file onto the defaults, then dotted-key overrides onto that, and validates; any problem becomes one
`ConfigError` whose message is a single line naming where (file or overrides), the key path and the
problem, e.g. `config error in flotilla.yaml: engine.block_size: Input should be greater than 0`.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from controlplane.api.settings import ADMIN_TOKEN_ENV, API_KEY_ENV, GatewaySettings, valid_admin_token
from controlplane.controller.settings import ControllerSettings
from controlplane.scheduling.registry import (
    MIGRATION_POLICIES,
    PLUGIN_SETTINGS,
    ProfileConfig,
    default_profiles,
)
from controlplane.transfer.settings import TransferSettings
from flotilla.errors import ConfigError
from instances.engine.config import EngineConfig


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _section_of(
    cls: type, name: str, exclude: tuple[str, ...] = (), base: type[_Section] = _Section
) -> type[_Section]:
    """A config section with the fields of dataclass `cls` (types with their bounds, defaults and
    docstring), less `exclude`, beside those of `base`: the setting stays declared once, in its
    owner's dataclass."""
    hints = typing.get_type_hints(cls, include_extras=True)
    fields: dict[str, Any] = {
        f.name: (hints[f.name], f.default if f.default is not dataclasses.MISSING
                 else Field(default_factory=f.default_factory))
        for f in dataclasses.fields(cls) if f.name not in exclude
    }
    return create_model(name, __base__=base, __doc__=cls.__doc__, **fields)


class ModelSection(_Section):
    """Which model to serve. `served_name` is the name clients use (defaults to `name_or_path`);
    `max_model_len` caps prompt + output tokens (defaults to the model's own limit)."""

    name_or_path: str = "tiny-llama"
    served_name: str | None = None
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    max_model_len: PositiveInt | None = None

    @property
    def served_model_name(self) -> str:
        return self.served_name or self.name_or_path


EngineSection = _section_of(EngineConfig, "EngineSection", exclude=("max_model_len",))
"""`engine`: `EngineConfig`'s fields but `max_model_len`, which the server derives from the model
and `model.max_model_len` (`serve.engine_config`)."""

PluginsSection = _section_of(
    dataclasses.make_dataclass("Plugins", [(name, cls, dataclasses.field(default_factory=cls))
                                           for name, cls in PLUGIN_SETTINGS.items()]),
    "PluginsSection")
"""`plugins`: the settings of every plugin name that has some (`registry.PLUGIN_SETTINGS`)."""


class ClusterSection(_Section):
    """How many instances to run and on what runtime (`ray_address` None starts a local Ray, with
    its dashboard on 127.0.0.1 only if `ray_dashboard`).
    `step_trace_dir`: each instance appends a line per engine step to `<dir>/<instance id>.csv`
    (instances/step_trace.py); off by default."""

    instances: PositiveInt = 2
    runtime: Literal["ray", "local"] = "ray"
    ray_address: str | None = None
    ray_dashboard: bool = False
    num_cpus_per_instance: PositiveFloat = 1.0
    step_trace_dir: str | None = None


def _checked_secret(secret: SecretStr | None, kind: str) -> SecretStr | None:
    """`secret` if it can travel in an HTTP header (`valid_admin_token`); else a validation error."""
    if secret is not None and not valid_admin_token(secret.get_secret_value()):
        raise PydanticCustomError("secret", "{kind} is visible ASCII characters, no spaces", {"kind": kind})
    return secret


def _secret_value(secret: SecretStr | None, environ: Mapping[str, str], env: str, kind: str,
                  unset: str) -> str | None:
    """`secret`, else `environ[env]`, else None. ConfigError when the variable is set but not valid."""
    if secret is not None:
        return secret.get_secret_value()
    value = environ.get(env)
    if value is not None and not valid_admin_token(value):
        raise ConfigError(f"config error in the environment: {env}: {kind} is visible ASCII characters, "
                          f"no spaces (unset the variable to {unset})")
    return value


class _GatewayListen(_Section):
    """Where the OpenAI-compatible gateway listens (port 0 picks a free port), its profile, and its
    API key. `api_key`: the bearer token every `/v1/*` call, `/tokenize` and `/detokenize` must carry
    (vLLM's `--api-key`); when it is null, the environment variable FLOTILLA_API_KEY's; with
    neither, those routes are open (`api_key_value`). `access_log`: a line per HTTP request on
    stdout (uvicorn's access log, as vLLM's server writes it); off by default."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    default_profile: str = "default"
    api_key: SecretStr | None = None
    access_log: bool = False

    _api_key_shape = field_validator("api_key")(lambda key: _checked_secret(key, "an API key"))

    def api_key_value(self, environ: Mapping[str, str]) -> str | None:
        """`api_key`, else `environ`'s FLOTILLA_API_KEY, else None (no key needed).
        Raises ConfigError when the variable is set but not a valid key (empty, say)."""
        return _secret_value(self.api_key, environ, API_KEY_ENV, "an API key", "serve without an API key")


GatewaySection = _section_of(GatewaySettings, "GatewaySection", base=_GatewayListen)
"""`gateway`: where it listens, its profile and API key (`_GatewayListen`), and the HTTP settings the app
enforces (`controlplane.api.settings.GatewaySettings`, which declares them)."""


class AdminSection(_Section):
    """The admin API (`/admin/v1`). `token`: the bearer token every admin call must carry; when it
    is null, the environment variable FLOTILLA_ADMIN_TOKEN's; with neither, the admin API answers
    loopback clients only (`admin_token`)."""

    token: SecretStr | None = None

    _token_shape = field_validator("token")(lambda token: _checked_secret(token, "a token"))

    def admin_token(self, environ: Mapping[str, str]) -> str | None:
        """`token`, else `environ`'s FLOTILLA_ADMIN_TOKEN, else None (loopback clients only).
        Raises ConfigError when the variable is set but not a valid token (empty, say)."""
        return _secret_value(self.token, environ, ADMIN_TOKEN_ENV, "a token",
                             "serve the admin API to loopback clients only")


class SchedulingSection(_Section):
    """Named scheduling profiles. Through `load_config` a profile in the file or overrides is
    merged key by key onto a built-in one of the same name (`default`), or added beside it."""

    profiles: dict[str, ProfileConfig] = Field(default_factory=default_profiles)


class FlotillaConfig(_Section):
    """The whole configuration tree."""

    model: ModelSection = Field(default_factory=ModelSection)
    engine: EngineSection = Field(default_factory=EngineSection)
    cluster: ClusterSection = Field(default_factory=ClusterSection)
    gateway: GatewaySection = Field(default_factory=GatewaySection)  # type: ignore[valid-type]
    admin: AdminSection = Field(default_factory=AdminSection)
    scheduling: SchedulingSection = Field(default_factory=SchedulingSection)
    plugins: PluginsSection = Field(default_factory=PluginsSection)  # type: ignore[valid-type]
    controller: ControllerSettings = Field(default_factory=ControllerSettings)
    migration: TransferSettings = Field(default_factory=TransferSettings)

    def plugin_settings(self) -> dict[str, Any]:
        """`plugins` as the registry takes it: plugin name -> its settings object."""
        return {name: getattr(self.plugins, name) for name in PLUGIN_SETTINGS}

    def gateway_settings(self) -> GatewaySettings:
        """The `gateway` section's HTTP settings as the app takes them."""
        fields = dataclasses.fields(GatewaySettings)
        return GatewaySettings(**{f.name: getattr(self.gateway, f.name) for f in fields})

    def engine_settings(self, max_model_len: int) -> EngineConfig:
        """The `engine` section as the engine's own settings, with the context length decided."""
        return EngineConfig(**self.engine.model_dump(), max_model_len=max_model_len)

    @model_validator(mode="after")
    def _cross_checks(self) -> FlotillaConfig:
        if self.controller.migration_policy not in MIGRATION_POLICIES:
            raise PydanticCustomError(
                "unknown_policy",
                "controller.migration_policy: '{name}' is not a migration policy (known: {known})",
                {"name": self.controller.migration_policy, "known": ", ".join(sorted(MIGRATION_POLICIES))},
            )
        if self.gateway.default_profile not in self.scheduling.profiles:
            raise PydanticCustomError(
                "unknown_profile",
                "gateway.default_profile: '{name}' is not a scheduling profile (configured: {known})",
                {"name": self.gateway.default_profile, "known": ", ".join(sorted(self.scheduling.profiles))},
            )
        pool = self.engine.num_blocks * self.engine.block_size
        if self.model.max_model_len is not None and self.model.max_model_len > pool:
            raise PydanticCustomError(
                "context_too_long",
                "model.max_model_len: {n} exceeds the KV pool of {pool} tokens "
                "(engine.num_blocks x engine.block_size)",
                {"n": self.model.max_model_len, "pool": pool},
            )
        return self


MOVED_KEYS = {
    "migration.enabled": "controller.migration_policy (none or llumnix)",
    "migration.interval_s": "controller.interval_s",
    "migration.max_in_flight": "controller.max_in_flight",
    "migration.llumnix": "plugins.llumnix",
}
"""Keys of earlier releases -> where they live now (named in the error for an old key)."""


def _format_validation_error(err: ValidationError) -> str:
    """One line: the first problem as `dotted.path: message`, and how many more there are."""
    problems = err.errors()
    first = problems[0]
    path = ".".join(str(part) for part in first["loc"])
    if first["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        message = f"unknown key; it is now {MOVED_KEYS[path]}" if path in MOVED_KEYS else "unknown key"
    else:
        message = first["msg"]
    line = f"{path}: {message}" if path else message
    if len(problems) > 1:
        line += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
    return line


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `base` with `extra` merged in: mappings merge key by key, other values replace."""
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _read_yaml(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"config error in {path}: cannot read file: {e.strerror or e}") from e
    except yaml.YAMLError as e:
        where = ""
        mark = getattr(e, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"config error in {path}: invalid YAML{where}: {problem}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config error in {path}: the top level must be a mapping, got {type(data).__name__}"
        )
    return data


def _overrides_tree(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Turn {"engine.block_size": 32} into {"engine": {"block_size": 32}}."""
    tree: dict[str, Any] = {}
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        if not all(parts):
            raise ConfigError(f"config error in overrides: {dotted!r}: not a dotted key path")
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"config error in overrides: {dotted}: conflicts with another override")
        if isinstance(node.get(parts[-1]), dict):
            raise ConfigError(f"config error in overrides: {dotted}: conflicts with another override")
        node[parts[-1]] = copy.deepcopy(value)
    return tree


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """Parse `key.path=value` strings (e.g. from `--set`); values are read as YAML scalars or flow
    collections, so `32`, `true`, `[a, b]` become int, bool, list. Raises ConfigError on bad items."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"config error in overrides: {item!r}: expected key.path=value")
        try:
            out[key] = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"config error in overrides: {key}: invalid value {text!r}") from e
    return out


def _validate(tree: dict[str, Any], source: str) -> FlotillaConfig:
    try:
        return FlotillaConfig.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(f"config error in {source}: {_format_validation_error(e)}") from e


def load_config(path: str | None = None, overrides: Mapping[str, Any] | None = None) -> FlotillaConfig:
    """Defaults, then the YAML file at `path` (if any), then dotted-key `overrides`, validated.

    Problems are attributed to the file when the file alone is invalid, else to the overrides.
    Raises ConfigError (one line) for a missing or unreadable file, bad YAML, unknown keys and
    out-of-range or inconsistent values.
    """
    tree = FlotillaConfig().model_dump()
    if path is not None:
        tree = _deep_merge(tree, _read_yaml(path))
        config = _validate(tree, path)
    else:
        config = FlotillaConfig()
    if overrides:
        config = _validate(_deep_merge(tree, _overrides_tree(overrides)), "overrides")
    return config
