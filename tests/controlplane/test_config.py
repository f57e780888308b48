from pathlib import Path

import pytest
from pydantic import ValidationError

from controlplane.api.settings import GatewaySettings
from controlplane.config import FlotillaConfig, load_config, parse_overrides
from controlplane.controller.settings import ControllerSettings
from controlplane.scheduling.plugins.llumnix import LlumnixSettings
from controlplane.scheduling.registry import ProfileConfig
from controlplane.transfer.settings import TransferSettings
from flotilla.errors import ConfigError
from instances.engine.config import EngineConfig


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "flotilla.yaml"
    path.write_text(text)
    return str(path)


def _error(path: str | None, overrides: dict | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides or {})
    assert "\n" not in info.value.message
    return info.value.message


def test_defaults():
    cfg = load_config(None, {})
    assert cfg == FlotillaConfig()
    assert cfg.model.name_or_path == "tiny-llama"
    assert cfg.model.served_model_name == "tiny-llama"
    assert cfg.model.dtype == "float32"
    assert cfg.model.max_model_len is None
    assert (cfg.engine.block_size, cfg.engine.num_blocks) == (16, 2048)
    assert (cfg.engine.max_num_batched_tokens, cfg.engine.max_num_seqs) == (512, 64)
    assert cfg.engine.high_priority_prefill_tokens == 128
    assert cfg.engine.enable_prefix_caching is True and cfg.engine.seed == 0
    assert (cfg.cluster.instances, cfg.cluster.runtime, cfg.cluster.ray_address) == (2, "ray", None)
    assert cfg.cluster.num_cpus_per_instance == 1.0
    assert (cfg.gateway.host, cfg.gateway.port, cfg.gateway.default_profile) == ("127.0.0.1", 8000, "default")
    assert cfg.scheduling.profiles == {
        "default": ProfileConfig(
            filters=("healthy",), scorers={"load": 1.0, "free_kv": 0.5}, picker="power_of_two"
        ),
        "llumnix": ProfileConfig(filters=("healthy",), scorers={"llumnix": 1.0}, picker="max_score"),
    }
    assert cfg.controller == ControllerSettings(migration_policy="none", interval_s=0.5, max_in_flight=2)
    assert cfg.migration == TransferSettings(last_stage_blocks=2, max_stages=4, stage_chunk_blocks=32,
                                             transfer_timeout_s=10.0)
    assert cfg.plugin_settings() == {"llumnix": LlumnixSettings()}


def test_engine_section_is_built_from_the_engine_settings():
    # one declaration: the section's keys and defaults are EngineConfig's, less max_model_len
    cfg = load_config(None, {"engine.num_blocks": 64})
    assert cfg.engine_settings(512) == EngineConfig(num_blocks=64, max_model_len=512)
    assert FlotillaConfig().engine_settings(2048) == EngineConfig()


def test_moved_keys_say_where_they_went():
    assert _error(None, {"migration.enabled": True}) == (
        "config error in overrides: migration.enabled: unknown key; it is now controller.migration_policy "
        "(none or llumnix)")
    assert _error(None, {"migration.llumnix.headroom_blocks": 1}) == (
        "config error in overrides: migration.llumnix: unknown key; it is now plugins.llumnix")
    assert _error(None, {"controller.migration_policy": "spread"}) == (
        "config error in overrides: controller.migration_policy: 'spread' is not a migration policy "
        "(known: llumnix, none)")


def test_file_then_overrides(tmp_path):
    path = _write(
        tmp_path,
        "model:\n  served_name: llama\n  max_model_len: 512\n"
        "engine:\n  block_size: 32\ncluster:\n  runtime: local\n"
        "scheduling:\n  profiles:\n    rr: {picker: round_robin, filters: []}\n",
    )
    cfg = load_config(
        path,
        {
            "engine.block_size": 8,
            "cluster.instances": "3",
            "scheduling.profiles.default.picker": "round_robin",
        },
    )
    assert cfg.model.served_model_name == "llama"
    assert cfg.model.max_model_len == 512
    assert cfg.engine.block_size == 8
    assert cfg.engine.num_blocks == 2048
    assert cfg.cluster.instances == 3 and cfg.cluster.runtime == "local"
    assert cfg.scheduling.profiles["rr"] == ProfileConfig(filters=(), scorers={}, picker="round_robin")
    # an override merges into the built-in profile rather than replacing it
    assert cfg.scheduling.profiles["default"] == ProfileConfig(
        filters=("healthy",), scorers={"load": 1.0, "free_kv": 0.5}, picker="round_robin"
    )


def test_empty_file_is_defaults(tmp_path):
    assert load_config(_write(tmp_path, ""), {}) == FlotillaConfig()


def test_frozen():
    cfg = FlotillaConfig()
    with pytest.raises(ValidationError):
        cfg.engine.block_size = 8  # type: ignore[misc]


def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.yaml")
    assert _error(path) == f"config error in {path}: cannot read file: No such file or directory"


def test_bad_yaml(tmp_path):
    path = _write(tmp_path, "engine:\n  block_size: [16\n")
    assert _error(path) == (
        f"config error in {path}: invalid YAML at line 3, column 1: "
        "expected ',' or ']', but got '<stream end>'"
    )


def test_top_level_not_a_mapping(tmp_path):
    path = _write(tmp_path, "- a\n- b\n")
    assert _error(path) == f"config error in {path}: the top level must be a mapping, got list"


def test_unknown_key_in_file(tmp_path):
    path = _write(tmp_path, "engine:\n  blocksize: 16\n")
    assert _error(path) == f"config error in {path}: engine.blocksize: unknown key"


def test_unknown_section_in_file(tmp_path):
    path = _write(tmp_path, "engines: {}\n")
    assert _error(path) == f"config error in {path}: engines: unknown key"


def test_bad_value_in_file(tmp_path):
    path = _write(tmp_path, "engine:\n  block_size: 0\n")
    assert _error(path) == f"config error in {path}: engine.block_size: Input should be greater than 0"


def test_bad_literal_in_file(tmp_path):
    path = _write(tmp_path, "cluster:\n  runtime: k8s\n")
    assert _error(path) == f"config error in {path}: cluster.runtime: Input should be 'ray' or 'local'"


def test_negative_scorer_weight(tmp_path):
    path = _write(tmp_path, "scheduling:\n  profiles:\n    default:\n      scorers: {load: -1}\n")
    assert _error(path) == (
        f"config error in {path}: scheduling.profiles.default.scorers.load: "
        "Input should be greater than or equal to 0"
    )


def test_several_problems_are_counted_on_one_line(tmp_path):
    path = _write(tmp_path, "engine:\n  block_size: 0\n  max_num_seqs: 0\n  seed: x\n")
    assert _error(path) == (
        f"config error in {path}: engine.block_size: Input should be greater than 0 (and 2 more problems)"
    )


def test_bad_override_is_attributed_to_overrides(tmp_path):
    path = _write(tmp_path, "engine:\n  block_size: 32\n")
    assert _error(path, {"engine.max_num_seqs": -1}) == (
        "config error in overrides: engine.max_num_seqs: Input should be greater than 0"
    )


def test_unknown_override_key():
    assert _error(None, {"gateway.prot": 1}) == "config error in overrides: gateway.prot: unknown key"


def test_malformed_override_key():
    assert (
        _error(None, {"engine..seed": 1})
        == "config error in overrides: 'engine..seed': not a dotted key path"
    )


def test_conflicting_overrides():
    message = _error(None, {"engine.seed": 1, "engine.seed.x": 2})
    assert message == "config error in overrides: engine.seed.x: conflicts with another override"


def test_default_profile_must_exist():
    assert _error(None, {"gateway.default_profile": "pd"}) == (
        "config error in overrides: gateway.default_profile: 'pd' is not a scheduling profile "
        "(configured: default, llumnix)"
    )


def test_max_model_len_must_fit_the_kv_pool():
    assert _error(None, {"engine.num_blocks": 4, "model.max_model_len": 65}) == (
        "config error in overrides: model.max_model_len: 65 exceeds the KV pool of 64 tokens "
        "(engine.num_blocks x engine.block_size)"
    )


def test_parse_overrides():
    assert parse_overrides(
        [
            "engine.block_size=32",
            "model.served_name=llama",
            "metadata.endpoints=[a, b]",
            "engine.enable_prefix_caching=false",
        ]
    ) == {
        "engine.block_size": 32,
        "model.served_name": "llama",
        "metadata.endpoints": ["a", "b"],
        "engine.enable_prefix_caching": False,
    }


def test_parse_overrides_needs_equals():
    with pytest.raises(ConfigError) as info:
        parse_overrides(["engine.block_size"])
    assert info.value.message == "config error in overrides: 'engine.block_size': expected key.path=value"


def test_parse_overrides_bad_value():
    with pytest.raises(ConfigError) as info:
        parse_overrides(["metadata.endpoints=[a"])
    assert info.value.message == "config error in overrides: metadata.endpoints: invalid value '[a'"


def test_gateway_http_settings_are_the_apps_own():
    # one declaration: the section's HTTP keys and defaults are GatewaySettings'
    assert FlotillaConfig().gateway_settings() == GatewaySettings(
        cors_origins=(), max_body_bytes=4 * 1024 * 1024, max_queued_requests=1024
    )
    cfg = load_config(None, {"gateway.cors_origins": ["https://ui.example.com", "*"],
                             "gateway.max_body_bytes": 1000, "gateway.max_queued_requests": 8})
    assert cfg.gateway_settings() == GatewaySettings(("https://ui.example.com", "*"), 1000, 8)


NOT_AN_ORIGIN = "is not an origin: scheme://host[:port] with no path or trailing slash, or *"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"gateway.max_body_bytes": 0}, "gateway.max_body_bytes: Input should be greater than 0"),
        ({"gateway.max_queued_requests": -1}, "gateway.max_queued_requests: Input should be greater than 0"),
        ({"gateway.cors_origins": ["https://ui.example.com/"]},
         f"gateway.cors_origins.0: 'https://ui.example.com/' {NOT_AN_ORIGIN}"),
        ({"gateway.cors_origins": ["ui.example.com"]},
         f"gateway.cors_origins.0: 'ui.example.com' {NOT_AN_ORIGIN}"),
        ({"admin.token": ""}, "admin.token: a token is visible ASCII characters, no spaces"),
        ({"admin.token": "two words"}, "admin.token: a token is visible ASCII characters, no spaces"),
        ({"admin.password": "x"}, "admin.password: unknown key"),
    ],
)
def test_bad_gateway_and_admin_settings(overrides, message):
    assert _error(None, overrides) == f"config error in overrides: {message}"


def test_gateway_settings_check_themselves():
    with pytest.raises(ValueError, match="'x' is not an origin"):
        GatewaySettings(cors_origins=("x",))
    with pytest.raises(ValueError, match="gateway.max_queued_requests must be >= 1, got 0"):
        GatewaySettings(max_queued_requests=0)


def test_the_admin_token_comes_from_the_config_else_the_environment():
    env = {"FLOTILLA_ADMIN_TOKEN": "from-env"}
    assert FlotillaConfig().admin.admin_token({}) is None
    assert FlotillaConfig().admin.admin_token(env) == "from-env"
    cfg = load_config(None, {"admin.token": "from-config"})
    assert cfg.admin.admin_token(env) == "from-config"
    assert "from-config" not in repr(cfg) + str(cfg.model_dump())  # kept out of logs and dumps
    with pytest.raises(ConfigError) as info:
        FlotillaConfig().admin.admin_token({"FLOTILLA_ADMIN_TOKEN": ""})
    assert info.value.message == (
        "config error in the environment: FLOTILLA_ADMIN_TOKEN: a token is visible ASCII characters, "
        "no spaces (unset the variable to serve the admin API to loopback clients only)"
    )
