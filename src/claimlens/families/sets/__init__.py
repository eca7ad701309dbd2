"""The sets family: claims about sets of runs: training fraction and weight decay (catalogue §3.1)."""
