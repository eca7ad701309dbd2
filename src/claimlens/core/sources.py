"""The sources the claims cite, named once (the claim specs' ``source`` fields start with these)."""

NCLSS = "Nanda et al. 2023, 'Progress measures for grokking via mechanistic interpretability'"
ARENA = "ARENA 'Grokking and modular arithmetic: analysis during training'"
CAT = "catalogue §3.1"
REV2 = "catalogue Revision 2"
