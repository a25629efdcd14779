"""`python -m omniid.flux encode-prompt`: the flow stage's fixed prompt, encoded once into a file."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from omniid.checkpoint import PROMPT_EMBEDS_FILE
from omniid.errors import OmniIDError
from omniid.flux.loading import FLUX_PATH_ENV
from omniid.flux.prompt import ensure_prompt_embeds

log = logging.getLogger("omniid.flux")


def main(argv: list[str] | None = None) -> int:
    from omniid.config import PRESETS, get_preset

    p = argparse.ArgumentParser(prog="python -m omniid.flux",
                                description="Encode the flow stage's fixed prompt once into a safetensors file.")
    sub = p.add_subparsers(dest="command", required=True)
    enc = sub.add_parser("encode-prompt", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    enc.add_argument("--preset", default="paper", choices=sorted(PRESETS))
    enc.add_argument("--flux-path", help=f"diffusers-format FLUX.1-dev folder (or ${FLUX_PATH_ENV})")
    enc.add_argument("--out", required=True, help=f"the cache file (training reads OUT/{PROMPT_EMBEDS_FILE})")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    flow = get_preset(args.preset).flow
    try:
        path = ensure_prompt_embeds(flow, Path(args.out), args.flux_path)
    except OmniIDError as error:
        log.error("%s", error)
        return 2
    log.info("prompt embeddings: %s", path)
    return 0
