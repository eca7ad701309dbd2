"""The grokking family: the progress measures, phases and final-model algorithm of Nanda et al. 2023 (catalogue §3.1)."""
