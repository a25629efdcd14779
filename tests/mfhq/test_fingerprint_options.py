"""Every option of a fingerprinted section moves the run fingerprint, but for the few that change
how a row is made and not what it holds (mfhq.config.HOW_NOT_WHAT, the schedule's options while
embed.every is 1): a resume compares fingerprints only (mfhq.plan.check_resume), so an option
left out would let one run mix rows of two configs without a word."""
from __future__ import annotations

import copy

import pytest

from mfhq.config import SCHEDULE_OPTIONS, PipelineConfig, fingerprint_of


def _other(value):
    """Another value of the same kind (the fingerprint reads the dict, so it need not be valid)."""
    if value is None:
        return 1
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "-other"
    if isinstance(value, list):
        return [*value, "other"]
    raise AssertionError(f"no other value for {value!r}")


# The sections that say how a run is made or what is read, never what a row holds (curation runs
# after extract). Named here, not read from mfhq.config.NOT_FINGERPRINTED: a stage's section
# added there would leave the fingerprint with no option of it, and this test with none to try.
HOW_A_RUN_IS_MADE = {"run", "sources", "curate"}


def _options(content: dict):
    for section, options in content.items():
        if isinstance(options, dict):
            yield from ((section, name) for name in options)


@pytest.mark.parametrize("every", [1, 2])
def test_every_option_that_changes_rows_changes_the_fingerprint(every):
    base = PipelineConfig().replace(embed={"every": every}).to_dict()
    same = {("decode", "timeout_s"), ("decode", "chunk_frames")}  # HOW_NOT_WHAT
    same |= {(section, name) for section, name in _options(base) if section in HOW_A_RUN_IS_MADE}
    if every == 1:  # the schedule's options (every itself aside) change no row then
        same |= {("embed", o) for o in SCHEDULE_OPTIONS if o != "every"}
    unmoved = []
    for section, name in _options(base):
        changed = copy.deepcopy(base)
        changed[section][name] = _other(base[section][name])
        if fingerprint_of(changed) == fingerprint_of(base):
            unmoved.append(f"{section}.{name}")
    assert sorted(unmoved) == sorted(f"{s}.{n}" for s, n in same), f"leave the fingerprint as it was: {unmoved}"
    assert ("align", "crops") in set(_options(base))  # the options compared include the crop pass


def test_the_crop_pass_is_fingerprinted_beside_a_run_made_before_the_option():
    """align.crops: extract is the one pass runs made before the option used (left out, so they
    resume); materialize writes other rows (no crop files, landmarks68 and crop_digest filled)."""
    one_pass, later = PipelineConfig(), PipelineConfig().replace(align={"crops": "materialize"})
    before_option = one_pass.to_dict()
    del before_option["align"]["crops"]
    assert fingerprint_of(before_option) == one_pass.fingerprint()
    assert later.fingerprint() != one_pass.fingerprint()
