"""The sources' artifacts that claims are validated on (catalogue Revision 3), named once for every family's rules.

Runs that ship with claimlens (``--run NAME`` judges them; ``tests/test_validation.py`` recomputes each claim's
verdict on them) and the one recorded model that does not ship but several claims cite.
"""

from __future__ import annotations

from claimlens.core.verdicts import Artifact

NANDA2022_CURVES = Artifact("the source's mainline grokking run (p = 113, frac 0.3, weight decay 1), digitised from "
                            "its published figures (reference/nanda2022)", run="nanda2022")
NANDA2022_FRACTIONS = Artifact("the source's training-fraction sweep, digitised (ten runs)", run="nanda2022_fractions")
ZHONG_MODEL_A = Artifact("Zhong et al.'s Model A, the source's canonical pizza (p = 59, attention rate 0)",
                         run="zhong2023_model_a")
ZHONG_MODEL_B = Artifact("Zhong et al.'s Model B, the source's canonical clock (p = 59, attention rate 1)",
                         run="zhong2023_model_b")
ZHONG_SWEEP = Artifact("Zhong et al.'s sweep tables (1l_fixedwidth, 1l_varywidth): 1 947 and 981 filtered 1-layer runs",
                       run="zhong2023_sweep")

WD01 = "the grokking author's p = 113 model at weight decay 0.1, 107 790 epochs (not the mainline; does not ship)"
PAPER = "the paper's mainline run (weight decay 1, 40 000 epochs), as printed"


def wd01(verdict: str, *, value: float | None = None, threshold_name: str | None = None, op: str | None = None,
         note: str = "") -> Artifact:
    """A measurement on the grokking author's weight-decay-0.1 model (catalogue Revision 3): recorded, not shipped,
    and not what the §3.1 final-model claims are about."""
    return Artifact(WD01, value=value, threshold_name=threshold_name, op=op, verdict=verdict, about=False, note=note)


def printed(value: float, threshold_name: str, op: str, note: str, name: str = PAPER) -> Artifact:
    """A number the source printed about the run the claim is about, judged against the claim's current threshold."""
    return Artifact(name, value=value, threshold_name=threshold_name, op=op, shipped=True, note=note)
