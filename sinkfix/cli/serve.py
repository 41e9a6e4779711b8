"""``python -m sinkfix serve``: the HTTP API under uvicorn, with the server's policy from flags.

The flags set the same environment variables ``uvicorn sinkfix.api:app`` reads (see
``sinkfix.api.config``), so both ways of starting the server behave the same. The token is read
from ``SINKFIX_API_TOKEN`` only: a flag would show it in ``ps`` to every user of the machine.
"""
from __future__ import annotations

import argparse
import os
import sys

FLAGS = {  # flag destination -> environment variable
    "models": "SINKFIX_API_MODELS",
    "max_models": "SINKFIX_MAX_MODELS",
    "max_body": "SINKFIX_MAX_BODY",
    "max_concurrency": "SINKFIX_MAX_CONCURRENCY",
    "max_queue": "SINKFIX_MAX_QUEUE",
    "map_limit": "SINKFIX_API_MAP_LIMIT",
}


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("serve", help="serve the HTTP API (POST /api/analyze, runs, corpora)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 serves the lab's network)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--models", metavar="A,B", help="the models served: names, hub ids or directories "
                        "(default: the embedded models) [SINKFIX_API_MODELS]")
    parser.add_argument("--max-models", type=int, help="models held in memory at once, least recently used "
                        "evicted (default 2) [SINKFIX_MAX_MODELS]")
    parser.add_argument("--max-body", type=int, metavar="BYTES", help="largest request body (default 1000000) "
                        "[SINKFIX_MAX_BODY]")
    parser.add_argument("--max-concurrency", type=int, metavar="N", help="analyses running at once per model "
                        "(default 1) [SINKFIX_MAX_CONCURRENCY]")
    parser.add_argument("--max-queue", type=int, metavar="N", help="requests waiting per model before 429 "
                        "(default 16) [SINKFIX_MAX_QUEUE]")
    parser.add_argument("--map-limit", type=int, metavar="T", help="largest map_token_limit a request may ask "
                        "for (default 256) [SINKFIX_API_MAP_LIMIT]")
    parser.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn  # only this command needs it

    from sinkfix.api.config import ServerConfig
    from sinkfix.errors import SinkFixError
    from sinkfix.policy import signin

    for dest, variable in FLAGS.items():
        value = getattr(args, dest)
        if value is not None:
            os.environ[variable] = str(value)
    config = ServerConfig.from_env()  # a bad value fails here, as one line, not on the first request
    if not signin.is_loopback(args.host) and not config.named_tokens():
        # Without a token every client is the owner `local`, the CLI's own rows (docs/security.md).
        raise SinkFixError(f"refusing to serve the API on {args.host} without a token: set SINKFIX_API_TOKEN or "
                           "SINKFIX_API_TOKENS (docs/deployment.md); or listen on 127.0.0.1")
    print(f"sinkfix: serving {', '.join(config.models)} on http://{args.host}:{args.port} "
          f"({config.max_concurrency} at once per model, {config.max_queue} waiting; token "
          f"{'required' if config.token else 'not set'})", file=sys.stderr, flush=True)
    # One worker: the admission line, the model shelf and the per-key locks live in this process.
    uvicorn.run("sinkfix.api:app", host=args.host, port=args.port, workers=1, log_level="warning")
    return 0
