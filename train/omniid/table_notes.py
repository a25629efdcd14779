"""The lines under omniid-eval's table: what measured, how cells are made, and the protocol as it
actually ran (identities, the k evaluated, the real number of targets, what was left out)."""
from __future__ import annotations

from omniid.copypaste import DEGENERATE_DEG
from omniid.eval_notes import conditioned_line
from omniid.eval_plan import Fitted, target_counts


def footer_lines(fitted: Fitted, rows: list[dict], metrics, protocol, marks: dict, mark: str, bench) -> list[str]:
    models, recognisers = metrics.models, metrics.recognisers
    asked = "every face after the inputs" if protocol.targets is None else f"asked {protocol.targets}"
    degenerate = ", ".join(f"{r} {sum(bool(row[f'degenerate:{r}']) for row in rows)}" for r in recognisers)
    source = f"MultiID-Bench folder {bench}" if bench is not None else f"{len(fitted.plans)} identities"
    lines = [
        f"ID sim, Sim(Ref) and copy-paste with each recogniser ({', '.join(recognisers)}): cosine to the ground "
        f"truth / to the nearest input, and MultiID-Bench's (theta(gen, GT) - theta(gen, ref)) / theta(GT, ref) "
        f"with embedding angles (+1: copies the input, -1: matches the target; ref: of several inputs the one "
        f"nearest the generation, ours). A generation without a face "
        f"scores ID sim 0 (a failure is penalised) and is left out of Sim(Ref) and copy-paste (counted in "
        f"`No face`). Pose error: |Δyaw|+|Δpitch|+|Δroll| "
        f"in degrees with {models['pose_model']} (the paper used Hopenet: absolute values are not comparable); "
        f"faces found with {models['detector']} (mfhq pipeline `{models['pipeline']}`).",
        f"Each cell: mean over images [{100 * protocol.level:g}% bootstrap interval over identities, "
        f"{protocol.bootstrap} resamples, seed {protocol.seed}].",
        f"{source}; k = {', '.join(map(str, fitted.ks))}; {target_counts(fitted.plans)} target(s) per identity "
        f"({asked}) x {protocol.samples} sample(s); steps {protocol.steps}, guidance {_guidance(protocol)}, seeds "
        f"{seeds_rule(fitted, protocol)}.",
        "`copy-input` scores the first input itself (what copy-pasting earns); `real photos` scores another held-out "
        "photo of the identity as the generation (the real-pair ceiling; needs 2 targets per identity).",
        f"Copy-paste left out where the ground truth lies within {DEGENERATE_DEG:g} degree of its reference "
        f"(ours; degenerate images: {degenerate}).",
    ]
    if len(fitted.plans) < 2:
        lines.append("With one identity every interval collapses to its mean: they need several identities.")
    if fitted.skipped:
        why = "folders without ori.* or ref_1.*" if bench else "too few faces"
        lines.append(f"Skipped identities: {len(fitted.skipped)} ({why}; listed in settings.json).")
    return lines + [f"Note: {note}" for note in fitted.notes] + conditioned_line(marks, mark)


def seeds_rule(fitted: Fitted, protocol) -> str:
    if any(plan.seeds is not None for plan in fitted.plans.values()):
        return "each --bench entry's own, from its meta.json (+ sample)"
    return f"{protocol.seed} + 1000 x target + sample"


def _guidance(protocol) -> str:
    return "each run's own (settings.json)" if protocol.guidance is None else f"{protocol.guidance:g}"
