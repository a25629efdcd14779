"""`python -m omniid.flux encode-prompt`: the flow stage's fixed prompt, encoded once into a file."""
from __future__ import annotations

import logging
from pathlib import Path

from omniid import __version__
from omniid.checkpoint import PROMPT_EMBEDS_FILE
from omniid.cli_format import HelpFormatter, add_verbosity, parser, setup_logging
from omniid.errors import OmniIDError
from omniid.flux.loading import FLUX_PATH_ENV
from omniid.flux.prompt import ensure_prompt_embeds

log = logging.getLogger("omniid.flux")


def main(argv: list[str] | None = None) -> int:
    from omniid.config import PRESETS, get_preset

    p = parser("python -m omniid.flux", "Encode the flow stage's fixed prompt once into a safetensors file.",
               __version__)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    enc = sub.add_parser("encode-prompt", formatter_class=HelpFormatter, help="write the prompt cache")
    add_verbosity(enc)
    enc.add_argument("--preset", default="paper", choices=sorted(PRESETS),
                     help="paper: the one preset whose FLUX has text encoders")
    enc.add_argument("--flux-path", metavar="DIR", help=f"diffusers-format FLUX.1-dev folder (or ${FLUX_PATH_ENV})")
    enc.add_argument("--out", required=True, metavar="FILE",
                     help=f"the cache file (training reads OUT/{PROMPT_EMBEDS_FILE})")
    args = p.parse_args(argv)
    setup_logging(args)
    flow = get_preset(args.preset).flow
    try:
        path = ensure_prompt_embeds(flow, Path(args.out), args.flux_path)
    except OmniIDError as error:
        log.error("%s", error)
        return 2
    log.info("prompt embeddings: %s", path)
    return 0
