"""`flotilla` command line. Every failure ends with one line on stderr and a non-zero exit code.

Parsing, `--help` and config errors import neither torch nor Ray: each command imports what it
needs inside its branch of `main` (tests/controlplane/test_cli.py checks it)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from controlplane.config import load_config, parse_overrides
from controlplane.runtime.private_ray import prepare_private_ray
from controlplane.runtime.sim import command as sim_command
from flotilla import __version__
from flotilla.errors import ConfigError, FlotillaError

EXIT_USAGE = 2
EXIT_FAILURE = 1


SERVE_FLAGS: tuple[tuple[str, str, type], ...] = (
    ("--block-size", "engine.block_size", int),
    ("--max-num-seqs", "engine.max_num_seqs", int),
    ("--max-num-batched-tokens", "engine.max_num_batched_tokens", int),
    ("--max-model-len", "model.max_model_len", int),
    ("--served-model-name", "model.served_name", str),
    ("--api-key", "gateway.api_key", str),
)
"""`flotilla serve`'s flags for the commonest engine settings, named as vLLM's: flag, config key, type."""


def _serve_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve a model through the OpenAI API on a local cluster",
                       description="Serve a model through the OpenAI API on a local cluster. Every flag is a "
                                   "config key (docs/configuration.md); --set sets any other.")
    p.add_argument("model_arg", nargs="?", metavar="MODEL",
                   help="smollm2-135m, tiny-llama, a Hugging Face directory or a .gguf file (as --model)")
    p.add_argument("--config", help="YAML config file (keys as in docs/configuration.md)")
    p.add_argument("--model", help="the model, as MODEL (model.name_or_path)")
    p.add_argument("--instances", type=int, help="number of engine instances")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to listen on (default 8000)")
    p.add_argument("--runtime", choices=["ray", "local"], help="ray (default) or local (in-process)")
    p.add_argument("--ray-dashboard", action="store_true", default=None,
                   help="start Ray's dashboard on 127.0.0.1 (cluster.ray_dashboard; off by default)")
    p.add_argument("--ray-address", metavar="ADDRESS",
                   help="join this Ray cluster instead of starting a private one (cluster.ray_address)")
    p.add_argument("--access-log", action="store_true", default=None,
                   help="a line per HTTP request on stdout (gateway.access_log)")
    for flag, key, kind in SERVE_FLAGS:
        p.add_argument(flag, type=kind, metavar="N" if kind is int else flag[2:].split("-")[-1].upper(), help=f"sets {key}")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set engine.block_size=32 (repeatable)")
    p.add_argument("--ask", metavar="TEXT",
                   help="once serving, send TEXT as a chat request, print the answer, keep serving")


def _profile_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profile", help="time the real engine's steps over a grid of batch shapes and fit "
                                       "latency coefficients for the simulator (docs/latency-models.md)")
    p.add_argument("--model", default="tiny-llama", help="tiny-llama (default), smollm2-135m or a model path")
    p.add_argument("--out", default="profile.csv", help="CSV of measured steps (default profile.csv)")
    p.add_argument("--fit", default="fit.json", help="DistServe coefficients JSON (default fit.json)")
    p.add_argument("--repeats", type=int, default=9, help="timed steps per grid point (default 9)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1, as each instance)")
    p.add_argument("--quick", action="store_true", help="a small grid (seconds, for tests)")
    p.add_argument("--colocated", type=int, default=0, metavar="N",
                   help="time steps while N other engines step beside it, as co-located instances do (default 0)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flotilla", description="Flotilla LLM-serving control plane")
    parser.add_argument("--version", action="version", version=f"flotilla {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _profile_parser(sub)
    sim_command.add_parser(sub)
    return parser


def _serve_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The config keys `flotilla serve`'s flags set; `--set` wins over a flag for the same key."""
    if args.model_arg is not None and args.model is not None and args.model_arg != args.model:
        raise ConfigError(f"two models given: {args.model_arg} and --model {args.model}; give one")
    flags: dict[str, object] = {}
    pairs = [("model", "model.name_or_path"), ("instances", "cluster.instances"), ("host", "gateway.host"),
             ("port", "gateway.port"), ("runtime", "cluster.runtime"),
             ("ray_dashboard", "cluster.ray_dashboard"), ("ray_address", "cluster.ray_address"),
             ("access_log", "gateway.access_log")]
    pairs += [(flag[2:].replace("-", "_"), key) for flag, key, _ in SERVE_FLAGS]
    for dest, key in pairs:
        value = getattr(args, dest)
        if value is not None:
            flags[key] = value
    if args.model_arg is not None:
        flags["model.name_or_path"] = args.model_arg
    return {**flags, **parse_overrides(args.set)}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            config = load_config(args.config, _serve_overrides(args))
            if config.cluster.runtime == "ray" and config.cluster.ray_address is None:
                prepare_private_ray(os.environ)  # before Ray is imported
            import uvloop

            from controlplane.serve import serve

            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(serve(config, ask=args.ask))
        elif args.command == "sim":
            return sim_command.run(args)
        elif args.command == "profile":
            from instances.profiling.profile import run_profile

            result = run_profile(args.model, args.out, args.fit, repeats=args.repeats, threads=args.threads,
                                 quick=args.quick, progress=sys.stderr, colocated=args.colocated)
            for part, q in (("prefill", result.prefill), ("decode", result.decode)):
                print(f"{part}: {q.rows} rows, R^2 {q.r2:.4f}, max relative error {q.max_rel_error:.1%}")
            print(f"wrote {args.out} and {args.fit}")
    except FlotillaError as e:
        print(f"flotilla: {e.message}", file=sys.stderr)
        return EXIT_USAGE if e.status_code < 500 else EXIT_FAILURE
    except KeyboardInterrupt:
        print("flotilla: stopped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
